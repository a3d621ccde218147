"""One table: every layer with every argument combination that changes the graph.
onnxruntime must equal the NumPy reference (atol 1e-5, rtol 1e-5), masks exactly, at
batch sizes 0, 1, 7 and 64 and at the lowest and highest supported opsets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve import backend as K
from layerserve.export import to_onnx
from layerserve.layers import (
    Activation,
    ActivityRegularization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    Masking,
    Permute,
    RepeatVector,
    Reshape,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics

ACTIVATIONS = [
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "exponential",
    "softplus",
    "softsign",
    "elu",
    "selu",
    "hard_sigmoid",
    "softmax",
    "gelu",
    "silu",
    "swish",
    "relu6",
    "leaky_relu",
    "mish",
    "log_softmax",
    "hard_silu",
]


def seq(*layers, name=None):
    return Sequential(list(layers), name=name)


def two_inputs_two_outputs():
    a, b = Input((6,), name="a"), Input((4,), name="b")
    shared = Dense(5, activation="tanh", name="shared")
    left, right = shared(Dense(5, name="proj")(a)), Dense(5, name="proj_b")(b)
    return Model([a, b], [Dense(3, name="left_head")(left), shared(right)], name="two_by_two")


def nested():
    inner = Sequential([Dense(4, activation="relu", input_shape=(5,)), Dropout(0.5)], name="inner")
    x = Input((5,), name="features")
    return Model(x, Dense(2, name="head")(inner(x)), name="outer")


def masking_through_passthrough(version):
    with keras_semantics(version):
        return seq(
            Masking(mask_value=0.0, input_shape=(6, 3)),
            Dense(4),
            Activation("relu"),
            Dropout(0.2),
            ActivityRegularization(l1=0.1),
            name=f"mask_{version}",
        )


MODELS = {
    **{
        f"dense-{a}": (lambda a=a: seq(Dense(7, activation=a, input_shape=(5,))))
        for a in ACTIVATIONS
    },
    "dense-no-bias": lambda: seq(Dense(3, use_bias=False, input_shape=(4,))),
    "dense-rank3": lambda: seq(Dense(3, activation="relu", input_shape=(4, 5))),
    "dense-rank4-no-bias": lambda: seq(Dense(2, use_bias=False, input_shape=(2, 3, 4))),
    "dense-rank3-large-kernel": lambda: seq(Dense(90, activation="relu", input_shape=(3, 100))),
    "dense-rank3-variable-length": lambda: seq(Dense(3, input_shape=(None, 5))),
    "dense-int-input": lambda: Model(i := Input((3,), dtype="int32"), Dense(2)(i)),
    "dense-float64": lambda: seq(Dense(3, input_shape=(4,), dtype="float64")),
    "hard-sigmoid-keras3": lambda: _with_keras3(
        lambda: seq(Dense(4, activation="hard_sigmoid", input_shape=(3,)))
    ),
    **{
        f"activation-{a}": (lambda a=a: seq(Activation(a, input_shape=(3, 4))))
        for a in ("relu", "softmax", "hard_sigmoid", "gelu")
    },
    "dropout-spatial-activityreg": lambda: seq(
        Dense(4, input_shape=(3, 6)),
        Dropout(0.5, noise_shape=(None, 1, 4), seed=1),
        SpatialDropout1D(0.3),
        ActivityRegularization(l1=0.01, l2=0.02),
    ),
    "spatial-dropout-2d-3d": lambda: seq(
        SpatialDropout2D(0.4, input_shape=(2, 3, 4)),
        Reshape((2, 3, 4, 1)),
        SpatialDropout3D(0.4, data_format="channels_first"),
    ),
    "flatten-channels-last": lambda: seq(Flatten(input_shape=(2, 3, 4))),
    "flatten-channels-first": lambda: seq(
        Flatten(data_format="channels_first", input_shape=(2, 3, 4))
    ),
    "flatten-channels-first-rank5": lambda: seq(
        Flatten(data_format="channels_first", input_shape=(2, 3, 2, 2))
    ),
    "reshape-minus-one": lambda: seq(Reshape((-1, 2), input_shape=(12,))),
    "reshape-static": lambda: seq(Reshape((3, 2, 2), input_shape=(4, 3))),
    "permute": lambda: seq(Permute((3, 1, 2), input_shape=(2, 3, 4))),
    "repeat-vector": lambda: seq(Dense(3, input_shape=(2,)), RepeatVector(4)),
    "masking-keras2": lambda: masking_through_passthrough("2.2.4"),
    "masking-keras3": lambda: masking_through_passthrough("3.15.1"),
    "masking-nonzero-value": lambda: seq(Masking(mask_value=0.5, input_shape=(4, 2)), Dense(3)),
    "two-inputs-two-outputs": two_inputs_two_outputs,
    "nested-model": nested,
    "conv2d-valid-cl": lambda: seq(Conv2D(4, (3, 2), input_shape=(7, 6, 3))),
    "conv2d-same-strides-cl": lambda: seq(
        Conv2D(3, 3, strides=2, padding="same", activation="relu", input_shape=(7, 8, 2))
    ),
    "conv2d-same-dilation-cf": lambda: seq(
        Conv2D(
            2,
            3,
            padding="same",
            dilation_rate=2,
            data_format="channels_first",
            input_shape=(3, 9, 7),
        )
    ),
    "conv2d-valid-strides-cf-no-bias": lambda: seq(
        Conv2D(
            5,
            (2, 3),
            strides=(2, 1),
            use_bias=False,
            data_format="channels_first",
            input_shape=(2, 8, 8),
        )
    ),
    "conv2d-then-flatten-dense": lambda: seq(
        Conv2D(4, 3, padding="same", activation="selu", input_shape=(6, 6, 1)),
        Flatten(),
        Dense(3, activation="softmax"),
    ),
}


def _with_keras3(build):
    with keras_semantics("3.15.1"):
        return build()


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    shapes = inferred_output_shapes(onnx_model)
    outputs = model.outputs
    for output, (name, inferred) in zip(outputs, list(shapes.items()), strict=False):
        expected = ["batch", *output.shape[1:]]
        # an unknown size is a named symbolic dimension in the graph
        known = [inferred[0], *(d if isinstance(d, int) else None for d in inferred[1:])]
        assert known == expected, name
    assert_matches_reference(model, onnx_model)


@settings(max_examples=20, deadline=None)
@given(
    rank=st.integers(2, 4),
    features=st.integers(1, 6),
    units=st.integers(1, 5),
    extra=st.lists(st.integers(1, 4), min_size=2, max_size=2),
)
def test_dense_any_rank_property(rank, features, units, extra):
    shape = (*extra[: rank - 2], features)
    model = seq(Dense(units, activation="tanh", input_shape=shape))
    assert_matches_reference(model, to_onnx(model), batch_sizes=(1, 3))


@settings(max_examples=20, deadline=None)
@given(
    height=st.integers(3, 9),
    width=st.integers(3, 9),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
    channels_first=st.booleans(),
)
def test_conv2d_shapes_property(height, width, kernel, stride, padding, channels_first):
    data_format = "channels_first" if channels_first else "channels_last"
    shape = (2, height, width) if channels_first else (height, width, 2)
    model = seq(
        Conv2D(
            3, kernel, strides=stride, padding=padding, data_format=data_format, input_shape=shape
        )
    )
    onnx_model = to_onnx(model)
    assert inferred_output_shapes(onnx_model)[model.output_names[0]] == [
        "batch",
        *model.output_shape[1:],
    ]
    assert_matches_reference(model, onnx_model, batch_sizes=(1, 2))


@settings(max_examples=20, deadline=None)
@given(dims=st.permutations([1, 2, 3]), sizes=st.lists(st.integers(1, 4), min_size=3, max_size=3))
def test_permute_then_reshape_property(dims, sizes):
    model = seq(Permute(tuple(dims), input_shape=tuple(sizes)), Reshape((-1,)))
    assert_matches_reference(model, to_onnx(model), batch_sizes=(0, 2))


def test_masked_values_and_mask_with_nan_and_all_masked_rows():
    model = seq(Masking(mask_value=0.0, input_shape=(3, 2)), Dense(2))
    onnx_model = to_onnx(model)
    x = np.array([[[0, 0], [np.nan, 1], [0, 0]], [[0, 0], [0, 0], [0, 0]]], dtype="float32")
    from layerserve.export.parity import session

    got, mask = session(onnx_model).run(None, {model.input_names[0]: x})
    np.testing.assert_array_equal(mask, [[False, True, False], [False, False, False]])
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-6, atol=1e-6)


def test_image_data_format_global_is_honoured_in_export():
    K.set_image_data_format("channels_first")
    model = seq(Conv2D(2, 3, padding="same", input_shape=(3, 5, 5)), Flatten())
    K.set_image_data_format("channels_last")
    assert model.output_shape == (None, 50)
    assert_matches_reference(model, to_onnx(model), batch_sizes=(2,))


@pytest.mark.parametrize(
    ("shape", "units", "expected"),
    [
        ((4,), 3, ["Gemm"]),
        ((6, 4), 3, ["Reshape", "Gemm", "Reshape"]),  # small kernel: one fused 2-D Gemm
        ((2, 3, 4), 3, ["Reshape", "Gemm", "Reshape"]),
        ((3, 100), 90, ["MatMul", "Add"]),  # 9,000 weights: MatMul + Add is faster
        ((None, 5), 3, ["MatMul", "Add"]),  # a variable length cannot be reshaped back
    ],
)
def test_dense_layout_follows_the_measured_rule(shape, units, expected):
    """benchmarks/dense_layout.py: Reshape -> Gemm -> Reshape up to 8,192 weights."""
    model = seq(Dense(units, input_shape=shape))
    assert [n.op_type for n in to_onnx(model).graph.node] == expected


def test_a_graph_onnxruntime_cannot_load_is_an_export_error():
    """A valid graph without an onnxruntime kernel (a float64 Conv): ExportError naming
    onnxruntime and its own words, not onnxruntime's exception type."""
    from onnx import TensorProto, helper

    from layerserve.errors import ExportError
    from layerserve.export.parity import session

    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)
    w = helper.make_tensor("w", TensorProto.DOUBLE, [1, 1, 2, 2], [1.0] * 4)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with pytest.raises(ExportError, match="onnxruntime .* cannot load the exported graph") as info:
        session(model)
    assert "Conv" in str(info.value)
