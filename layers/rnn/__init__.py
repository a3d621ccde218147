"""Recurrent layers."""

from layerserve.layers.rnn.bidirectional import Bidirectional
from layerserve.layers.rnn.cells import GRUCell, LSTMCell, SimpleRNNCell
from layerserve.layers.rnn.cudnn import CuDNNGRU, CuDNNLSTM
from layerserve.layers.rnn.gru import GRU
from layerserve.layers.rnn.lstm import LSTM
from layerserve.layers.rnn.rnn import RNN
from layerserve.layers.rnn.simple_rnn import SimpleRNN
from layerserve.layers.rnn.stacked_rnn_cells import StackedRNNCells
from layerserve.layers.rnn.time_distributed import TimeDistributed

LAYERS = (
    LSTM,
    GRU,
    SimpleRNN,
    CuDNNGRU,
    CuDNNLSTM,
    Bidirectional,
    TimeDistributed,
    RNN,
    LSTMCell,
    GRUCell,
    SimpleRNNCell,
    StackedRNNCells,
)

__all__ = [
    "LSTM",
    "GRU",
    "SimpleRNN",
    "CuDNNGRU",
    "CuDNNLSTM",
    "Bidirectional",
    "TimeDistributed",
    "RNN",
    "LSTMCell",
    "GRUCell",
    "SimpleRNNCell",
    "StackedRNNCells",
]
