"""The parity table: one row per argument combination that changes the ONNX graph of a
convolution layer. onnxruntime must equal the NumPy reference at opsets 13 and newest
and at batch sizes 0, 1, 7 and 64; plus the graph shapes the converter promises."""

import numpy as np
import pytest
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve.errors import NotSupportedError
from layerserve.export import to_onnx
from layerserve.export.parity import session
from layerserve.layers import (
    Conv1D,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Conv3DTranspose,
    Dense,
    DepthwiseConv1D,
    DepthwiseConv2D,
    Flatten,
    Input,
    SeparableConv1D,
    SeparableConv2D,
)
from layerserve.models import Sequential
from layerserve.serialization import keras_semantics

CF = "channels_first"


def seq(shape, layers, version="3.15.1"):
    """A model whose first layer reads ``shape``; built with ``version``'s semantics."""
    with keras_semantics(version):
        return Sequential([Input(shape), *layers()])


MODELS = {
    # Conv1D / 2D / 3D
    "conv1d-causal-dilated-relu": lambda: seq(
        (9, 3), lambda: [Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")]
    ),
    "conv1d-same-strides-groups-cf": lambda: seq(
        (4, 9), lambda: [Conv1D(6, 2, strides=2, padding="same", groups=2, data_format=CF)]
    ),
    "conv1d-variable-length-same-strides": lambda: seq(
        (None, 3), lambda: [Conv1D(4, 3, strides=2, padding="same", activation="tanh")]
    ),
    "conv1d-variable-length-same-dilated": lambda: seq(
        (None, 3), lambda: [Conv1D(4, 4, dilation_rate=2, padding="same")]
    ),
    "conv1d-variable-length-causal-cf": lambda: seq(
        (3, None), lambda: [Conv1D(2, 3, padding="causal", data_format=CF, use_bias=False)]
    ),
    "conv2d-valid-groups-no-bias": lambda: seq(
        (6, 7, 4), lambda: [Conv2D(6, (2, 3), strides=(2, 1), groups=2, use_bias=False)]
    ),
    "conv2d-same-dilation-cf-softmax": lambda: seq(
        (3, 7, 6),
        lambda: [
            Conv2D(2, 3, padding="same", dilation_rate=2, data_format=CF, activation="softmax")
        ],
    ),
    "conv2d-softmax-after-transpose": lambda: seq(
        (5, 6, 2), lambda: [Conv2D(3, 2, activation="softmax")]
    ),
    "conv3d-same-strides-groups": lambda: seq(
        (4, 5, 3, 2), lambda: [Conv3D(4, (2, 3, 2), strides=(2, 1, 2), padding="same", groups=2)]
    ),
    "conv3d-valid-dilation-cf-gelu": lambda: seq(
        (2, 5, 4, 5),
        lambda: [Conv3D(3, 2, dilation_rate=(2, 1, 2), data_format=CF, activation="gelu")],
    ),
    # SeparableConv1D / 2D
    "separable1d-same-strides": lambda: seq(
        (9, 3), lambda: [SeparableConv1D(4, 3, strides=2, padding="same", depth_multiplier=2)]
    ),
    "separable1d-causal-tf-keras": lambda: seq(
        (None, 2),
        lambda: [SeparableConv1D(3, 3, padding="causal", dilation_rate=2, activation="elu")],
        version="2.21.0",
    ),
    "separable2d-cf-no-bias": lambda: seq(
        (3, 6, 7),
        lambda: [SeparableConv2D(4, (3, 2), data_format=CF, use_bias=False, depth_multiplier=3)],
    ),
    "separable2d-strides-and-dilation": lambda: seq(
        (9, 8, 2), lambda: [SeparableConv2D(3, 3, strides=2, dilation_rate=2, padding="same")]
    ),
    # DepthwiseConv1D / 2D
    "depthwise1d-multiplier": lambda: seq(
        (8, 3), lambda: [DepthwiseConv1D(3, depth_multiplier=2, padding="same", activation="relu6")]
    ),
    "depthwise2d-cf-dilated-no-bias": lambda: seq(
        (2, 7, 6),
        lambda: [DepthwiseConv2D(2, dilation_rate=(2, 3), data_format=CF, use_bias=False)],
    ),
    "depthwise2d-same-strides": lambda: seq(
        (7, 6, 3), lambda: [DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)]
    ),
    # Conv1DTranspose / 2D / 3D
    "conv1d-transpose-same-strides": lambda: seq(
        (5, 3), lambda: [Conv1DTranspose(2, 3, strides=2, padding="same", activation="sigmoid")]
    ),
    "conv1d-transpose-valid-bias-tail": lambda: seq(
        (None, 2), lambda: [Conv1DTranspose(3, 1, strides=3)]
    ),
    "conv1d-transpose-valid-output-padding-cf": lambda: seq(
        (2, 4), lambda: [Conv1DTranspose(2, 2, strides=3, output_padding=2, data_format=CF)]
    ),
    "conv2d-transpose-same-even-kernel-output-padding": lambda: seq(
        (3, 4, 2), lambda: [Conv2DTranspose(2, 4, strides=3, padding="same", output_padding=(2, 0))]
    ),
    "conv2d-transpose-dilated-cf": lambda: seq(
        (2, 3, 4),
        lambda: [Conv2DTranspose(3, (3, 2), dilation_rate=(1, 2), padding="same", data_format=CF)],
    ),
    "conv2d-transpose-valid-no-bias": lambda: seq(
        (3, 3, 2), lambda: [Conv2DTranspose(2, (3, 2), strides=(2, 3), use_bias=False)]
    ),
    "conv3d-transpose-same-output-padding": lambda: seq(
        (2, 3, 2, 2),
        lambda: [
            Conv3DTranspose(
                2, (2, 3, 2), strides=(2, 1, 2), padding="same", output_padding=(1, 0, 1)
            )
        ],
    ),
    "conv3d-transpose-cf": lambda: seq(
        (2, 2, 3, 2), lambda: [Conv3DTranspose(2, 3, strides=2, data_format=CF, activation="relu")]
    ),
    # Chains: one Transpose in, one out; Flatten reads channels_last order.
    "channels-last-chain-flatten-dense": lambda: seq(
        (8, 8, 2),
        lambda: [
            Conv2D(4, 3, padding="same", activation="relu"),
            DepthwiseConv2D(3, strides=2, depth_multiplier=2),
            SeparableConv2D(4, 2, activation="swish"),
            Conv2DTranspose(2, 2, strides=2),
            Flatten(),
            Dense(3),
        ],
    ),
    "channels-first-into-channels-last": lambda: seq(
        (3, 6, 5), lambda: [Conv2D(4, 2, data_format=CF), Conv2D(2, 2, activation="tanh")]
    ),
}


