"""RNN(cell) and StackedRNNCells: against a hand-written SimpleRNN, against the built-in
layers run one after the other (a second implementation of a stack), their ONNX
export (batch 0, 1, 7, 64) and their refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rnn_wrapper_checks import (
    assert_export_matches,
    masked_sequences,
    random_weights,
    simple_rnn_by_hand,
)

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, UnknownArgumentError
from layerserve.export import to_onnx
from layerserve.layers import (
    GRU,
    LSTM,
    RNN,
    Dense,
    GRUCell,
    Input,
    LSTMCell,
    Masking,
    SimpleRNN,
    SimpleRNNCell,
    StackedRNNCells,
)
from layerserve.models import Model, model_from_json
from layerserve.serialization import keras_semantics

STEPS, FEATURES = 6, 3
LAYER_OF = {LSTMCell: LSTM, GRUCell: GRU, SimpleRNNCell: SimpleRNN}


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
@pytest.mark.parametrize("batch", [0, 1, 64])
def test_simple_rnn_cell_by_hand(go_backwards, zero_output, batch):
    rng = np.random.default_rng(batch)
    layer = RNN(
        SimpleRNNCell(4),
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output,
    )
    layer.build((None, STEPS, FEATURES))
    weights = random_weights(layer, rng)
    x = masked_sequences(rng, (batch, STEPS, FEATURES))
    mask = np.any(x != 0, axis=-1)
    sequence, h = layer(x, mask=mask)
    want, _, want_h = simple_rnn_by_hand(x, *weights, mask, go_backwards, zero_output)
    np.testing.assert_allclose(sequence, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, want_h, rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(0, 8), steps=st.integers(1, 6))
def test_stack_of_simple_cells_is_the_chain_by_hand(seed, batch, steps):
    """Cell 2's input at step t is cell 1's output at step t; a masked step keeps both."""
    rng = np.random.default_rng(seed)
    layer = RNN([SimpleRNNCell(4), SimpleRNNCell(2)], return_sequences=True, return_state=True)
    layer.build((None, steps, FEATURES))
    weights = random_weights(layer, rng)
    x = rng.normal(size=(batch, steps, FEATURES)).astype(np.float32)
    mask = rng.random((batch, steps)) < 0.7
    sequence, h1, h2 = layer(x, mask=mask)
    first, _, want_h1 = simple_rnn_by_hand(x, *weights[:3], mask)
    second, _, want_h2 = simple_rnn_by_hand(first, *weights[3:], mask)
    for got, want in ((sequence, second), (h1, want_h1), (h2, want_h2)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("version", ["3.15.1", "2.21.0", "2.2.4"])
@pytest.mark.parametrize("cell", [LSTMCell, GRUCell, SimpleRNNCell])
def test_rnn_of_a_cell_is_the_layer(version, cell):
    """Same weights, same numbers as LSTM / GRU / SimpleRNN, in every version's
    semantics (recurrent activation and reset_after defaults included)."""
    rng = np.random.default_rng(0)
    flags = {"return_sequences": True, "return_state": True, "go_backwards": True}
    with keras_semantics(version):
        rnn, layer = RNN(cell(3), **flags), LAYER_OF[cell](3, **flags)
    x = masked_sequences(rng, (7, STEPS, FEATURES))
    mask = np.any(x != 0, axis=-1)
    rnn(x)
    layer(x)
    layer.set_weights(random_weights(rnn, rng))
    for got, want in zip(rnn(x, mask=mask), layer(x, mask=mask), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_mixed_stack_is_layers_in_sequence(go_backwards):
    """LSTMCell then GRUCell equals LSTM(return_sequences) then GRU on the steps in
    processing order."""
    rng = np.random.default_rng(5)
    with keras_semantics("3.15.1"):
        stack = StackedRNNCells([LSTMCell(3), GRUCell(2)])
        rnn = RNN(stack, return_sequences=True, return_state=True, go_backwards=go_backwards)
        first, second = (
            LSTM(3, return_sequences=True, return_state=True),
            GRU(2, return_sequences=True, return_state=True),
        )
    x = masked_sequences(rng, (7, STEPS, FEATURES))
    mask = np.any(x != 0, axis=-1)
    rnn(x)
    weights = random_weights(rnn, rng)
    ordered = (x[:, ::-1], mask[:, ::-1]) if go_backwards else (x, mask)
    first(ordered[0])
    first.set_weights(weights[:3])
    y1, h, c = first(ordered[0], mask=ordered[1])
    second(y1)
    second.set_weights(weights[3:])
    y2, g = second(y1, mask=ordered[1])
    for got, want in zip(rnn(x, mask=mask), (y2, h, c, g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_initial_states_come_cell_by_cell():
    rng = np.random.default_rng(2)
    layer = RNN([SimpleRNNCell(4), SimpleRNNCell(2)], return_sequences=True)
    layer.build((None, STEPS, FEATURES))
    weights = random_weights(layer, rng)
    x = rng.normal(size=(7, STEPS, FEATURES)).astype(np.float32)
    h1, h2 = rng.normal(size=(7, 4)).astype(np.float32), rng.normal(size=(7, 2)).astype(np.float32)
    first = simple_rnn_by_hand(x, *weights[:3], initial=h1)[0]
    want = simple_rnn_by_hand(first, *weights[3:], initial=h2)[0]
    np.testing.assert_allclose(layer(x, initial_state=[h1, h2]), want, rtol=1e-5, atol=1e-6)


def test_config_round_trip_through_json():
    rng = np.random.default_rng(1)
    inputs = Input((STEPS, FEATURES))
    layer = RNN([LSTMCell(3), GRUCell(2, reset_after=True)], return_sequences=True)
    model = Model(inputs, layer(inputs))
    random_weights(layer, rng)
    copy = model_from_json(model.to_json())
    copy.set_weights(model.get_weights())
    x = rng.normal(size=(2, STEPS, FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(copy.predict(x), model.predict(x))
    assert [type(c).__name__ for c in copy.layers[-1].cell.cells] == ["LSTMCell", "GRUCell"]


def rnn_model(version, cell, **flags):
    with keras_semantics(version):
        inputs = Input((STEPS, FEATURES))
        masked = Masking()(inputs)
        outputs = RNN(cell(), **flags)(masked)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        model = Model(inputs, [*outputs, Dense(2)(RNN(GRUCell(2))(masked))])
    return model


@pytest.mark.parametrize("version", ["3.15.1", "2.21.0"])
@pytest.mark.parametrize(
    ("cell", "flags"),
    [
        (lambda: LSTMCell(3), {"return_sequences": True, "zero_output_for_mask": True}),
        (lambda: GRUCell(3), {"return_state": True, "go_backwards": True}),
        (lambda: SimpleRNNCell(3, activation="relu"), {"return_sequences": True}),
        (
            lambda: [LSTMCell(3), GRUCell(4), SimpleRNNCell(2)],
            {"return_sequences": True, "return_state": True},
        ),
        (lambda: [GRUCell(2), LSTMCell(3)], {"go_backwards": True, "return_sequences": True}),
        (
            lambda: [SimpleRNNCell(2), SimpleRNNCell(3)],
            {"zero_output_for_mask": True, "return_sequences": True},
        ),
    ],
)
def test_export_matches_reference(version, cell, flags):
    rng = np.random.default_rng(3)
    model = rnn_model(version, cell, **flags)
    for layer in model.layers:
        if layer.weights:
            random_weights(layer, rng)
    assert_export_matches(model, lambda n: masked_sequences(rng, (n, STEPS, FEATURES)))


def test_export_with_initial_states_of_a_stack():
    rng = np.random.default_rng(4)
    x, h, c, g = Input((STEPS, FEATURES)), Input((3,)), Input((3,)), Input((2,))
    with keras_semantics("2.21.0"):
        layer = RNN([LSTMCell(3), GRUCell(2)], return_sequences=True)
        model = Model([x, h, c, g], layer(Masking()(x), initial_state=[h, c, g]))
    random_weights(layer, rng)

    def inputs(n):
        return [masked_sequences(rng, (n, STEPS, FEATURES))] + [
            rng.normal(size=(n, size)).astype(np.float32) for size in (3, 3, 2)
        ]

    assert_export_matches(model, inputs)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("make", "error", "fragment"),
    [
        (lambda: RNN(Dense(2)), ConfigError, "built-in cells only"),
        (lambda: RNN({"class_name": "MyCell", "config": {}}), ConfigError, "MyCell"),
        (lambda: RNN(LSTMCell(2), stateful=True), NotSupportedError, "stateful=True"),
        (lambda: RNN(LSTMCell(2), time_major=True), NotSupportedError, "time_major=True"),
        (lambda: RNN(LSTMCell(2), num_constants=1), NotSupportedError, "num_constants=1"),
        (lambda: StackedRNNCells([]), ConfigError, "non-empty list of cells"),
        (lambda: LSTMCell(2, return_sequences=True), UnknownArgumentError, "return_sequences"),
    ],
)
def test_bad_arguments_are_refused(make, error, fragment):
    with pytest.raises(error) as raised:
        make()
    assert fragment in str(raised.value)


def test_wrong_number_of_initial_states_is_refused():
    layer = RNN([LSTMCell(2), GRUCell(2)])
    x = np.zeros((1, STEPS, FEATURES), np.float32)
    with pytest.raises(ShapeError, match="3 initial states"):
        layer(x, initial_state=[np.zeros((1, 2), np.float32)] * 2)


def test_stack_with_states_and_mask_is_refused_where_keras_differs():
    with keras_semantics("3.15.1"):
        layer = RNN([SimpleRNNCell(2), SimpleRNNCell(2)])
    x = np.ones((1, STEPS, FEATURES), np.float32)
    states = [np.ones((1, 2), np.float32)] * 2
    with pytest.raises(NotSupportedError, match="initial_state"):
        layer([x, *states], mask=[np.ones((1, STEPS), bool), None, None])


def test_unrolled_stack_has_no_export():
    inputs = Input((STEPS, FEATURES))
    model = Model(inputs, RNN([SimpleRNNCell(2), SimpleRNNCell(2)], unroll=True)(inputs))
    with pytest.raises(NotSupportedError, match="unroll=True"):
        to_onnx(model)
