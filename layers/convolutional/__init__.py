"""Convolution layers."""

from layerserve.layers.convolutional.conv2d import Conv2D

LAYERS = (Conv2D,)

__all__ = ["Conv2D"]
