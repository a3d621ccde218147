"""The attention layers against hand formulas written here with NumPy einsum, at batch
sizes 0, 1, 7 and 64, with masks anywhere in the sequence and fully masked rows, under
Keras 3 and tf.keras semantics; hypothesis draws the shapes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.layers import (
    AdditiveAttention,
    Attention,
    Input,
    Masking,
    MultiHeadAttention,
)
from layerserve.models import Model, model_from_json
from layerserve.serialization import keras_semantics

K3, K39, TFK = "3.15.1", "3.9.0", "2.21.0"
BATCHES = (0, 1, 7, 64)


def softmax(x, axes=(-1,)):
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


def rng_arrays(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype("float32") for s in shapes]


def masks(seed, batch, length, full_rows=(1,)):
    """Random keep-masks with masked steps anywhere, and some samples fully masked."""
    keep = np.random.default_rng(seed).random((batch, length)) > 0.3
    for row in full_rows:
        if row < batch:
            keep[row] = False
    return keep


def hand_dense_attention(q, v, k, scores, q_mask=None, v_mask=None, causal=False, tfk=False):
    """softmax(scores - 1e9·¬mask)·v, query rows zeroed."""
    keep = np.ones(scores.shape, bool)
    if v_mask is not None:
        keep &= v_mask[:, None, :]
    if causal:
        keep &= np.tril(np.ones(scores.shape[-2:], bool))
    weights = softmax(np.where(keep, scores, scores - np.float32(1e9)))
    out = np.einsum("bts,bsd->btd", weights, v)
    if q_mask is not None:
        out = out * q_mask[..., None] if tfk else np.where(q_mask[..., None], out, 0)
    return out, weights


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("version", [K3, TFK])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_dot_with_masks(batch, version, causal):
    q, v, k = rng_arrays(batch, (batch, 5, 4), (batch, 6, 3), (batch, 6, 4))
    q_mask, v_mask = masks(1, batch, 5), masks(2, batch, 6, full_rows=(2,))
    with keras_semantics(version):
        layer = Attention(use_scale=True)
    layer.build([q.shape, v.shape, k.shape])
    layer.scale.value = np.float32(0.7)
    out, weights = layer(
        [q, v, k], mask=[q_mask, v_mask], use_causal_mask=causal, return_attention_scores=True
    )
    scores = np.einsum("btd,bsd->bts", q, k) * np.float32(0.7)
    want, want_w = hand_dense_attention(q, v, k, scores, q_mask, v_mask, causal, version == TFK)
    np.testing.assert_allclose(out, want, atol=1e-5)
    np.testing.assert_allclose(weights, want_w, atol=1e-6)
    assert out.shape == (batch, 5, 3)


@pytest.mark.parametrize("use_scale", [False, True])
def test_attention_concat(use_scale):
    q, v = rng_arrays(3, (7, 5, 4), (7, 6, 4))
    with keras_semantics(K3):
        layer = Attention(score_mode="concat", use_scale=use_scale)
    layer.build([q.shape, v.shape])
    layer.concat_score_weight.value = np.float32(1.3)
    scale = np.float32(0.6)
    if use_scale:
        layer.scale.value = scale
    summed = q[:, :, None, :] + v[:, None, :, :]
    scores = np.float32(1.3) * np.tanh((scale if use_scale else 1) * summed).sum(-1)
    np.testing.assert_allclose(layer([q, v]), hand_dense_attention(q, v, v, scores)[0], atol=1e-5)


@pytest.mark.parametrize("version", [K3, TFK])
def test_additive_attention(version):
    q, v, k = rng_arrays(4, (7, 5, 4), (7, 6, 4), (7, 6, 4))
    v_mask = masks(5, 7, 6)
    with keras_semantics(version):
        layer = AdditiveAttention()
    layer.build([q.shape, v.shape, k.shape])
    scale = layer.scale.value
    scores = np.einsum("d,btsd->bts", scale, np.tanh(q[:, :, None] + k[:, None]))
    want = hand_dense_attention(q, v, k, scores, v_mask=v_mask)[0]
    np.testing.assert_allclose(layer([q, v, k], mask=[None, v_mask]), want, atol=1e-5)


def test_tf_keras_causal_config_key_masks_the_future():
    """tf.keras <= 2.9 saved ``causal`` in the config instead of the call argument."""
    q, v = rng_arrays(6, (7, 5, 4), (7, 5, 4))
    with keras_semantics("2.9.0"):
        legacy = Attention.from_config({"name": "a", "causal": True, "use_scale": False})
    with keras_semantics(K3):
        modern = Attention()
    np.testing.assert_array_equal(legacy([q, v]), modern([q, v], use_causal_mask=True))
    assert legacy.get_config()["causal"] is True


def hand_mha(layer, query, value, keep=None, rule="fused"):
    """Keras's MultiHeadAttention for 3-D inputs, written out."""
    w = {name: layer.kernels[name].value for name in layer.kernels}
    b = {name: layer.biases[name].value for name in layer.biases}
    q = np.einsum("btd,dnh->btnh", query, w["query"]) + b["query"]
    k = np.einsum("bsd,dnh->bsnh", value, w["key"]) + b["key"]
    v = np.einsum("bsd,dnh->bsnh", value, w["value"]) + b["value"]
    # float32, as Keras: a fully masked row's scores minus 1e9 then round alike
    scores = np.einsum("bsnh,btnh->bnts", k, q / np.sqrt(layer.key_dim)).astype("float32")
    if keep is not None:
        keep = keep[:, None]
        if rule == "tfk":
            scores = scores + (1 - keep).astype("float32") * np.float32(-1e9)
        else:
            scores = np.where(keep, scores, -1e9 if rule == "zeroed" else -3e38)
    weights = softmax(scores)
    if keep is not None and rule == "zeroed":
        weights = np.where(keep, weights, 0)
    context = np.einsum("bnts,bsnh->btnh", weights, v)
    out = np.einsum("btnh,nho->bto", context, w["attention_output"]) + b["attention_output"]
    return out, weights


