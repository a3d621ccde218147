"""EinsumDense (a core layer, as in Keras): against matmuls written here with the kernel
reshaped by hand, at batch sizes 0, 1, 7 and 64 under Keras 3 and tf.keras semantics;
its typed errors; its ONNX graph against the NumPy reference."""

import numpy as np
import pytest
from onnx_checks import OPSETS, assert_graph_quality, assert_matches_reference

from layerserve.errors import ConfigError, NotSupportedError, ShapeError
from layerserve.export import to_onnx
from layerserve.layers import EinsumDense, Input
from layerserve.models import Model
from layerserve.serialization import keras_semantics

K3, K39, TFK = "3.15.1", "3.9.0", "2.21.0"
BATCHES = (0, 1, 7, 64)


def randomized(layer, seed):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.weights])
    return layer


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("version", [K3, TFK])
def test_einsum_dense_as_matmuls(batch, version):
    """EinsumDense against matmuls with the kernel reshaped, bias broadcast by hand."""
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, 5, 2, 3)).astype("float32")
    with keras_semantics(version):
        heads = EinsumDense("abc,cde->abde", (5, 2, 4), bias_axes="de")
        left = EinsumDense("...b,bc->...c", 4, bias_axes="c", activation="relu")
        right = EinsumDense("abc...,cd->abd...", (5, 4), bias_axes="d")
    flat = x.reshape(batch, 5, 6)
    for layer in (heads, left, right):
        layer.build(flat.shape if layer is heads else x.shape)
        randomized(layer, 3)
    k, b = heads.kernel.value, heads.bias.value
    want = (flat @ k.reshape(6, 8)).reshape(batch, 5, 2, 4) + b
    np.testing.assert_allclose(heads(flat), want, atol=1e-5)
    k, b = left.kernel.value, left.bias.value
    np.testing.assert_allclose(left(x), np.maximum(x @ k + b, 0), atol=1e-5)
    k, b = right.kernel.value, right.bias.value  # (2, 4) over axis 2; bias (4, 1)
    want = np.swapaxes(np.swapaxes(x, 2, 3) @ k, 2, 3) + b
    np.testing.assert_allclose(right(x), want, atol=1e-5)
    assert right.compute_output_shape((None, 5, 2, 3)) == (None, 5, 4, 3)


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda: EinsumDense("ab->b", 3), "equation='ab->b'"),
        (lambda: EinsumDense("ab,bc->ac", "x"), "output_shape='x'"),
        (lambda: EinsumDense("ab,bc->ac", 3, bias_axes=1), "bias_axes=1"),
    ],
)
def test_bad_arguments_are_refused(make, text):
    with pytest.raises(ConfigError) as raised:
        make()
    assert text in str(raised.value) and "Received" in str(raised.value)


def test_einsum_dense_lora_and_shape_errors():
    with pytest.raises(NotSupportedError, match="lora_rank=4"):
        EinsumDense("ab,bc->ac", 3, lora_rank=4)
    with pytest.raises(ConfigError, match="bias_axes='z'"):
        EinsumDense("ab,bc->ac", 3, bias_axes="z").build((None, 2))
    with pytest.raises(ShapeError, match="does not have the rank"):
        EinsumDense("abc...,cd->abd...", (5, 4, 6)).build((None, 5, 2, 3))
    with pytest.raises(ShapeError, match="do not match at shared dimension"):
        EinsumDense("abc,cd->abd", (6, 4)).build((None, 5, 3))


def build(version, shape, call):
    with keras_semantics(version):
        x = Input(shape)
        model = Model(x, call(x))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.weights])
    return model


MODELS = {
    "einsum-dense-heads": lambda v: build(
        v, (5, 3), lambda x: EinsumDense("abc,cde->abde", (5, 2, 3), bias_axes="de")(x)
    ),
    "einsum-dense-ellipsis": lambda v: build(
        v,
        (5, 2, 3),
        lambda x: [
            EinsumDense("...b,bc->...c", 4, bias_axes="c", activation="relu")(x),
            EinsumDense("abc...,cd->abd...", (5, 4), bias_axes="d")(x),
        ],
    ),
}


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("version", [K3, K39, TFK])
@pytest.mark.parametrize("key", sorted(MODELS))
def test_export_matches_reference(key, version, opset):
    model = MODELS[key](version)
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    assert_matches_reference(model, onnx_model)


def test_export_refuses_other_dtypes():
    """A float64 layer (its inputs are cast to its dtype) is not exported."""
    with keras_semantics(K3):
        x = Input((3,), dtype="float64")
        model = Model(x, EinsumDense("ab,bc->ac", 2, dtype="float64")(x))
    with pytest.raises(NotSupportedError, match=r"EinsumDense.*Received: dtype=float64"):
        to_onnx(model)
