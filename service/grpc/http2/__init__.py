"""layerserve's own HTTP/2 server for gRPC: the RPC handlers grpc's generated code and
servicers register, served without grpc.aio's per-call machinery."""