def randomized(layer, seed):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.weights])
    return layer


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize(
    ("version", "dropout", "scores", "rule"),
    [
        (K3, 0.0, False, "fused"),  # Keras 3's fused path: fully masked rows uniform
        (K3, 0.1, False, "zeroed"),  # the einsum path (dropout): rows of zeros
        (K3, 0.0, True, "zeroed"),  # the einsum path (scores returned)
        (K39, 0.1, False, "tfk"),  # before 3.10 the masked softmax did not zero rows
        (TFK, 0.0, False, "tfk"),
    ],
)
def test_mha_masks_per_version_and_path(batch, version, dropout, scores, rule):
    query, value = rng_arrays(batch + 10, (batch, 5, 4), (batch, 6, 4))
    q_mask, v_mask = masks(7, batch, 5, full_rows=(1, 3)), masks(8, batch, 6, full_rows=(4,))
    attention_mask = np.random.default_rng(9).random((batch, 5, 6)) > 0.2
    with keras_semantics(version):
        layer = MultiHeadAttention(2, 3, dropout=dropout)
    layer.build([query.shape, value.shape])
    randomized(layer, 11)
    result = layer(
        query,
        value,
        query_mask=q_mask,
        value_mask=v_mask,
        attention_mask=attention_mask,
        use_causal_mask=True,
        return_attention_scores=scores,
    )
    keep = q_mask[:, :, None] & v_mask[:, None, :] & np.tril(np.ones((5, 6), bool)) & attention_mask
    want, want_weights = hand_mha(layer, query, value, keep, rule)
    got = result[0] if scores else result
    np.testing.assert_allclose(got, want, atol=1e-5)
    if scores:
        np.testing.assert_allclose(result[1], want_weights, atol=1e-6)
    if batch > 3 and rule == "zeroed":  # a fully masked query row is the output bias
        np.testing.assert_allclose(
            got[1], np.broadcast_to(layer.biases["attention_output"].value, (5, 4)), atol=1e-6
        )


