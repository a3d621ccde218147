"""The layerserve inference service."""
