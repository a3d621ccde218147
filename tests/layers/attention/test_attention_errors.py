"""Typed errors of the attention layers: every argument is honoured or refused, and
each refusal names the layer or argument and the value received."""

import json

import numpy as np
import pytest

from layerserve.errors import ConfigError, NotSupportedError, ShapeError
from layerserve.layers import (
    AdditiveAttention,
    Attention,
    Dense,
    Embedding,
    Input,
    LayerNormalization,
    MultiHeadAttention,
)
from layerserve.layers.merging import Add
from layerserve.layers.tensor import NOT_GIVEN
from layerserve.models import Model, model_from_json
from layerserve.serialization import keras_semantics

Q = np.zeros((2, 5, 4), "float32")
V = np.zeros((2, 6, 4), "float32")


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda: Attention(score_mode="general"), "score_mode='general'"),
        (lambda: Attention(dropout=1.5), "dropout=1.5"),
        (lambda: Attention(use_scale="yes"), "use_scale='yes'"),
        (lambda: AdditiveAttention(seed="x"), "seed='x'"),
        (lambda: MultiHeadAttention(0, 3), "num_heads=0"),
        (lambda: MultiHeadAttention(2, -1), "key_dim=-1"),
        (lambda: MultiHeadAttention(2, 3, value_dim=2.5), "value_dim=2.5"),
        (lambda: MultiHeadAttention(2, 3, attention_axes="1"), "attention_axes='1'"),
        (lambda: MultiHeadAttention(2, 3, sliding_window=0), "sliding_window=0"),
        (lambda: MultiHeadAttention(2, 3, flash_attention=True, dropout=0.1), "dropout=0.1"),
        (lambda: MultiHeadAttention(2, 3, output_shape="x"), "output_shape"),
    ],
)
def test_bad_arguments_are_refused(make, text):
    with pytest.raises(ConfigError) as raised:
        make()
    assert text in str(raised.value) and "Received" in str(raised.value)


def test_unknown_config_key_is_refused():
    with pytest.raises(TypeError, match="not understood by Attention: causal_mode"):
        Attention.from_config({"causal_mode": True})


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda: Attention()(Q), ShapeError, "must be called on a list of inputs"),
        (lambda: Attention()([Q, V, V, V]), ShapeError, "Received length: 4"),
        (lambda: Attention()([Q, V[..., :3]]), ShapeError, "same leading axes"),
        (lambda: Attention()([Q[0], V[0]]), ShapeError, "rank >= 3"),
        (lambda: Attention()([Q, V], mask=Q), ShapeError, "mask must be a list"),
        (lambda: Attention()([Q, V], use_causal_mask="yes"), ConfigError, "use_causal_mask='yes'"),
        (lambda: MultiHeadAttention(2, 3)(Q, V, V[:, :4]), ShapeError, "except the last one"),
        (lambda: MultiHeadAttention(2, 3, attention_axes=3)(Q, V), ShapeError, "attention_axes"),
        (lambda: Attention(dropout=0.2)([Q, V], training=True), NotSupportedError, "training=True"),
        (
            lambda: MultiHeadAttention(2, 3, dropout=0.2)(Q, V, training=True),
            NotSupportedError,
            "training=True",
        ),
    ],
)
def test_bad_calls_are_refused(call, error, text):
    with pytest.raises(error, match=None) as raised:
        call()
    assert text in str(raised.value)


def test_tf_keras_negative_attention_axes_are_refused():
    with keras_semantics("2.21.0"), pytest.raises(NotSupportedError, match="attention_axes=-2"):
        MultiHeadAttention(2, 3, attention_axes=-2)


def test_saved_shapes_must_match_the_inputs():
    with keras_semantics("2.21.0"):
        layer = MultiHeadAttention.from_config(
            {"num_heads": 2, "key_dim": 3, "query_shape": [None, 5, 8], "value_shape": [None, 6, 4]}
        )
    with pytest.raises(ShapeError, match="saved for query shape"):
        layer(Q, V)


