"""GRU and SimpleRNN to ONNX (and the shared recurrent helpers of the masked tests).

Graphs are built with GraphBuilder around the registered converter; each one must pass
the full ONNX checker, infer every output's full shape with a symbolic batch, and match
both the NumPy layer and :func:`step_formula_outputs`, a loop written here from the spec
(sections 10.2 and 10.3) that shares no code with the layers, for batch sizes 0, 1, 7
and 64. The masked cases live in ``test_rnn_masked_export.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from layerserve import activations
from layerserve.export.builder import GraphBuilder, Value
from layerserve.export.converters.rnn_cells import GRU_CELL, SIMPLE_RNN_CELL
from layerserve.export.opsets import max_runtime_opset
from layerserve.export.registry import Conversion, Converted, find_converter
from layerserve.layers import LSTM
from layerserve.layers import rnn as rnn_layers
from layerserve.layers.rnn.gru import GRU
from layerserve.layers.rnn.simple_rnn import SimpleRNN
from layerserve.serialization import keras_semantics

STEPS, FEATURES, UNITS = 5, 3, 4
BATCH_SIZES = (0, 1, 7, 64)
MAX_OPSET = max_runtime_opset()
RTOL = ATOL = 1e-5
KINDS = {"LSTM": LSTM, "GRU": GRU, "SimpleRNN": SimpleRNN}
FUSED_OP = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}
STATE_COUNT = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1}
# Keras versions whose semantics differ: MBK 2.2 (hard_sigmoid defaults, reset_after
# False), tf.keras (zeros before the first valid step) and Keras 3 (hard_sigmoid x/6).
VERSIONS = ("2.2.5", "2.15.0", "3.15.1")


# ------------------------------------------------------------------------- helpers


def make_layer(
    kind: str, seed: int = 0, version: str = "2.15.0", features: int = FEATURES, **kwargs: Any
) -> Any:
    """A built layer with random weights, constructed under ``version``'s semantics."""
    with keras_semantics(version):
        layer = KINDS[kind](UNITS, **kwargs)
    layer(np.zeros((1, STEPS, features), dtype="float32"))
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [(rng.normal(size=w.shape) * 0.6).astype("float32") for w in layer.get_weights()]
    )
    return layer


def convert(
    layer: Any, opset: int, masked: bool, steps: int | None = STEPS, with_states: bool = False
) -> tuple[onnx.ModelProto, Converted, list[tuple]]:
    """A model of the single layer: inputs ``x`` (``mask``, ``state_k``), outputs declared
    with unknown dims so that shape inference alone must fill them in."""
    builder = GraphBuilder(opset, name=f"{layer.name}_graph")
    builder.add_input(builder.reserve("x"), np.float32, ("batch", steps, FEATURES))
    inputs = [Value("x", (None, steps, FEATURES), "float32")]
    count = len(layer.state_names) if with_states else 0
    for index in range(count):
        builder.add_input(builder.reserve(f"state_{index}"), np.float32, ("batch", UNITS))
        inputs.append(Value(f"state_{index}", (None, UNITS), "float32"))
    mask = None
    if masked:
        builder.add_input(builder.reserve("mask"), np.bool_, ("batch", steps))
        mask = Value("mask", (None, steps), "bool")
    shapes = layer.compute_output_shape((None, steps, FEATURES))
    shapes = shapes if isinstance(shapes, list) else [shapes]
    conversion = Conversion(
        layer=layer,
        builder=builder,
        inputs=inputs,
        masks=[mask] + [None] * count,
        output_shapes=shapes,
        output_dtypes=["float32"] * len(shapes),
    )
    converted = find_converter(layer)(conversion)
    for name, shape in zip(converted.outputs, shapes, strict=True):
        builder.outputs.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * len(shape))
        )
    return builder.model(), converted, shapes


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


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