def test_mha_two_attention_axes_joint_softmax():
    query, value = rng_arrays(12, (7, 3, 4, 5), (7, 2, 3, 5))
    with keras_semantics(K3):
        layer = MultiHeadAttention(2, 3, attention_axes=(1, 2), output_shape=(2, 3))
    layer.build([query.shape, value.shape])
    randomized(layer, 13)
    out, weights = layer(query, value, return_attention_scores=True)
    w = {n: layer.kernels[n].value for n in layer.kernels}
    b = {n: layer.biases[n].value for n in layer.biases}
    q = np.einsum("bhwd,dnk->bhwnk", query, w["query"]) + b["query"]
    k = np.einsum("bxyd,dnk->bxynk", value, w["key"]) + b["key"]
    v = np.einsum("bxyd,dnk->bxynk", value, w["value"]) + b["value"]
    scores = np.einsum("bxynk,bhwnk->bnhwxy", k, q / np.sqrt(3))
    want_w = softmax(scores, axes=(4, 5))
    context = np.einsum("bnhwxy,bxynk->bhwnk", want_w, v)
    want = np.einsum("bhwnk,nkij->bhwij", context, w["attention_output"]) + b["attention_output"]
    np.testing.assert_allclose(weights, want_w, atol=1e-6)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_mha_gate_and_sliding_window():
    query, value = rng_arrays(14, (7, 5, 4), (7, 5, 4))
    with keras_semantics(K3):
        layer = MultiHeadAttention(2, 3, use_gate=True, sliding_window=2, dropout=0.1)
    layer.build([query.shape, value.shape])
    randomized(layer, 15)
    assert [w.name for w in layer.weights][4:6] == ["gate/kernel", "gate/bias"]
    w = {n: layer.kernels[n].value for n in layer.kernels}
    b = {n: layer.biases[n].value for n in layer.biases}
    band = np.abs(np.arange(5)[:, None] - np.arange(5)[None]) < 2
    q = np.einsum("btd,dnh->btnh", query, w["query"]) + b["query"]
    k = np.einsum("bsd,dnh->bsnh", value, w["key"]) + b["key"]
    v = np.einsum("bsd,dnh->bsnh", value, w["value"]) + b["value"]
    gate = 1 / (1 + np.exp(-(np.einsum("btd,dnh->btnh", query, w["gate"]) + b["gate"])))
    weights = softmax(np.where(band, np.einsum("bsnh,btnh->bnts", k, q / np.sqrt(3)), -1e9))
    context = np.einsum("bnts,bsnh->btnh", weights, v) * gate
    want = np.einsum("btnh,nho->bto", context, w["attention_output"]) + b["attention_output"]
    np.testing.assert_allclose(layer(query, value), want, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(0, 9),
    tq=st.integers(1, 6),
    tv=st.integers(1, 6),
    dim=st.integers(1, 5),
    heads=st.integers(1, 3),
    key_dim=st.integers(1, 4),
)
def test_mha_matches_formula_over_shapes(batch, tq, tv, dim, heads, key_dim):
    query, value = rng_arrays(batch * 7 + tq, (batch, tq, dim), (batch, tv, dim))
    with keras_semantics(K3):
        layer = MultiHeadAttention(heads, key_dim)
    layer.build([query.shape, value.shape])
    randomized(layer, tv)
    np.testing.assert_allclose(layer(query, value), hand_mha(layer, query, value)[0], atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(0, 9), tq=st.integers(1, 6), tv=st.integers(1, 6), dim=st.integers(1, 5))
def test_attention_matches_formula_over_shapes(batch, tq, tv, dim):
    q, v = rng_arrays(batch + tq * 3, (batch, tq, dim), (batch, tv, dim))
    v_mask = masks(tv, batch, tv)
    scores = np.einsum("btd,bsd->bts", q, v)
    want = hand_dense_attention(q, v, v, scores, v_mask=v_mask, causal=True)[0]
    got = Attention()([q, v], mask=[None, v_mask], use_causal_mask=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_model_config_round_trip_keeps_call_arguments():
    """A model's JSON records return_attention_scores, use_causal_mask and the
    attention_mask tensor; reloading it computes the same numbers and masks."""
    with keras_semantics(TFK):
        q_in, v_in, m_in = Input((5, 4)), Input((6, 4)), Input((5, 6))
        q = Masking()(q_in)
        out, scores = MultiHeadAttention(2, 3, name="mha")(
            q, v_in, attention_mask=m_in, use_causal_mask=True, return_attention_scores=True
        )
        att = Attention(name="att")([q, v_in], use_causal_mask=True)
        model = Model([q_in, v_in, m_in], [out, scores, att])
    randomized(model.get_layer("mha"), 21)
    reloaded = model_from_json(model.to_json())
    reloaded.set_weights(model.get_weights())
    inputs = rng_arrays(22, (7, 5, 4), (7, 6, 4), (7, 5, 6))
    inputs[0][2, 1:3] = 0
    inputs[2] = (inputs[2] > 0).astype("float32")
    for got, want in zip(reloaded.predict(inputs), model.predict(inputs), strict=True):
        np.testing.assert_array_equal(got, want)
    masks_got = reloaded.compute_mask(inputs)
    query_keep = inputs[0].any(-1)
    np.testing.assert_array_equal(masks_got[0], query_keep)
    # the scores carry the combined mask their masked softmax got, as in Keras
    combined = query_keep[:, :, None] & np.tril(np.ones((5, 6), bool)) & (inputs[2] != 0)
    np.testing.assert_array_equal(masks_got[1], combined[:, None])
    np.testing.assert_array_equal(masks_got[2], query_keep)
