"""Attention layers: Attention, AdditiveAttention, MultiHeadAttention."""

from layerserve.layers.attention.additive_attention import AdditiveAttention
from layerserve.layers.attention.attention import Attention
from layerserve.layers.attention.multi_head_attention import MultiHeadAttention

LAYERS = (AdditiveAttention, Attention, MultiHeadAttention)

__all__ = ["AdditiveAttention", "Attention", "MultiHeadAttention"]
