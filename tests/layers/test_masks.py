"""Keras 2.2 mask propagation: pass-through, replacement, refusal and Lambda's choices."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerserve.errors import MaskingNotSupportedError
from layerserve.layers import (
    LSTM,
    Activation,
    ActivityRegularization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    Lambda,
    Masking,
    Permute,
    RepeatVector,
    Reshape,
    SpatialDropout1D,
)
from layerserve.models import Model, Sequential

PASS_THROUGH = [
    lambda: Dense(3),
    lambda: Dense(2, activation="relu", use_bias=False),
    lambda: Activation("tanh"),
    lambda: Dropout(0.5, seed=0),
    lambda: SpatialDropout1D(0.3, seed=0),
    lambda: ActivityRegularization(l1=0.1),
]

shapes = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 3))


@st.composite
def data_and_mask(draw):
    shape = draw(shapes)
    x = draw(arrays(np.float32, shape, elements=st.floats(-2, 2, width=32)))
    mask = draw(arrays(np.bool_, shape[:2]))
    return x, mask


@settings(max_examples=30, deadline=None)
@given(data=data_and_mask(), training=st.booleans())
def test_pass_through_layers_return_the_incoming_mask(data, training):
    x, mask = data
    for make in PASS_THROUGH:
        layer = make()
        _, out_mask = layer.run(x, training=training, mask=mask)
        np.testing.assert_array_equal(out_mask, mask)
        _, no_mask = layer.run(x, training=training)
        assert no_mask is None


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(
        np.float32,
        shapes,
        elements=st.sampled_from([0.0, 1.0, -1.5]),
    )
)
def test_mask_flows_from_masking_through_a_chain(x):
    inp = Input(x.shape[1:])
    h = Masking(0.0)(inp)
    for make in PASS_THROUGH:
        h = make()(h)
        assert h.mask is not None and h.mask.shape == (None, x.shape[1])
    model = Model(inp, h)
    np.testing.assert_array_equal(model.compute_mask(x), np.any(x != 0.0, axis=-1))
    # The values at masked steps are still computed (Dense does not zero them).
    assert model.predict(x).shape == (*x.shape[:2], 2)


@settings(max_examples=30, deadline=None)
@given(data=data_and_mask(), mask_value=st.sampled_from([0.0, 1.0]))
def test_masking_replaces_the_incoming_mask(data, mask_value):
    x, incoming = data
    x = np.where(np.abs(x) > 1, mask_value, x).astype("float32")
    _, out_mask = Masking(mask_value).run(x, mask=incoming)
    np.testing.assert_array_equal(out_mask, np.any(x != mask_value, axis=-1))


def test_model_input_mask_reaches_the_outputs():
    inp = Input((4, 2))
    model = Model(inp, Dropout(0.2)(Dense(3)(inp)))
    mask = np.array([[True, False, True, True], [False, False, True, False]])
    np.testing.assert_array_equal(model.compute_mask(np.ones((2, 4, 2)), mask), mask)
    assert model.compute_mask(np.ones((2, 4, 2))) is None


@pytest.mark.parametrize(
    ("input_shape", "make_layer"),
    [
        ((4, 2), lambda: Flatten()),
        ((4, 2), lambda: Reshape((8,))),
        ((4, 2), lambda: Permute((2, 1))),
        ((3,), lambda: RepeatVector(2)),
        ((4, 4, 2), lambda: Conv2D(2, 3)),
    ],
)
def test_non_masking_layer_refuses_a_mask_at_build_time(input_shape, make_layer):
    inp = Input(input_shape)
    masked = Masking()(inp)
    layer = make_layer()
    with pytest.raises(MaskingNotSupportedError, match=layer.name) as info:
        layer(masked)  # symbolic call: model construction, no data involved
    assert isinstance(info.value, TypeError)
    assert type(layer).__name__ in str(info.value)
    # Without a mask the same layer builds fine.
    make_layer()(Input(input_shape))
    # Eagerly too: a concrete mask is refused.
    x = np.ones((2, *input_shape), dtype="float32")
    with pytest.raises(MaskingNotSupportedError):
        make_layer().run(x, mask=np.ones(x.shape[:-1], dtype=bool))


def test_sequential_masking_then_flatten_fails_on_add():
    model = Sequential([Masking(input_shape=(3, 2))])
    with pytest.raises(MaskingNotSupportedError, match="flatten"):
        model.add(Flatten(name="flatten_after_masking"))


def test_mask_consumed_by_lstm_lets_flatten_follow():
    inp = Input((5, 2))
    h = LSTM(3)(Masking()(inp))  # return_sequences=False: no output mask
    assert h.mask is None
    out = RepeatVector(2)(h)
    assert out.shape == (None, 2, 3)
    seq = LSTM(3, return_sequences=True)(Masking()(inp))
    with pytest.raises(MaskingNotSupportedError):
        Flatten()(seq)


def test_lambda_without_mask_drops_it_silently():
    inp = Input((4, 2))
    out = Lambda(lambda v: v * 2)(Masking()(inp))
    assert out.mask is None
    flat = Flatten()(out)  # no error: the mask is gone
    model = Model(inp, flat)
    x = np.zeros((1, 4, 2), dtype="float32")
    x[0, 1] = 3.0
    np.testing.assert_array_equal(model.predict(x), (x * 2).reshape(1, -1))
    assert model.compute_mask(x) is None


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(
        np.float32,
        shapes,
        elements=st.sampled_from([0.0, 1.0, 2.0]),
    )
)
def test_lambda_mask_callable_computes_the_mask(x):
    inp = Input(x.shape[1:])
    shifted = Lambda(lambda v: v[:, 1:], mask=lambda v, m: m[:, 1:])(Masking()(inp))
    summed = Lambda(lambda v: v, mask=lambda v, m: np.any(v > 1.5, axis=-1))(inp)
    assert shifted.mask is not None and summed.mask is not None
    model = Model(inp, [shifted, summed])
    masks = model.compute_mask(x)
    np.testing.assert_array_equal(masks[0], np.any(x != 0, axis=-1)[:, 1:])
    np.testing.assert_array_equal(masks[1], np.any(x > 1.5, axis=-1))