def op_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs."""
    found = []
    for node in graph.node:
        found.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += op_nodes(attribute.g)
    return found


def strategy(model: onnx.ModelProto, kind: str) -> str:
    """``fused``, ``fused+sequence_lens`` or ``scan``, asserting that exactly one is used."""
    nodes = op_nodes(model.graph)
    fused = [n for n in nodes if n.op_type == FUSED_OP[kind]]
    scans = [n for n in nodes if n.op_type == "Scan"]
    assert len(fused) + len(scans) == 1, [n.op_type for n in nodes]
    if scans:
        return "scan"
    has_lengths = len(fused[0].input) > 4 and fused[0].input[4] != ""
    return "fused+sequence_lens" if has_lengths else "fused"


def step_formula(kind: str, layer: Any, x_t: np.ndarray, states: list) -> list[np.ndarray]:
    """One step of the cell from the spec's formulas (10.2); returns the new states."""
    kernel, recurrent = layer.kernel.value, layer.recurrent_kernel.value
    bias = layer.bias.value if layer.bias is not None else None
    act = layer.activation
    u = layer.units

    def block(matrix: np.ndarray, g: int) -> np.ndarray:
        return matrix[..., g * u : (g + 1) * u]

    if kind == "SimpleRNN":
        pre = x_t @ kernel + states[0] @ recurrent
        return [act(pre + bias if bias is not None else pre)]
    sigma = layer.recurrent_activation
    if kind == "LSTM":
        h, c = states
        b = bias if bias is not None else np.zeros(4 * u, dtype=x_t.dtype)
        i, f, g, o = (block(x_t @ kernel + h @ recurrent + b, k) for k in range(4))
        c_new = sigma(f) * c + sigma(i) * act(g)
        return [sigma(o) * act(c_new), c_new]
    (h,) = states
    if bias is None:
        b0 = b1 = np.zeros(3 * u, dtype=x_t.dtype)
    elif bias.ndim == 2:
        b0, b1 = bias
    else:
        b0, b1 = bias, np.zeros(3 * u, dtype=x_t.dtype)
    xw = x_t @ kernel + b0
    z = sigma(block(xw, 0) + h @ block(recurrent, 0) + block(b1, 0))
    r = sigma(block(xw, 1) + h @ block(recurrent, 1) + block(b1, 1))
    if layer.reset_after:
        candidate = act(block(xw, 2) + r * (h @ block(recurrent, 2) + block(b1, 2)))
    else:
        candidate = act(block(xw, 2) + (r * h) @ block(recurrent, 2))
    return [z * h + (1 - z) * candidate]


def step_formula_outputs(
    kind: str,
    layer: Any,
    x: np.ndarray,
    mask: np.ndarray | None,
    states: list[np.ndarray] | None,
    masked_output: str = "previous",
    zero_first_output: bool = True,
) -> list[np.ndarray]:
    """The layer's outputs by spec 10.3, one sample and one step at a time: a masked step
    keeps the states and outputs the previous output (zeros before the first step, or the
    initial h), or zeros (``zeros``), or (``zeros_by_time``, tf.keras unrolled) the
    previous output, then the sequence zeroed where the time-order mask is False and the
    last output where the last processed step is masked."""
    batch, steps = x.shape[:2]
    count = STATE_COUNT[kind]
    results = []
    for n in range(batch):
        state = [s[n : n + 1] for s in states] if states else [np.zeros((1, layer.units))] * count
        state = [np.asarray(s, dtype=np.float64) for s in state]
        previous = np.zeros_like(state[0]) if zero_first_output else state[0]
        row = []
        order = range(steps - 1, -1, -1) if layer.go_backwards else range(steps)
        for t in order:
            new = step_formula(kind, layer, x[n : n + 1, t].astype(np.float64), state)
            if mask is None or mask[n, t]:
                state, output = new, new[0]
            else:
                output = np.zeros_like(previous) if masked_output == "zeros" else previous
            previous = output
            row.append(output)
        sequence = np.concatenate(row, axis=0) if row else np.zeros((0, layer.units))
        last = sequence[-1:] if steps else state[0]
        if masked_output == "zeros_by_time" and mask is not None and steps:
            # The sequence by the time-order mask, the last output by the last processed step.
            sequence = np.where(mask[n][:, np.newaxis], sequence, 0.0)
            last = last if mask[n, order[-1]] else np.zeros_like(last)
        results.append(((sequence if layer.return_sequences else last), state))
    if batch == 0:
        empty_out = np.zeros(
            (0, steps, layer.units) if layer.return_sequences else (0, layer.units)
        )
        outputs = [empty_out] + [np.zeros((0, layer.units))] * count
    else:
        first = [r[0][np.newaxis] if layer.return_sequences else r[0] for r in results]
        outputs = [np.concatenate(first, axis=0)]
        outputs += [np.concatenate([r[1][k] for r in results], axis=0) for k in range(count)]
    return outputs if layer.return_state else outputs[:1]


def assert_outputs(
    got: list[np.ndarray], expected: list[np.ndarray], label: str, atol: float = ATOL
) -> None:
    assert len(got) == len(expected), label
    for index, (actual, wanted) in enumerate(zip(got, expected, strict=True)):
        assert actual.shape == np.shape(wanted), (label, index, actual.shape, np.shape(wanted))
        assert actual.dtype == np.float32
        np.testing.assert_allclose(
            actual, wanted, rtol=RTOL, atol=atol, err_msg=f"{label}: output {index}"
        )


