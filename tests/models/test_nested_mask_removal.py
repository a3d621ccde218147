"""A nested model called on masked tensors, built in layerserve: under Keras 3 its
attention layer removes the masks the call sets on its input for the inner layers after
it (the real-Keras evidence is the oracle case ``mha_nested_input_read_after`` in
tests/layers/attention/keras_cases.py); the rewiring that reproduces it leaves the nested
model's own results unchanged when it runs without masks."""

import numpy as np
import pytest

from layerserve.layers import Add, Dense, Embedding, Input, MultiHeadAttention
from layerserve.models import Model, model_from_json
from layerserve.serialization import keras_semantics

K3, TFK = "3.15.1", "2.21.0"
BATCHES = (0, 1, 7, 64)


def inner_model():
    """The attention layer reads the input; an Add after it and a shallower Dense too."""
    inner_in = Input((6, 4))
    attended = MultiHeadAttention(2, 2)(inner_in, inner_in)
    residual = Add()([inner_in, attended])
    late = Dense(4)(inner_in)
    deep = Dense(4)(Dense(4)(residual))
    return Model(inner_in, [residual, Add()([deep, late])])


def nested(version):
    with keras_semantics(version):
        tokens = Input((6,), dtype="int32")
        embedded = Embedding(10, 4, mask_zero=True)(tokens)
        inner = inner_model()
        rng = np.random.default_rng(1)
        inner.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in inner.weights])
        twin = inner_model()
        twin.set_weights(inner.get_weights())
        outer = Model(tokens, inner(embedded))
    return outer, inner, twin


def tokens(batch):
    data = np.random.default_rng(batch).integers(0, 4, (batch, 6)).astype("int32")
    data[1::3] = 0  # fully masked samples
    return data


@pytest.mark.parametrize("batch", BATCHES)
def test_keras3_nested_outputs_lose_the_mask(batch):
    outer, _, _ = nested(K3)
    _, masks = outer.run(tokens(batch))
    assert masks == [None, None]


@pytest.mark.parametrize("batch", BATCHES)
def test_tf_keras_nested_outputs_keep_the_mask(batch):
    outer, _, _ = nested(TFK)
    data = tokens(batch)
    _, masks = outer.run(data)
    for mask in masks:
        np.testing.assert_array_equal(mask, data != 0)


@pytest.mark.parametrize("batch", BATCHES)
def test_rewired_nested_model_alone_matches_its_twin(batch):
    """Rewired for its caller's masks, the nested model run alone (no masks) computes
    what an identical model that was never nested computes; its weights keep their
    order."""
    _, inner, twin = nested(K3)
    assert any(getattr(layer, "is_keras_op", False) for layer in inner._layers)
    assert not any(getattr(layer, "is_keras_op", False) for layer in twin._layers)
    for got, want in zip(inner.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    x = np.random.default_rng(batch).normal(size=(batch, 6, 4)).astype("float32")
    for got, want in zip(inner.predict(x), twin.predict(x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_config_round_trip_keeps_the_removal():
    outer, _, _ = nested(K3)
    again = model_from_json(outer.to_json())
    again.set_weights(outer.get_weights())
    data = tokens(7)
    values, masks = outer.run(data)
    values_again, masks_again = again.run(data)
    assert masks_again == masks == [None, None]
    for got, want in zip(values_again, values, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
