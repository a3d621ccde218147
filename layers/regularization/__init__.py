"""Layers that regularize during training and are the identity at inference."""

from layerserve.layers.regularization.activity_regularization import ActivityRegularization
from layerserve.layers.regularization.alpha_dropout import AlphaDropout
from layerserve.layers.regularization.dropout import Dropout
from layerserve.layers.regularization.gaussian_dropout import GaussianDropout
from layerserve.layers.regularization.gaussian_noise import GaussianNoise
from layerserve.layers.regularization.spatial_dropout import (
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)

LAYERS = (
    ActivityRegularization,
    AlphaDropout,
    Dropout,
    GaussianDropout,
    GaussianNoise,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)

__all__ = [
    "ActivityRegularization",
    "AlphaDropout",
    "Dropout",
    "GaussianDropout",
    "GaussianNoise",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
]
