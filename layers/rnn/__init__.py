"""Recurrent layers."""

from layerserve.layers.rnn.lstm import LSTM

LAYERS = (LSTM,)

__all__ = ["LSTM"]