def check_against_both(
    kind: str,
    layer: Any,
    runner: ort.InferenceSession,
    x: np.ndarray,
    mask: np.ndarray | None,
    states: list[np.ndarray] | None,
    label: str,
) -> None:
    """onnxruntime against the NumPy layer and against the spec's step formula."""
    feeds: dict[str, np.ndarray] = {"x": x}
    if mask is not None:
        feeds["mask"] = mask
    for index, state in enumerate(states or []):
        feeds[f"state_{index}"] = state
    got = runner.run(None, feeds)
    call_input = [x, *states] if states else x
    expected = layer(call_input, mask=[mask] + [None] * len(states) if states else mask)
    expected = expected if isinstance(expected, list) else [expected]
    assert_outputs(got, expected, f"{label} vs layer")
    formula = step_formula_outputs(
        kind,
        layer,
        x,
        mask,
        states,
        masked_output=layer.masked_output if mask is not None else "previous",
        zero_first_output=layer.zero_first_output,
    )
    assert_outputs(got, formula, f"{label} vs step formula", atol=1e-4)


# ---------------------------------------------------------------------------- tests

ACTIVATION_CASES = [
    # kind, activation, recurrent_activation, version, fused?
    ("GRU", "tanh", "sigmoid", "2.15.0", True),
    ("GRU", "tanh", "hard_sigmoid", "2.2.5", True),
    ("GRU", "tanh", "hard_sigmoid", "3.15.1", True),  # HardSigmoid(1/6, 0.5)
    ("GRU", "relu", "sigmoid", "3.15.1", True),
    ("GRU", "gelu", "sigmoid", "3.15.1", False),  # no ONNX GRU function
    ("GRU", "tanh", "swish", "2.15.0", False),
    ("GRU", "softsign", "hard_sigmoid", "2.2.5", True),
    ("SimpleRNN", "tanh", None, "2.15.0", True),
    ("SimpleRNN", "relu", None, "2.2.5", True),
    ("SimpleRNN", "elu", None, "3.15.1", True),
    ("SimpleRNN", "hard_sigmoid", None, "3.15.1", True),
    ("SimpleRNN", "linear", None, "2.15.0", False),  # no identity in the ONNX RNN op
    ("SimpleRNN", "selu", None, "3.15.1", False),
]


# GRU cases run with both reset_after values; SimpleRNN has no such option (None).
UNMASKED_CASES = [
    (*case, reset_after)
    for case in ACTIVATION_CASES
    for reset_after in ((False, True) if case[0] == "GRU" else (None,))
]


@pytest.mark.parametrize(("kind", "act", "rec", "version", "fused", "reset_after"), UNMASKED_CASES)
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("flags", ["", "seq", "state", "seq-state-back", "back"])
def test_unmasked_matches_layer_and_formula(
    kind: str,
    act: str,
    rec: str | None,
    version: str,
    fused: bool,
    reset_after: bool | None,
    use_bias: bool,
    flags: str,
) -> None:
    options: dict[str, Any] = {"activation": act, "use_bias": use_bias}
    if kind == "GRU":
        options.update(recurrent_activation=rec, reset_after=reset_after)
    layer = make_layer(
        kind,
        version=version,
        return_sequences="seq" in flags,
        return_state="state" in flags,
        go_backwards="back" in flags,
        **options,
    )
    opset = MAX_OPSET if use_bias else 13
    model, converted, shapes = convert(layer, opset, masked=False)
    check_graph(model, shapes)
    assert strategy(model, kind) == ("fused" if fused else "scan")
    assert len(set(converted.outputs)) == len(converted.outputs) == len(shapes)
    runner = session(model)
    for batch in BATCH_SIZES:
        x = np.random.default_rng(batch).normal(size=(batch, STEPS, FEATURES)).astype("float32")
        check_against_both(kind, layer, runner, x, None, None, f"{kind} batch {batch}")


@pytest.mark.parametrize("kind", ["GRU", "SimpleRNN"])
@pytest.mark.parametrize("activation", ["tanh", "gelu"])
@pytest.mark.parametrize("version", ["2.15.0", "3.15.1"])
def test_initial_state(kind: str, activation: str, version: str) -> None:
    layer = make_layer(
        kind, version=version, activation=activation, return_sequences=True, return_state=True
    )
    model, _, shapes = convert(layer, MAX_OPSET, masked=False, with_states=True)
    check_graph(model, shapes)
    runner = session(model)
    for batch in BATCH_SIZES:
        rng = np.random.default_rng(batch)
        x = rng.normal(size=(batch, STEPS, FEATURES)).astype("float32")
        h0 = rng.normal(size=(batch, UNITS)).astype("float32")
        check_against_both(kind, layer, runner, x, None, [h0], f"{kind} batch {batch}")


