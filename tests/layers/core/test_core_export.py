"""The parity table of Embedding and Identity: one row per argument combination that
changes the graph, at opset 13 and the newest, batch sizes 0, 1, 7 and 64; then the
out-of-range indices onnxruntime must refuse (or, for Keras 3, wrap)."""

import numpy as np
import pytest
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve.export import to_onnx
from layerserve.export.parity import session
from layerserve.layers import Dense, Embedding, Identity, Input, Masking
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics

KERAS2, KERAS3 = "2.2.4", "3.15.1"


def tokens(dtype, version=KERAS2, shape=(5,), **options):
    with keras_semantics(version):
        x = Input(shape, dtype=dtype)
        return Model(x, Embedding(9, 3, **options)(x))


def identity_after_mask(version):
    with keras_semantics(version):
        x = Input((4, 2))
        return Model(x, Dense(3)(Identity()(Masking()(x))))


MODELS = {
    # Gather straight on int32/int64 indices; a Cast for the other dtypes.
    "int32": lambda: tokens("int32"),
    "int64-keras3": lambda: tokens("int64", KERAS3),
    "uint8": lambda: tokens("uint8", KERAS3),
    "uint64-keras3": lambda: tokens("uint64", KERAS3),
    "float32-sequential-keras2": lambda: Sequential([Embedding(9, 3, input_length=5)]),
    "float64-keras3": lambda: tokens("float64", KERAS3),
    "rank3-indices": lambda: tokens("int32", shape=(2, 3)),
    # Mask: Not(Equal(x, 0)) on floats, on the cast indices for integer inputs.
    "mask-zero-float32": lambda: tokens("float32", mask_zero=True),
    "mask-zero-int64-keras3": lambda: tokens("int64", KERAS3, mask_zero=True),
    "mask-zero-uint8": lambda: tokens("uint8", mask_zero=True),
    "mask-zero-bool": lambda: tokens("bool", KERAS3, mask_zero=True),
    # Identity: no node; the mask passes (Keras 3) or is dropped (tf.keras).
    "identity-keras3": lambda: identity_after_mask(KERAS3),
    "identity-tf-keras": lambda: identity_after_mask("2.21.0"),
}


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    shapes = inferred_output_shapes(onnx_model)
    assert shapes[model.output_names[0]] == ["batch", *model.output_shape[1:]]
    assert_matches_reference(model, onnx_model)


def test_identity_and_a_keras3_embedding_add_no_guard_nodes():
    model = Sequential([Identity(input_shape=(3,)), Dense(2)])
    assert [n.op_type for n in to_onnx(model).graph.node] == ["Gemm"]
    assert [n.op_type for n in to_onnx(tokens("int64", KERAS3)).graph.node] == ["Gather"]
    # Keras 2 replaces negative indices so that onnxruntime refuses them.
    assert [n.op_type for n in to_onnx(tokens("int64")).graph.node] == ["Less", "Where", "Gather"]


def run(model, x):
    runner = session(to_onnx(model))
    return runner.run(None, {runner.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_keras3_negative_indices_wrap_in_onnxruntime(dtype):
    model = tokens(dtype, KERAS3)
    x = np.array([[-1, -9, 0, 8, -4]], dtype=dtype)
    table = model.layers[-1].get_weights()[0]
    np.testing.assert_array_equal(run(model, x), table[[8, 0, 0, 8, 5]][None])
    np.testing.assert_array_equal(model.predict(x), table[[8, 0, 0, 8, 5]][None])


@pytest.mark.parametrize(
    ("version", "dtype", "row"),
    [
        (KERAS2, "int32", [0, -1, 2, 3, 4]),
        (KERAS2, "float32", [0, -1.5, 2, 3, 4]),
        (KERAS2, "int64", [9, 1, 2, 3, 4]),
        (KERAS3, "int64", [0, -10, 2, 3, 4]),
        (KERAS3, "float32", [9.5, 1, 2, 3, 4]),
        (KERAS3, "uint64", [2**64 - 1, 1, 2, 3, 4]),  # -1 after a plain cast to int64
    ],
)
def test_out_of_range_indices_are_refused_by_onnxruntime(version, dtype, row):
    with pytest.raises(Exception, match="out of data bounds"):
        run(tokens(dtype, version), np.array([row], dtype=dtype))
