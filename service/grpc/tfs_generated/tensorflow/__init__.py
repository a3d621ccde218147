"""Generated from service/grpc/protos/tfserving (see its README.md); do not edit."""
