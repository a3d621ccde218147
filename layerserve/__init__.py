"""layerserve: Keras-style models served without TensorFlow."""

__version__ = "0.1.0"
