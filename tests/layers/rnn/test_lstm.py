"""LSTM against a step-by-step reference written here (Keras 2.2 defaults)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerserve.errors import NotSupportedError
from layerserve.layers import LSTM, Input, Masking
from layerserve.models import Model, Sequential

RTOL, ATOL = 1e-5, 1e-6


def hard_sigmoid(v):
    return np.clip(0.2 * v + 0.5, 0.0, 1.0)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def lstm_reference(
    x, kernel, recurrent, bias, mask=None, go_backwards=False, recurrent_activation=hard_sigmoid
):
    """Per sample, per step: gates i, f, c, o; masked steps carry h and c over."""
    n_, t_, _ = x.shape
    u = recurrent.shape[0]
    x = x.astype(np.float64)
    bias = np.zeros(4 * u) if bias is None else bias.astype(np.float64)
    h = np.zeros((n_, u))
    c = np.zeros((n_, u))
    steps = list(range(t_))[::-1] if go_backwards else list(range(t_))
    outputs = []
    for t in steps:
        for n in range(n_):
            z = x[n, t] @ kernel + h[n] @ recurrent + bias
            i = recurrent_activation(z[:u])
            f = recurrent_activation(z[u : 2 * u])
            g = np.tanh(z[2 * u : 3 * u])
            o = recurrent_activation(z[3 * u :])
            c_new = f * c[n] + i * g
            h_new = o * np.tanh(c_new)
            if mask is None or mask[n, t]:
                h[n], c[n] = h_new, c_new
        outputs.append(h.copy())
    return np.stack(outputs, axis=1), h, c


def built_lstm(rng, features, units, scale=1.0, **kwargs):
    layer = LSTM(units, **kwargs)
    layer(np.zeros((1, 2, features), dtype="float32"))
    weights = [
        (rng.normal(size=(features, 4 * units)) * scale).astype("float32"),
        (rng.normal(size=(units, 4 * units)) * scale).astype("float32"),
    ]
    if kwargs.get("use_bias", True):
        weights.append((rng.normal(size=(4 * units,)) * scale).astype("float32"))
    layer.set_weights(weights)
    return layer, weights


def reference_for(layer_weights, x, **kwargs):
    kernel, recurrent, *rest = layer_weights
    bias = rest[0] if rest else None
    return lstm_reference(
        x, kernel.astype(np.float64), recurrent.astype(np.float64), bias, **kwargs
    )


@pytest.mark.parametrize(
    ("units", "return_sequences", "go_backwards", "use_bias"),
    list(itertools.product([1, 3], [False, True], [False, True], [True, False])),
)
def test_lstm_matches_reference(rng, units, return_sequences, go_backwards, use_bias):
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    layer, weights = built_lstm(
        rng,
        4,
        units,
        scale=2.0,
        return_sequences=return_sequences,
        go_backwards=go_backwards,
        use_bias=use_bias,
    )
    seq, h, _ = reference_for(weights, x, go_backwards=go_backwards)
    y = layer(x)
    expected = seq if return_sequences else h
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


def test_lstm_default_recurrent_activation_is_hard_sigmoid(rng):
    # Large weights push pre-activations beyond +-2.5 where hard_sigmoid saturates.
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    layer, weights = built_lstm(rng, 3, 2, scale=3.0)
    assert layer.get_config()["recurrent_activation"] == "hard_sigmoid"
    hard = reference_for(weights, x)[1]
    soft = reference_for(weights, x, recurrent_activation=sigmoid)[1]
    assert not np.allclose(hard, soft, atol=1e-3)
    np.testing.assert_allclose(layer(x), hard, rtol=RTOL, atol=ATOL)
    explicit = LSTM(2, recurrent_activation="sigmoid")
    explicit(x)
    explicit.set_weights(weights)
    np.testing.assert_allclose(explicit(x), soft, rtol=RTOL, atol=ATOL)


def test_lstm_return_state(rng):
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    for return_sequences in (False, True):
        layer, weights = built_lstm(rng, 3, 4, return_state=True, return_sequences=return_sequences)
        out, h_t, c_t = layer(x)
        seq, h, c = reference_for(weights, x)
        np.testing.assert_allclose(out, seq if return_sequences else h, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(h_t, h, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(c_t, c, rtol=RTOL, atol=ATOL)
        symbolic = LSTM(4, return_state=True, return_sequences=return_sequences)(Input((6, 3)))
        first = (None, 6, 4) if return_sequences else (None, 4)
        assert [t.shape for t in symbolic] == [first, (None, 4), (None, 4)]


MASKS = [
    [[1, 0, 1, 0, 1], [0, 0, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]],
    [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1], [0, 0, 0, 0, 1], [1, 1, 0, 1, 1]],
]


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm_interior_masks(rng, mask, go_backwards):
    mask = np.array(mask, dtype=bool)
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    layer, weights = built_lstm(
        rng, 3, 2, return_sequences=True, return_state=True, go_backwards=go_backwards
    )
    (seq, h_t, c_t), out_mask = layer.run(x, mask=mask)
    ref_seq, ref_h, ref_c = reference_for(weights, x, mask=mask, go_backwards=go_backwards)
    np.testing.assert_allclose(seq, ref_seq, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h_t, ref_h, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(c_t, ref_c, rtol=RTOL, atol=ATOL)
    # Direct checks of the carry rule, independent of the reference's loop.
    processed = mask[:, ::-1] if go_backwards else mask
    for n in range(4):
        for step in range(5):
            if not processed[n, step]:
                previous = seq[n, step - 1] if step else np.zeros(2)
                np.testing.assert_array_equal(seq[n, step], previous)
    for n in np.flatnonzero(~mask.any(axis=1)):  # a fully masked sample stays at zero
        np.testing.assert_array_equal(seq[n], np.zeros((5, 2)))
        np.testing.assert_array_equal(c_t[n], np.zeros(2))
    assert out_mask[0] is mask and out_mask[1] is None and out_mask[2] is None


def test_masking_then_lstm_repeats_last_valid_output():
    """Masking -> LSTM(2, return_sequences) on steps [1, 0, 2, 0] gives rows [a, a, b, b]."""
    model = Sequential([Masking(0.0, input_shape=(4, 1)), LSTM(2, return_sequences=True)])
    y = model.predict(np.array([[[1.0], [0.0], [2.0], [0.0]]], dtype="float32"))
    a, b = y[0, 0], y[0, 2]
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(y[0], [a, a, b, b])


@settings(max_examples=25, deadline=None)
@given(
    x=arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.integers(1, 6), st.just(2)),
        elements=st.sampled_from([0.0, 0.5, -1.0, 2.0]),
    ),
    return_sequences=st.booleans(),
)
def test_masking_lstm_model_matches_reference(x, return_sequences):
    model = Sequential(
        [Masking(0.0, input_shape=(None, 2)), LSTM(3, return_sequences=return_sequences)]
    )
    weights = model.layers[1].get_weights()
    mask = np.any(x != 0.0, axis=-1)
    seq, h, _ = reference_for(weights, x, mask=mask)
    np.testing.assert_allclose(
        model.predict(x), seq if return_sequences else h, rtol=RTOL, atol=ATOL
    )
    out_mask = model.compute_mask(x)
    if return_sequences:
        np.testing.assert_array_equal(out_mask, mask)
    else:
        assert out_mask is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, lambda u: np.r_[np.zeros(u), np.ones(u), np.zeros(2 * u)]),
        ({"unit_forget_bias": False}, lambda u: np.zeros(4 * u)),
        ({"bias_initializer": "ones"}, lambda u: np.ones(4 * u)),
        ({"bias_initializer": "ones", "unit_forget_bias": False}, lambda u: np.ones(4 * u)),
    ],
)
def test_lstm_initial_bias(kwargs, expected):
    units = 3
    layer = LSTM(units, **kwargs)
    layer(np.zeros((1, 2, 5), dtype="float32"))
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (5, 4 * units)
    assert recurrent.shape == (units, 4 * units)
    np.testing.assert_array_equal(bias, expected(units))


def test_lstm_unit_forget_bias_with_random_initializer():
    layer = LSTM(4, bias_initializer="random_uniform")
    layer(np.zeros((1, 2, 3), dtype="float32"))
    bias = layer.get_weights()[2]
    np.testing.assert_array_equal(bias[4:8], np.ones(4))
    assert np.all(bias[:4] != 1) and np.all(bias[8:] != 1)


def test_lstm_recurrent_kernel_is_orthogonal():
    layer = LSTM(3)
    layer(np.zeros((1, 2, 2), dtype="float32"))
    recurrent = layer.get_weights()[1].astype(np.float64)  # (3, 12): orthonormal rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(3), atol=1e-5)


def test_lstm_training_dropout(rng):
    x = rng.normal(size=(4, 5, 3)).astype("float32")

    def make(seed):
        layer = LSTM(4, dropout=0.5, recurrent_dropout=0.5, seed=seed)
        layer(x)
        return layer

    a, b = make(42), make(42)
    b.set_weights(a.get_weights())
    reference = reference_for(a.get_weights(), x)[1]
    np.testing.assert_allclose(a(x), reference, rtol=RTOL, atol=ATOL)  # inference: no dropout
    ya = a(x, training=True)
    assert not np.allclose(ya, reference, atol=1e-4)
    np.testing.assert_array_equal(ya, b(x, training=True))  # same seed, same masks


def test_lstm_input_dropout_mask_is_fixed_across_timesteps(rng):
    """implementation=2 draws one input mask per sample, reused at every step: the output
    equals the reference on x * m / (1 - rate) for one binary m per sample."""
    rate, features = 0.5, 3
    x = rng.normal(size=(6, 4, features)).astype("float32")
    layer = LSTM(2, dropout=rate, implementation=2, seed=3)
    layer(x)
    weights = layer.get_weights()
    y = layer(x, training=True)
    candidates = [np.array(bits) for bits in itertools.product([0, 1], repeat=features)]
    dropped_somewhere = False
    for n in range(x.shape[0]):
        matches = [
            m
            for m in candidates
            if np.allclose(
                reference_for(weights, x[n : n + 1] * m / (1 - rate))[1][0],
                y[n],
                rtol=1e-4,
                atol=1e-5,
            )
        ]
        assert matches, f"sample {n}: no time-constant input mask explains the output"
        dropped_somewhere |= not any(m.all() for m in matches)
    assert dropped_somewhere


def test_lstm_stateful_not_supported():
    with pytest.raises(NotSupportedError, match="stateful"):
        LSTM(2, stateful=True)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"return_sequences": True}, "mask"),
        ({"return_sequences": False}, None),
        ({"return_sequences": True, "return_state": True}, ["mask", None, None]),
        ({"return_sequences": False, "return_state": True}, [None, None, None]),
    ],
)
def test_lstm_output_mask(kwargs, expected):
    inp = Input((5, 2))
    masked = Masking()(inp)
    out = LSTM(3, **kwargs)(masked)
    tensors = out if isinstance(out, list) else [out]
    expected_list = expected if isinstance(expected, list) else [expected]
    for tensor, want in zip(tensors, expected_list, strict=True):
        if want is None:
            assert tensor.mask is None
        else:
            assert tensor.mask is not None and tensor.mask.shape == (None, 5)
    # Eagerly, the mask passed in is the mask passed on.
    x = np.zeros((2, 5, 2), dtype="float32")
    x[0, :3] = 1.0
    x[1, 2:] = 1.0
    model = Model(inp, out)
    masks = model.compute_mask(x)
    masks = masks if isinstance(masks, list) else [masks]
    for mask, want in zip(masks, expected_list, strict=True):
        if want is None:
            assert mask is None
        else:
            np.testing.assert_array_equal(mask, np.any(x != 0, axis=-1))
