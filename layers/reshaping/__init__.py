"""Reshaping layers."""

from layerserve.layers.reshaping.flatten import Flatten
from layerserve.layers.reshaping.permute import Permute
from layerserve.layers.reshaping.repeat_vector import RepeatVector
from layerserve.layers.reshaping.reshape import Reshape

LAYERS = (Flatten, Permute, RepeatVector, Reshape)

__all__ = ["Flatten", "Permute", "RepeatVector", "Reshape"]
