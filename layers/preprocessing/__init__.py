"""Preprocessing layers found inside saved models: Rescaling, Normalization, CenterCrop,
Resizing, and the random augmentation layers (the identity at inference)."""

from layerserve.layers.preprocessing.center_crop import CenterCrop
from layerserve.layers.preprocessing.normalization import Normalization
from layerserve.layers.preprocessing.random_brightness import RandomBrightness
from layerserve.layers.preprocessing.random_contrast import RandomContrast
from layerserve.layers.preprocessing.random_crop import RandomCrop
from layerserve.layers.preprocessing.random_flip import RandomFlip
from layerserve.layers.preprocessing.random_rotation import RandomRotation
from layerserve.layers.preprocessing.random_translation import RandomTranslation
from layerserve.layers.preprocessing.random_zoom import RandomZoom
from layerserve.layers.preprocessing.rescaling import Rescaling
from layerserve.layers.preprocessing.resizing import Resizing

LAYERS = (
    CenterCrop,
    Normalization,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    Rescaling,
    Resizing,
)

__all__ = [
    "CenterCrop",
    "Normalization",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "Rescaling",
    "Resizing",
]
