"""LSTM to ONNX against the NumPy reference (spec sections 10 and 13).

Graphs are built directly with GraphBuilder around ``convert_lstm``; each one must pass
the full ONNX checker, infer every output's full shape with a symbolic batch, and match
``layer(x, mask=mask)`` in onnxruntime for batch sizes 0, 1, 7 and 64, masks included
wherever they fall in the sequence.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from layerserve import activations
from layerserve.export.builder import GraphBuilder, Value
from layerserve.export.converters.rnn import convert_lstm, onnx_lstm_weights
from layerserve.export.opsets import max_runtime_opset
from layerserve.export.registry import Conversion, Converted
from layerserve.layers import LSTM
from layerserve.serialization import keras_semantics

STEPS, FEATURES, UNITS = 5, 3, 4
BATCH_SIZES = (0, 1, 7, 64)
MAX_OPSET = max_runtime_opset()
RTOL = ATOL = 1e-5

T, F = True, False
MASKS = ("none", "trailing", "interior", "whole_sample", "first_step")
RECURRENT_ACTIVATIONS = ("hard_sigmoid", "sigmoid", "hard_sigmoid_k3")
ACTIVATIONS = ("tanh", "relu", "gelu", "swish")  # gelu and swish: no ONNX LSTM function
FACTORS = {
    "return_sequences": (F, T),
    "return_state": (F, T),
    "go_backwards": (F, T),
    "mask": MASKS,
    "recurrent_activation": RECURRENT_ACTIVATIONS,
    "activation": ACTIVATIONS,
    "use_bias": (F, T),
    "opset": (13, "max"),
}

# Covers every pair of factor values, every (mask, go_backwards, return_sequences) and
# every (strategy, return_sequences, return_state, go_backwards); see test_table_covers.
CASES = [
    (F, F, F, "none", "hard_sigmoid", "tanh", T, 13),
    (F, T, T, "trailing", "sigmoid", "relu", F, "max"),
    (T, F, F, "interior", "hard_sigmoid_k3", "gelu", F, "max"),
    (T, T, T, "whole_sample", "hard_sigmoid_k3", "swish", T, 13),
    (F, F, F, "first_step", "sigmoid", "swish", T, "max"),
    (T, F, T, "first_step", "hard_sigmoid", "relu", F, 13),
    (T, T, T, "none", "sigmoid", "tanh", F, "max"),
    (F, T, F, "trailing", "hard_sigmoid", "gelu", T, 13),
    (F, F, F, "whole_sample", "hard_sigmoid", "relu", T, "max"),
    (F, F, T, "interior", "sigmoid", "gelu", T, 13),
    (F, F, T, "none", "hard_sigmoid_k3", "relu", T, 13),
    (F, T, F, "interior", "hard_sigmoid", "swish", F, 13),
    (T, F, F, "trailing", "hard_sigmoid_k3", "tanh", T, 13),
    (T, T, F, "whole_sample", "sigmoid", "tanh", F, 13),
    (F, T, T, "first_step", "hard_sigmoid_k3", "tanh", T, 13),
    (T, F, F, "none", "hard_sigmoid", "gelu", T, 13),
    (F, F, F, "none", "hard_sigmoid", "swish", T, 13),
    (F, F, T, "whole_sample", "hard_sigmoid", "gelu", T, 13),
    (T, F, F, "first_step", "hard_sigmoid", "gelu", T, "max"),
    (T, F, T, "trailing", "sigmoid", "swish", T, 13),
    (T, F, T, "interior", "hard_sigmoid_k3", "tanh", F, "max"),
    (F, F, F, "interior", "hard_sigmoid", "relu", T, 13),
    (F, F, T, "none", "sigmoid", "gelu", F, "max"),
    (F, T, F, "none", "hard_sigmoid_k3", "tanh", T, "max"),
    (F, T, F, "none", "sigmoid", "swish", F, 13),
    (F, T, T, "none", "hard_sigmoid", "relu", F, "max"),
    (F, T, T, "none", "hard_sigmoid_k3", "gelu", T, 13),
    (T, F, F, "none", "sigmoid", "relu", T, "max"),
    (T, F, T, "none", "hard_sigmoid_k3", "tanh", T, 13),
    (T, F, T, "none", "hard_sigmoid", "swish", F, "max"),
    (T, T, F, "none", "hard_sigmoid", "relu", T, 13),
    (T, T, F, "none", "sigmoid", "gelu", T, "max"),
    (T, T, T, "none", "hard_sigmoid_k3", "gelu", F, 13),
    # The masked fast path (fused op + sequence_lens) under every output/direction combo.
    (F, F, T, "first_step", "sigmoid", "relu", T, "max"),
    (T, F, F, "trailing", "hard_sigmoid", "relu", T, 13),
    (T, T, T, "interior", "sigmoid", "tanh", T, "max"),
    (F, T, T, "interior", "hard_sigmoid", "gelu", T, 13),
    (T, T, F, "trailing", "sigmoid", "swish", T, "max"),
    (F, T, F, "whole_sample", "hard_sigmoid_k3", "relu", F, 13),
]


def _case_id(case: tuple) -> str:
    rs, st, gb, mask, rec, act, bias, opset = case
    flags = "".join(f for f, on in (("seq-", rs), ("state-", st), ("back-", gb)) if on)
    return f"{flags}{mask}-{rec}-{act}-{'bias' if bias else 'nobias'}-opset{opset}"


def _strategy(mask: str, activation: str) -> str:
    """The fused op (with sequence_lens under a mask) for functions it has, else a Scan."""
    native = activation in ("tanh", "relu")
    if mask != "none":
        return "native_masked" if native else "scan_masked"
    return "native" if native else "scan"


# -------------------------------------------------------------------------- helpers


def make_lstm(
    seed: int = 0,
    recurrent_activation: str = "hard_sigmoid",
    features: int = FEATURES,
    **kwargs: Any,
) -> LSTM:
    """A built LSTM with random weights; ``hard_sigmoid_k3`` is hard_sigmoid read with
    Keras 3 semantics (alpha 1/6)."""
    if recurrent_activation == "hard_sigmoid_k3":
        with keras_semantics("3.15.1"):
            layer = LSTM(UNITS, recurrent_activation="hard_sigmoid", **kwargs)
        assert layer.recurrent_activation is activations.hard_sigmoid_v3
    else:
        layer = LSTM(UNITS, recurrent_activation=recurrent_activation, **kwargs)
    layer(np.zeros((1, STEPS, features), dtype="float32"))
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [(rng.normal(size=w.shape) * 0.6).astype("float32") for w in layer.get_weights()]
    )
    return layer


def convert(
    layer: LSTM, opset: int, masked: bool, steps: int | None = STEPS
) -> tuple[onnx.ModelProto, Converted, list[tuple]]:
    """A model of the single layer: inputs ``x`` (and ``mask``), outputs declared with
    unknown dims so that shape inference alone must fill them in."""
    builder = GraphBuilder(opset, name=f"{layer.name}_graph")
    builder.add_input(builder.reserve("x"), np.float32, ("batch", steps, FEATURES))
    mask = None
    if masked:
        builder.add_input(builder.reserve("mask"), np.bool_, ("batch", steps))
        mask = Value("mask", (None, steps), "bool")
    shapes = layer.compute_output_shape((None, steps, FEATURES))
    shapes = shapes if isinstance(shapes, list) else [shapes]
    conversion = Conversion(
        layer=layer,
        builder=builder,
        inputs=[Value("x", (None, steps, FEATURES), "float32")],
        masks=[mask],
        output_shapes=shapes,
        output_dtypes=["float32"] * len(shapes),
    )
    converted = convert_lstm(conversion)
    for name, shape in zip(converted.outputs, shapes, strict=True):
        builder.outputs.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * len(shape))
        )
    return builder.model(), converted, shapes


def make_mask(kind: str, batch: int, steps: int, rng: np.random.Generator) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "trailing":
        lengths = rng.integers(1, steps + 1, size=batch)
        lengths[:1] = max(steps - 2, 1)
        return np.arange(steps)[np.newaxis] < lengths[:, np.newaxis]
    mask = rng.random((batch, steps)) < 0.7
    if kind == "interior":
        mask[:, [0, -1]] = True
        mask[:1, 1:-1] = np.arange(1, steps - 1) % 2 == 0  # gaps inside sample 0
    elif kind == "whole_sample":
        mask[::3] = False  # samples 0, 3, 6, ...: every step masked
    elif kind == "first_step":
        mask[:, 0] = False
    return mask


def run_onnx(model: onnx.ModelProto, x: np.ndarray, mask: np.ndarray | None) -> list:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": x} if mask is None else {"x": x, "mask": mask}
    return session.run(None, feeds)


def check_graph(model: onnx.ModelProto, shapes: list[tuple]) -> None:
    """Full checker, and strict inference gives (batch, *static dims) for every output."""
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for output, shape in zip(inferred.graph.output, shapes, strict=True):
        assert output.type.tensor_type.elem_type == TensorProto.FLOAT
        dims = output.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch", (output.name, dims)
        got = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
        assert got == list(shape[1:]), (output.name, got, shape)


def assert_matches_reference(
    layer: LSTM,
    model: onnx.ModelProto,
    mask_kind: str,
    steps: int = STEPS,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    seed: int = 1,
) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in batch_sizes:
        rng = np.random.default_rng(seed + batch)
        x = rng.normal(size=(batch, steps, FEATURES)).astype("float32")
        mask = make_mask(mask_kind, batch, steps, rng)
        feeds = {"x": x} if mask is None else {"x": x, "mask": mask}
        got = session.run(None, feeds)
        expected = layer(x, mask=mask)
        expected = expected if isinstance(expected, list) else [expected]
        assert len(got) == len(expected)
        for index, (actual, wanted) in enumerate(zip(got, expected, strict=True)):
            assert actual.shape == wanted.shape, (index, batch)
            assert actual.dtype == np.float32
            np.testing.assert_allclose(
                actual, wanted, rtol=RTOL, atol=ATOL, err_msg=f"output {index} at batch {batch}"
            )


def lstm_uses_sequence_lens(graph: onnx.GraphProto) -> bool:
    """Whether the (single) LSTM node, wherever it sits, is given ``sequence_lens``."""
    for node in graph.node:
        if node.op_type == "LSTM":
            return len(node.input) > 4 and node.input[4] != ""
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH and "LSTM" in op_types(attribute.g):
                return lstm_uses_sequence_lens(attribute.g)
    raise AssertionError("no LSTM node")


def op_types(graph: onnx.GraphProto) -> set[str]:
    """Every op type in ``graph`` and its subgraphs."""
    found = set()
    for node in graph.node:
        found.add(node.op_type)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found |= op_types(attribute.g)
    return found


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_lstm_matches_reference(case: tuple) -> None:
    rs, st, gb, mask_kind, rec, act, bias, opset = case
    layer = make_lstm(
        recurrent_activation=rec,
        activation=act,
        use_bias=bias,
        return_sequences=rs,
        return_state=st,
        go_backwards=gb,
    )
    model, converted, shapes = convert(
        layer, MAX_OPSET if opset == "max" else opset, masked=mask_kind != "none"
    )
    check_graph(model, shapes)

    ops = op_types(model.graph)
    strategy = _strategy(mask_kind, act)
    if strategy.startswith("native"):
        assert "LSTM" in ops and "Scan" not in ops
        assert lstm_uses_sequence_lens(model.graph) is (strategy == "native_masked")
    else:
        assert "Scan" in ops and "LSTM" not in ops

    output_mask = "mask" if mask_kind != "none" and rs else None
    assert converted.masks == ([output_mask, None, None] if st else [output_mask])
    assert len(set(converted.outputs)) == len(converted.outputs) == len(shapes)
    assert_matches_reference(layer, model, mask_kind)


def test_table_covers() -> None:
    """Every factor value appears, with every value of every other factor, and the
    triples and quadruples that matter most for the two strategies appear too."""
    keys = list(FACTORS)
    for (a, values_a), (b, values_b) in itertools.combinations(FACTORS.items(), 2):
        i, j = keys.index(a), keys.index(b)
        seen = {(c[i], c[j]) for c in CASES}
        assert seen == set(itertools.product(values_a, values_b)), (a, b)
    triples = {(c[3], c[2], c[0]) for c in CASES}
    assert triples == set(itertools.product(MASKS, (F, T), (F, T)))
    quads = {(_strategy(c[3], c[5]), c[0], c[1], c[2]) for c in CASES}
    strategies = ("native", "native_masked", "scan", "scan_masked")
    assert quads == set(itertools.product(strategies, (F, T), (F, T), (F, T)))


@pytest.mark.parametrize(
    ("recurrent_activation", "activation", "native"),
    [
        ("sigmoid", "softsign", True),
        ("sigmoid", "softplus", False),  # the fused op's softplus overflows: Scan
        ("hard_sigmoid", "elu", True),
        ("hard_sigmoid_k3", "elu", True),  # alphas [1/6, 1, 1]: both readings agree
        ("relu", "sigmoid", True),
        ("softsign", "tanh", True),
        ("sigmoid", "hard_sigmoid", True),  # Keras 2 alpha/beta are ONNX's defaults
        ("tanh", "linear", False),  # no identity function in the ONNX LSTM op
        ("sigmoid", "selu", False),
        ("elu", "hard_sigmoid_v3", True),  # alphas [1, 1/6, 1/6]; betas all default
        ("sigmoid", "hard_sigmoid_v3", False),  # alphas would be read differently
    ],
)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_other_activations(
    recurrent_activation: str, activation: str, native: bool, go_backwards: bool
) -> None:
    layer = make_lstm(
        recurrent_activation=recurrent_activation,
        activation=activation,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
    )
    model, _, shapes = convert(layer, MAX_OPSET, masked=False)
    check_graph(model, shapes)
    assert ("LSTM" in op_types(model.graph)) is native
    assert_matches_reference(layer, model, "none", batch_sizes=(0, 7))


@pytest.mark.parametrize("mask_kind", ["none", "interior"])
@pytest.mark.parametrize("opset", [13, MAX_OPSET])
def test_unknown_timesteps(mask_kind: str, opset: int) -> None:
    layer = make_lstm(return_sequences=True, return_state=True, go_backwards=True)
    model, _, shapes = convert(layer, opset, masked=mask_kind != "none", steps=None)
    check_graph(model, shapes)
    for steps in (2, 6):
        assert_matches_reference(layer, model, mask_kind, steps=steps, batch_sizes=(0, 3))


@pytest.mark.parametrize(
    ("mask_kind", "activation"), [("none", "tanh"), ("none", "gelu"), ("interior", "tanh")]
)
def test_export_is_deterministic(mask_kind: str, activation: str) -> None:
    layer = make_lstm(activation=activation, return_sequences=True, return_state=True)
    first, _, _ = convert(layer, MAX_OPSET, masked=mask_kind != "none")
    second, _, _ = convert(layer, MAX_OPSET, masked=mask_kind != "none")
    assert first.SerializeToString() == second.SerializeToString()

    def names(graph: onnx.GraphProto) -> list[str]:
        found = [n.name for n in graph.node] + [i.name for i in graph.initializer]
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    found += names(attribute.g)
        return found

    assert all(name.startswith(layer.name) for name in names(first.graph))


def test_stacked_layers_share_one_graph() -> None:
    """Two LSTMs in one graph: no name clashes, and the first passes its mask on."""
    first = make_lstm(seed=1, return_sequences=True, go_backwards=True)
    second = make_lstm(seed=2, activation="gelu", features=UNITS, return_state=True)
    builder = GraphBuilder(13)
    builder.add_input(builder.reserve("x"), np.float32, ("batch", STEPS, FEATURES))
    builder.add_input(builder.reserve("mask"), np.bool_, ("batch", STEPS))
    mask = Value("mask", (None, STEPS), "bool")
    hidden = convert_lstm(
        Conversion(
            first,
            builder,
            [Value("x", (None, STEPS, FEATURES))],
            [mask],
            [(None, STEPS, UNITS)],
            ["float32"],
        )
    )
    assert hidden.masks == ["mask"]
    shapes = [(None, UNITS)] * 3
    final = convert_lstm(
        Conversion(
            second,
            builder,
            [Value(hidden.outputs[0], (None, STEPS, UNITS))],
            [mask],
            shapes,
            ["float32"] * 3,
        )
    )
    assert final.masks == [None, None, None]
    for name in final.outputs:
        builder.add_output(name, np.float32, ("batch", UNITS))
    model = builder.model()
    check_graph(model, shapes)
    rng = np.random.default_rng(5)
    for batch in BATCH_SIZES:
        x = rng.normal(size=(batch, STEPS, FEATURES)).astype("float32")
        mask_array = make_mask("interior", batch, STEPS, rng)
        expected = second(first(x, mask=mask_array), mask=mask_array)
        for actual, wanted in zip(run_onnx(model, x, mask_array), expected, strict=True):
            np.testing.assert_allclose(actual, wanted, rtol=RTOL, atol=ATOL)


def test_onnx_weights_reorder_gates() -> None:
    """Keras blocks i, f, c, o become ONNX i, o, f, c, transposed; R's bias half is 0."""
    layer = make_lstm()
    w, r, b = onnx_lstm_weights(layer)
    u = UNITS
    kernel, recurrent, bias = layer.get_weights()
    assert w.shape == (1, 4 * u, FEATURES) and r.shape == (1, 4 * u, u) and b.shape == (1, 8 * u)
    for onnx_block, keras_block in enumerate((0, 3, 1, 2)):
        rows, cols = (
            slice(onnx_block * u, (onnx_block + 1) * u),
            slice(keras_block * u, (keras_block + 1) * u),
        )
        np.testing.assert_array_equal(w[0, rows], kernel[:, cols].T)
        np.testing.assert_array_equal(r[0, rows], recurrent[:, cols].T)
        np.testing.assert_array_equal(b[0, rows], bias[cols])
    np.testing.assert_array_equal(b[0, 4 * u :], 0.0)
