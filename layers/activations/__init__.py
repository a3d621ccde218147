"""Activation layers."""

from layerserve.layers.activations.activation import Activation

LAYERS = (Activation,)

__all__ = ["Activation"]