def _shapes_agree(inferred, expected):
    assert len(inferred) == len(expected), (inferred, expected)
    for got, want in zip(inferred, expected, strict=True):
        if want is not None:
            assert got == want, (inferred, expected)


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    inferred = inferred_output_shapes(onnx_model)[model.output_names[0]]
    _shapes_agree(inferred, ["batch", *model.output_shape[1:]])
    assert_matches_reference(model, onnx_model)


@pytest.mark.parametrize(
    "name",
    [
        "conv1d-variable-length-same-strides",
        "conv1d-variable-length-same-dilated",
        "conv1d-variable-length-causal-cf",
        "separable1d-causal-tf-keras",
        "conv1d-transpose-valid-bias-tail",
    ],
)
def test_variable_length_graphs_hold_for_every_length(rng, name):
    """The SAME pads of a strided conv depend on the length (auto_pad SAME_UPPER); the
    others are static. Lengths 1..9 cover odd and even totals."""
    model = MODELS[name]()
    runner = session(to_onnx(model))
    input_name = runner.get_inputs()[0].name
    for length in range(1, 10):
        shape = [2, *(length if d is None else d for d in model.input_shape[1:])]
        x = rng.normal(size=shape).astype("float32")
        np.testing.assert_allclose(
            runner.run(None, {input_name: x})[0], model.predict(x), rtol=1e-5, atol=1e-5
        )


