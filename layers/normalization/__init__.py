"""Normalization layers."""

from layerserve.layers.normalization.batch_normalization import BatchNormalization
from layerserve.layers.normalization.group_normalization import GroupNormalization
from layerserve.layers.normalization.layer_normalization import LayerNormalization
from layerserve.layers.normalization.rms_normalization import RMSNormalization
from layerserve.layers.normalization.unit_normalization import UnitNormalization

LAYERS = (
    BatchNormalization,
    LayerNormalization,
    GroupNormalization,
    UnitNormalization,
    RMSNormalization,
)
# tf.keras's deprecated SyncBatchNormalization is BatchNormalization with synchronized
# statistics in training: the same layer at inference.
ALIASES = {"SyncBatchNormalization": "BatchNormalization"}

__all__ = [
    "BatchNormalization",
    "GroupNormalization",
    "LayerNormalization",
    "RMSNormalization",
    "UnitNormalization",
]
