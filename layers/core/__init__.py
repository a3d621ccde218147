"""Core layers: Dense, EinsumDense, Embedding, Identity, Input, Lambda, Masking."""

from layerserve.layers.core.dense import Dense
from layerserve.layers.core.einsum_dense import EinsumDense
from layerserve.layers.core.embedding import Embedding
from layerserve.layers.core.identity import Identity
from layerserve.layers.core.input_layer import Input, InputLayer
from layerserve.layers.core.lambda_layer import Lambda
from layerserve.layers.core.masking import Masking

LAYERS = (Dense, EinsumDense, Embedding, Identity, InputLayer, Lambda, Masking)

__all__ = [
    "Dense",
    "EinsumDense",
    "Embedding",
    "Identity",
    "Input",
    "InputLayer",
    "Lambda",
    "Masking",
]
