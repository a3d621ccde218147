"""Core layers: Dense, Input, Lambda, Masking (and Embedding, Identity)."""

from layerserve.layers.core.dense import Dense
from layerserve.layers.core.input_layer import Input, InputLayer
from layerserve.layers.core.lambda_layer import Lambda
from layerserve.layers.core.masking import Masking

LAYERS = (Dense, InputLayer, Lambda, Masking)

__all__ = ["Dense", "Input", "InputLayer", "Lambda", "Masking"]