@pytest.mark.parametrize("second_reader", ["attention", "dense"])
def test_keras3_masked_input_read_at_the_same_depth_is_refused(second_reader):
    """Keras 3's MultiHeadAttention removes its inputs' masks when it runs; a reader at
    the same depth runs before or after it in an order layerserve does not reproduce."""
    with keras_semantics("3.15.1"):
        tokens = Input((6,), dtype="int32")
        x = Embedding(10, 4, mask_zero=True)(tokens)
        attended = MultiHeadAttention(2, 2, name="mha")(x, x)
        other = MultiHeadAttention(2, 2)(x, x) if second_reader == "attention" else Dense(4)(x)
        with pytest.raises(NotSupportedError, match="within a depth") as raised:
            Model(tokens, Add()([attended, other]))
    assert "mha" in str(raised.value) or second_reader == "attention"


def test_keras3_residual_after_attention_in_a_model_built_here():
    """Keras 3: the residual Add runs after the attention layer removed the embedding's
    mask. A call recorded with ``mask=None`` (as Keras 3 files record a call without
    one) then derives its output mask from no mask; a call recorded without ``mask=``
    (built here) is refused, as Keras may record the mask for it; tf.keras keeps it."""
    ids = np.array([[1, 2, 0, 3, 0, 0], [0] * 6], "int32")
    for version, mask_argument in (("3.15.1", None), ("3.15.1", NOT_GIVEN), ("2.15.0", NOT_GIVEN)):
        with keras_semantics(version):
            tokens = Input((6,), dtype="int32")
            x = Embedding(10, 4, mask_zero=True)(tokens)
            attended = MultiHeadAttention(2, 2)(x, x)
            added = Add(name="residual")([x, attended], mask=mask_argument)
            if version == "3.15.1" and mask_argument is NOT_GIVEN:
                with pytest.raises(NotSupportedError, match="'residual' reads"):
                    Model(tokens, LayerNormalization()(added))
                continue
            model = Model(tokens, LayerNormalization()(added))
        want = None if version == "3.15.1" else ids != 0
        got = model.compute_mask(ids)
        assert (got is None) == (want is None), version
        if want is not None:
            np.testing.assert_array_equal(got, want)


def test_symbolic_explicit_query_mask_is_refused():
    q, v = Input((5, 4)), Input((6, 4))
    with pytest.raises(NotSupportedError, match="query_mask/value_mask/key_mask"):
        MultiHeadAttention(2, 3)(q, v, query_mask=Input((5,)))


def test_unknown_recorded_call_argument_is_refused():
    q, v = Input((5, 4)), Input((6, 4))
    model = Model([q, v], MultiHeadAttention(2, 3, name="mha")(q, v, use_causal_mask=True))
    config = json.loads(model.to_json())
    for layer in config["config"]["layers"]:
        if layer["name"] == "mha":
            layer["inbound_nodes"][0][0][3]["use_flash_kernel"] = True
    with pytest.raises(NotSupportedError, match="use_flash_kernel"):
        model_from_json(json.dumps(config))


def test_masks_on_higher_rank_queries_are_refused():
    """Keras's mask assembly assumes 3-D inputs (its Softmax refuses the result)."""
    query = np.zeros((2, 3, 4, 5), "float32")
    layer = MultiHeadAttention(2, 3, attention_axes=2)
    with pytest.raises(NotSupportedError, match="rank 4 is attended without masks only") as info:
        layer(query, query, query_mask=np.ones((2, 3, 4), bool))
    assert "(here the query's mask)" in str(info.value)
    with pytest.raises(NotSupportedError, match="rank 4 is attended without masks only") as info:
        layer(query, query, use_causal_mask=True)
    assert "(here use_causal_mask=True)" in str(info.value)
    assert "Received: query_shape=(2, 3, 4, 5)" in str(info.value)


def test_a_key_and_value_of_other_lengths_at_run_time_are_refused():
    """Lengths unknown when the model is built: the call checks them (a NumPy broadcast
    error, wrapped, said it before)."""
    query, value, key = Input((None, 4)), Input((None, 4)), Input((None, 4))
    model = Model([query, value, key], MultiHeadAttention(2, 3)(query, value, key))
    ones = [np.ones((1, n, 4), "float32") for n in (3, 5, 2)]
    with pytest.raises(ShapeError, match="same shape but for their last axis") as raised:
        model.predict(ones)
    assert "key shape=(1, 2, 4), value shape=(1, 5, 4)" in str(raised.value)
