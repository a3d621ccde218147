"""Layers that are the identity at inference: no node at all."""

from __future__ import annotations

from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.regularization.activity_regularization import ActivityRegularization
from layerserve.layers.regularization.dropout import Dropout


@converter(Dropout, ActivityRegularization)  # SpatialDropout1D/2D/3D subclass Dropout
def convert_inference_identity(conversion: Conversion) -> Converted:
    return Converted([conversion.inputs[0].name])
