"""Every refusal of LSTM, GRU, SimpleRNN and the cuDNN layers: typed errors that name
what was expected and what was received."""

from __future__ import annotations

import numpy as np
import pytest

from layerserve.errors import (
    ConfigError,
    MaskingNotSupportedError,
    NotSupportedError,
    ShapeError,
    UnknownArgumentError,
)
from layerserve.layers import GRU, LSTM, CuDNNGRU, CuDNNLSTM, Input, Masking, SimpleRNN
from layerserve.models import Sequential
from layerserve.serialization import keras_semantics

RECURRENT = [LSTM, GRU, SimpleRNN]


@pytest.mark.parametrize("cls", RECURRENT)
@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"stateful": True}, NotSupportedError, "Received: stateful=True"),
        ({"time_major": True}, NotSupportedError, "Received: time_major=True"),
        ({"dropout": "half"}, ConfigError, "Received: dropout='half'"),
        ({"recurrent_dropout": None}, ConfigError, "Received: recurrent_dropout=None"),
        ({"implementation": 3}, ConfigError, "Received: implementation=3"),
        ({"implementation": True}, ConfigError, "Received: implementation=True"),
        ({"return_sequence": True}, UnknownArgumentError, "return_sequence"),
    ],
)
def test_refused_arguments(cls, kwargs, error, text):
    with pytest.raises(error, match="Expected|not supported|not understood") as raised:
        cls(2, **kwargs)
    assert text in str(raised.value)


@pytest.mark.parametrize("cls", RECURRENT)
@pytest.mark.parametrize("units", [0, -1, 2.5, True, None])
def test_units_must_be_a_positive_integer(cls, units):
    with pytest.raises(ConfigError, match=r"Expected `units` to be a positive integer"):
        cls(units)


@pytest.mark.parametrize("cls", [LSTM, GRU])
@pytest.mark.parametrize("value", ["yes", None, "cudnn"])
def test_use_cudnn_values(cls, value):
    with pytest.raises(ConfigError, match=r"Expected `use_cudnn` to be one of"):
        cls(2, use_cudnn=value)
    for accepted in ("auto", True, False):
        cls(2, use_cudnn=accepted)


@pytest.mark.parametrize(("cls", "states"), [(LSTM, 2), (GRU, 1), (SimpleRNN, 1)])
def test_initial_state_count(cls, states):
    x = Input((4, 3))
    wrong = [Input((2,)) for _ in range(states + 1)]
    with pytest.raises(ShapeError, match=f"list of {states} tensors"):
        cls(2)(x, initial_state=wrong)
    with pytest.raises(ShapeError, match="initial state twice"):
        cls(2)([x, *wrong[:states]], initial_state=wrong[:states])
    layer = cls(2)
    with pytest.raises(ShapeError, match=f"its input and {states} initial state"):
        layer([np.zeros((1, 4, 3), "float32")] + [np.zeros((1, 2), "float32")] * (states + 1))


@pytest.mark.parametrize("cls", RECURRENT)
def test_state_and_mask_shapes(cls):
    layer = cls(2)
    x = np.zeros((3, 4, 3), "float32")
    states = [np.zeros((3, 2), "float32")] * (2 if cls is LSTM else 1)
    with pytest.raises(ShapeError, match=r"initial states of shape \(batch, units\)"):
        layer([x, np.zeros((2, 2), "float32"), *states[1:]])
    with pytest.raises(ShapeError, match="expected axis -1 of input shape to have value 2"):
        layer([x, np.zeros((3, 5), "float32"), *states[1:]])
    with pytest.raises(ShapeError, match=r"mask of shape \(batch, timesteps\)"):
        layer.run(x, mask=np.ones((3, 5), bool))
    with pytest.raises(ShapeError, match="expected ndim=3"):
        cls(2)(np.zeros((3, 4), "float32"))
    with pytest.raises(ShapeError, match="last dimension of the input"):
        cls(2)(Input((4, None)))
    with pytest.raises(ShapeError, match="expected axis -1 of input shape to have value 3"):
        layer(np.zeros((3, 4, 5), "float32"))


@pytest.mark.parametrize("cls", [CuDNNGRU, CuDNNLSTM])
def test_cudnn_layers_fix_their_math(cls):
    with pytest.raises(ConfigError, match=r"Expected CuDNN\w+ to have `activation='tanh'`"):
        cls(2, activation="relu")
    with pytest.raises(ConfigError, match="Received: recurrent_dropout=0.5"):
        cls.from_config({"units": 2, "recurrent_dropout": 0.5})
    if cls is CuDNNGRU:
        with pytest.raises(ConfigError, match="Received: reset_after=False"):
            cls(2, reset_after=False)


@pytest.mark.parametrize("cls", [CuDNNGRU, CuDNNLSTM])
def test_cudnn_layers_and_masks(cls):
    """Keras 2.2 refuses a mask reaching a cuDNN layer; tf.keras runs every step."""
    with keras_semantics("2.2.4"), pytest.raises(MaskingNotSupportedError, match="masking"):
        Sequential([Masking(input_shape=(4, 3)), cls(2)])
    with keras_semantics("2.13.1"):
        model = Sequential([Masking(input_shape=(4, 3)), cls(2, return_sequences=True)])
        plain = Sequential([Input((4, 3)), cls(2, return_sequences=True)])
    plain.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    x[0, 1] = 0
    np.testing.assert_array_equal(model.predict(x), plain.predict(x))
    assert model.compute_mask(x) is None
