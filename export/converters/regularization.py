"""Layers that are the identity at inference: no node at all."""

from __future__ import annotations

from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.core.identity import Identity
from layerserve.layers.regularization.activity_regularization import ActivityRegularization
from layerserve.layers.regularization.alpha_dropout import AlphaDropout
from layerserve.layers.regularization.dropout import Dropout
from layerserve.layers.regularization.gaussian_dropout import GaussianDropout
from layerserve.layers.regularization.gaussian_noise import GaussianNoise


# SpatialDropout1D/2D/3D subclass Dropout; masks pass through (the exporter's default).
@converter(Dropout, ActivityRegularization, GaussianNoise, GaussianDropout, AlphaDropout)
def convert_inference_identity(conversion: Conversion) -> Converted:
    return Converted([conversion.inputs[0].name])


@converter(Identity)
def convert_identity(conversion: Conversion) -> Converted:
    """Keras 3 passes the mask through; tf.keras drops it."""
    mask = conversion.previous_masks[0] if conversion.layer.supports_masking else None
    return Converted([conversion.inputs[0].name], masks=[None if mask is None else mask.name])
