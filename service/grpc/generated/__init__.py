"""Generated from ../protos (see its README.md); do not edit."""
