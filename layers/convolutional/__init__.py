"""Convolution layers."""

from layerserve.layers.convolutional.conv2d import Conv2D

LAYERS = (Conv2D,)
# Names other Keras versions write for the same layers.
ALIASES = {"Convolution2D": "Conv2D", "Conv2d": "Conv2D"}

__all__ = ["Conv2D"]
