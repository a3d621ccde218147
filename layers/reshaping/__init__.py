"""Reshaping layers: Flatten, Reshape, Permute, RepeatVector, and the padding, cropping
and upsampling layers of 1D, 2D and 3D data."""

from layerserve.layers.reshaping.cropping1d import Cropping1D
from layerserve.layers.reshaping.cropping2d import Cropping2D
from layerserve.layers.reshaping.cropping3d import Cropping3D
from layerserve.layers.reshaping.flatten import Flatten
from layerserve.layers.reshaping.permute import Permute
from layerserve.layers.reshaping.repeat_vector import RepeatVector
from layerserve.layers.reshaping.reshape import Reshape
from layerserve.layers.reshaping.up_sampling1d import UpSampling1D
from layerserve.layers.reshaping.up_sampling2d import UpSampling2D
from layerserve.layers.reshaping.up_sampling3d import UpSampling3D
from layerserve.layers.reshaping.zero_padding1d import ZeroPadding1D
from layerserve.layers.reshaping.zero_padding2d import ZeroPadding2D
from layerserve.layers.reshaping.zero_padding3d import ZeroPadding3D

LAYERS = (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    Flatten,
    Permute,
    RepeatVector,
    Reshape,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)

__all__ = [
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Flatten",
    "Permute",
    "RepeatVector",
    "Reshape",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
]
