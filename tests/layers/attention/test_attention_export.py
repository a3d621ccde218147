"""The attention layers' ONNX graphs against the NumPy reference: one model per argument
combination that changes the graph, at batch sizes 0, 1, 7 and 64 and opset 13 and the
newest (values within 1e-5, masks exactly), with fully masked samples and sequence
lengths that differ from the ones the model was built with."""

import numpy as np
import pytest
from onnx_checks import OPSETS, assert_graph_quality, assert_matches_reference

from layerserve.export import to_onnx
from layerserve.export.api import exported_mask, output_names
from layerserve.export.parity import session
from layerserve.layers import (
    AdditiveAttention,
    Attention,
    Input,
    Masking,
    MultiHeadAttention,
)
from layerserve.models import Model
from layerserve.serialization import keras_semantics

K3, K39, TFK = "3.15.1", "3.9.0", "2.21.0"


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.weights])
    return model


def build(version, shapes, call, masked=()):
    """``Input`` per shape (``Masking`` on those in ``masked``), outputs of ``call``."""
    with keras_semantics(version):
        inputs = [Input(s) for s in shapes]
        tensors = [Masking()(x) if i in masked else x for i, x in enumerate(inputs)]
        outputs = call(tensors)
        return randomize(Model(inputs, outputs))


def dense(cls, **kwargs):
    options = {
        k: kwargs.pop(k) for k in ("use_causal_mask", "return_attention_scores") if k in kwargs
    }

    def call(t):
        result = cls(**kwargs)(t[:3], **options)
        return list(result) if isinstance(result, list) else result

    return call


def mha(key=False, mask=False, **kwargs):
    options = {
        k: kwargs.pop(k) for k in ("use_causal_mask", "return_attention_scores") if k in kwargs
    }

    def call(t):
        result = MultiHeadAttention(**kwargs)(
            t[0], t[1], key=t[2] if key else None, attention_mask=t[-1] if mask else None, **options
        )
        return list(result) if isinstance(result, list) else result

    return call


SEQ = [(5, 4), (6, 4)]
MODELS = {
    "attention-dot-scale-key": lambda v: build(v, [*SEQ, (6, 4)], dense(Attention, use_scale=True)),
    "attention-masked-causal-scores": lambda v: build(
        v, SEQ, dense(Attention, use_causal_mask=True, return_attention_scores=True), masked=(0, 1)
    ),
    "attention-concat-masked": lambda v: build(
        v, SEQ, dense(Attention, score_mode="concat", use_scale=True), masked=(1,)
    ),
    "additive-masked-causal": lambda v: build(
        v, SEQ, dense(AdditiveAttention, use_causal_mask=True), masked=(0, 1)
    ),
    "mha-plain": lambda v: build(v, SEQ, mha(num_heads=2, key_dim=3)),
    "mha-key-value-dim-output-shape": lambda v: build(
        v,
        [(5, 4), (6, 3), (6, 2)],
        mha(key=True, num_heads=3, key_dim=2, value_dim=4, output_shape=(2, 3)),
    ),
    "mha-no-bias-causal-scores": lambda v: build(
        v,
        SEQ,
        mha(
            num_heads=2,
            key_dim=3,
            use_bias=False,
            use_causal_mask=True,
            return_attention_scores=True,
        ),
    ),
    "mha-masked-fused": lambda v: build(v, SEQ, mha(num_heads=2, key_dim=3), masked=(0, 1)),
    "mha-masked-dropout": lambda v: build(
        v, SEQ, mha(num_heads=2, key_dim=3, dropout=0.1, use_causal_mask=True), masked=(0, 1)
    ),
    "mha-attention-mask-scores": lambda v: build(
        v,
        [*SEQ, (5, 6)],
        mha(mask=True, num_heads=2, key_dim=3, return_attention_scores=True),
        masked=(0,),
    ),
    "mha-two-axes-scores": lambda v: build(
        v,
        [(3, 4, 5), (2, 3, 5)],
        mha(num_heads=2, key_dim=3, attention_axes=(1, 2), return_attention_scores=True),
    ),
    "mha-one-inner-axis": lambda v: build(
        v, [(3, 4, 5), (3, 2, 5)], mha(num_heads=2, key_dim=3, attention_axes=2, output_shape=6)
    ),
}
K3_ONLY = {
    "mha-gate-window": lambda v: build(
        v,
        SEQ,
        mha(num_heads=2, key_dim=3, use_gate=True, sliding_window=2, use_causal_mask=True),
        masked=(0,),
    ),
}


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("version", [K3, K39, TFK])
@pytest.mark.parametrize("key", sorted(MODELS) + sorted(K3_ONLY))
def test_export_matches_reference(key, version, opset):
    if key in K3_ONLY and version != K3:
        return  # use_gate and sliding_window exist in Keras 3 only
    model = (MODELS.get(key) or K3_ONLY[key])(version)
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    assert_matches_reference(model, onnx_model)


def fully_masked_inputs(batch, seed, steps=(5, 6)):
    rng = np.random.default_rng(seed)
    query, value = rng.normal(size=(batch, steps[0], 4)), rng.normal(size=(batch, steps[1], 4))
    query[rng.random((batch, steps[0])) < 0.3] = 0  # masked steps anywhere
    value[rng.random((batch, steps[1])) < 0.3] = 0
    query[1::3] = 0  # fully masked samples: every query row and every value column
    value[2::3] = 0
    return [query.astype("float32"), value.astype("float32")]


@pytest.mark.parametrize("version", [K3, K39, TFK])
@pytest.mark.parametrize(
    "key",
    [
        "attention-masked-causal-scores",
        "mha-masked-fused",
        "mha-masked-dropout",
        "additive-masked-causal",
    ],
)
def test_fully_masked_rows_and_other_lengths(key, version):
    """Fully masked samples; sequences of 5/6 and of 2/9 steps in one exported graph
    (Input shapes with None lengths)."""
    with keras_semantics(version):
        model = MODELS[key](version)
        config = model.get_config()
        for layer in config["layers"]:
            if layer["class_name"] == "InputLayer":
                layer["config"]["batch_input_shape"] = [None, None, 4]
        dynamic = randomize(Model.from_config(config))
    dynamic.set_weights(model.get_weights())
    runner = session(to_onnx(dynamic))
    names = output_names(dynamic)
    for batch in (0, 1, 7, 64):
        for steps in ((5, 6), (2, 9)):
            arrays = fully_masked_inputs(batch, batch, steps)
            feeds = {i.name: a for i, a in zip(runner.get_inputs(), arrays, strict=True)}
            got = dict(
                zip([o.name for o in runner.get_outputs()], runner.run(None, feeds), strict=True)
            )
            outputs, masks = dynamic.run(arrays)
            outputs = outputs if isinstance(outputs, list) else [outputs]
            masks = masks if isinstance(masks, list) else [masks]
            for name, want, mask in zip(names, outputs, masks, strict=True):
                np.testing.assert_allclose(
                    got[name], want, atol=1e-5, err_msg=f"{name} {batch} {steps}"
                )
                if mask is not None:
                    np.testing.assert_array_equal(got[f"{name}_mask"], exported_mask(mask, batch))