def _ops(onnx_model):
    return [node.op_type for node in onnx_model.graph.node]


def test_elementwise_activation_precedes_the_transpose_back():
    onnx_model = to_onnx(MODELS["conv1d-causal-dilated-relu"]())
    assert _ops(onnx_model) == ["Transpose", "Conv", "Relu", "Transpose"]
    conv = onnx_model.graph.node[1]
    attributes = {a.name: list(a.ints) for a in conv.attribute if a.ints}
    assert attributes["pads"] == [4, 0]  # causal: d*(k-1) zeros on the left only


def test_axis_activation_follows_the_transpose_back():
    assert _ops(to_onnx(MODELS["conv2d-softmax-after-transpose"]())) == [
        "Transpose",
        "Conv",
        "Transpose",
        "Softmax",
    ]


def test_consecutive_channels_last_convolutions_share_one_layout_change():
    ops = _ops(to_onnx(MODELS["channels-last-chain-flatten-dense"]()))
    assert ops.count("Transpose") == 2, ops
    assert ops.index("Flatten") > ops.index("ConvTranspose")


def test_padding_attributes():
    same_strided = to_onnx(MODELS["conv1d-variable-length-same-strides"]())
    (conv,) = [n for n in same_strided.graph.node if n.op_type == "Conv"]
    assert {a.name: a.s for a in conv.attribute if a.name == "auto_pad"} == {
        "auto_pad": b"SAME_UPPER"
    }
    known = to_onnx(MODELS["conv2d-same-dilation-cf-softmax"]())
    (conv,) = [n for n in known.graph.node if n.op_type == "Conv"]
    assert "auto_pad" not in {a.name for a in conv.attribute}
    for name in (
        "conv2d-transpose-same-even-kernel-output-padding",
        "conv1d-transpose-valid-bias-tail",
    ):
        model = to_onnx(MODELS[name]())
        (node,) = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
        attributes = {a.name: list(a.ints) for a in node.attribute}
        assert "auto_pad" not in attributes and "output_shape" not in attributes
        if name.startswith("conv2d"):  # T = 4 - 0 - 2 = 2 on rows, 4 - 0 - 0 on columns
            assert attributes["pads"] == [1, 2, 1, 2] and attributes["output_padding"] == [0, 0]
        else:  # keff 1 < stride 3: two bias-only positions at the end
            assert attributes["pads"] == [0, 0] and attributes["output_padding"] == [2]


def test_unknown_length_with_strides_and_dilation_is_refused():
    model = seq((None, 3), lambda: [DepthwiseConv1D(3, strides=2, dilation_rate=2, padding="same")])
    with pytest.raises(NotSupportedError, match="needs known spatial sizes") as info:
        to_onnx(model)
    assert "Received" in str(info.value)


@pytest.mark.parametrize(
    ("make", "op"),
    [
        (lambda: Conv2D(4, 3, dtype="float64"), "Conv"),
        (lambda: DepthwiseConv2D(3, dtype="float64"), "Conv"),
        (lambda: SeparableConv2D(4, 3, dtype="float64"), "Conv"),
        (lambda: Conv2DTranspose(4, 3, dtype="float64"), "ConvTranspose"),
    ],
)
def test_float64_convolutions_are_refused_naming_the_layer(make, op):
    """onnxruntime has no float64 Conv or ConvTranspose kernel: such a graph would be
    valid ONNX that no session loads. The reference computes them in float64."""
    model = seq((6, 6, 3), lambda: [make()])
    model = Sequential([Input((6, 6, 3), dtype="float64"), model.layers[-1]])
    assert model.predict(np.ones((1, 6, 6, 3))).dtype == np.float64
    with pytest.raises(NotSupportedError) as info:
        to_onnx(model)
    message = str(info.value)
    assert model.layers[-1].name in message and f"ONNX {op} on float32 only" in message
    assert "Received: dtype=float64" in message