def test_gru_onnx_weights() -> None:
    """GRU keeps the z, r, h blocks; B is [input row, recurrent row] or [b, 0]."""
    for reset_after in (False, True):
        layer = make_layer("GRU", reset_after=reset_after)
        w, r, b = GRU_CELL.onnx_weights(layer, np.float32)
        kernel, recurrent, bias = layer.get_weights()
        np.testing.assert_array_equal(w[0], kernel.T)
        np.testing.assert_array_equal(r[0], recurrent.T)
        expected = bias.reshape(-1) if reset_after else np.concatenate([bias, np.zeros_like(bias)])
        np.testing.assert_array_equal(b[0], expected)
    layer = make_layer("SimpleRNN")
    w, r, b = SIMPLE_RNN_CELL.onnx_weights(layer, np.float32)
    kernel, recurrent, bias = layer.get_weights()
    np.testing.assert_array_equal(b[0], np.concatenate([bias, np.zeros(UNITS)]))
    np.testing.assert_array_equal(w[0], kernel.T)


def test_hard_sigmoid_by_version() -> None:
    """The same name means 0.2x+0.5 in Keras 2 and x/6+0.5 in Keras 3; the op gets it."""
    alphas = {}
    for version in ("2.2.5", "3.15.1"):
        layer = make_layer("GRU", version=version, recurrent_activation="hard_sigmoid")
        model, _, _ = convert(layer, MAX_OPSET, masked=False)
        (node,) = [n for n in op_nodes(model.graph) if n.op_type == "GRU"]
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        alphas[version] = attributes["activation_alpha"][0]
    assert alphas["2.2.5"] == pytest.approx(0.2)
    assert alphas["3.15.1"] == pytest.approx(1 / 6)


def _names(graph: onnx.GraphProto) -> list[str]:
    return [n.name for n in op_nodes(graph)] + [i.name for i in graph.initializer]


@pytest.mark.parametrize("kind", ["GRU", "SimpleRNN"])
def test_export_is_deterministic_and_named_after_the_layer(kind: str) -> None:
    layer = make_layer(kind, return_sequences=True, return_state=True)
    first, _, _ = convert(layer, MAX_OPSET, masked=True)
    second, _, _ = convert(layer, MAX_OPSET, masked=True)
    assert first.SerializeToString() == second.SerializeToString()
    assert all(name.startswith(layer.name) for name in _names(first.graph))


def test_activation_lookup_is_by_identity() -> None:
    """A user function named like a built-in is not taken for the ONNX function."""

    def tanh(x: np.ndarray) -> np.ndarray:
        return np.tanh(x) * 0.5

    layer = make_layer("SimpleRNN", activation=tanh)
    assert layer.activation is not activations.tanh
    model, _, _ = convert(layer, MAX_OPSET, masked=False)
    assert strategy(model, "SimpleRNN") == "scan"


@pytest.mark.parametrize("kind", ["CuDNNGRU", "CuDNNLSTM"])
def test_cudnn_layers_run_every_step(kind: str) -> None:
    """The cuDNN layers take no mask (tf.keras drops it): the fused op over every step,
    and no output mask."""
    with keras_semantics("2.15.0"):
        layer = getattr(rnn_layers, kind)(UNITS, return_sequences=True, return_state=True)
    layer(np.zeros((1, STEPS, FEATURES), dtype="float32"))
    rng = np.random.default_rng(2)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    model, converted, shapes = convert(layer, MAX_OPSET, masked=True)
    check_graph(model, shapes)
    assert strategy(model, kind.removeprefix("CuDNN")) == "fused"
    assert converted.masks == [None] * len(shapes)
    runner = session(model)
    for batch in BATCH_SIZES:
        x = rng.normal(size=(batch, STEPS, FEATURES)).astype("float32")
        mask = rng.random((batch, STEPS)) < 0.5
        got = runner.run(None, {"x": x, "mask": mask})
        assert_outputs(got, layer(x), f"{kind} batch {batch}")


@pytest.mark.parametrize("kind", ["SimpleRNN", "GRU", "LSTM"])
def test_softplus_stays_finite_past_the_exponent_range(kind: str) -> None:
    """Pre-activations of several hundred: log(1 + exp(x)) overflows float32 past 88,
    as onnxruntime's fused RNN, GRU and LSTM ops compute it; Keras gives x there. The
    exported graph matches the reference (x + log1p(exp(-x)) for large x)."""
    from layerserve.export import to_onnx
    from layerserve.layers import Input
    from layerserve.models import Model

    which = "recurrent_activation" if kind == "LSTM" else "activation"
    layer = {"SimpleRNN": SimpleRNN, "GRU": GRU, "LSTM": LSTM}[kind](
        3, return_sequences=True, **{which: "softplus"}
    )
    inputs = Input((4, 2))
    model = Model(inputs, layer(inputs))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 1, w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.uniform(-300.0, 300.0, (5, 4, 2)).astype(np.float32)
    expected = model.predict(x)
    assert np.isfinite(expected).all() and np.abs(expected).max() > 88
    graph = to_onnx(model)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
