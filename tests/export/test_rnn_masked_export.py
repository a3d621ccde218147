"""Masked LSTM / GRU / SimpleRNN to ONNX: the fused op with reordered steps and
``sequence_lens``, and the Scan where the op lacks an activation.

Every case runs onnxruntime against the NumPy layer AND the spec's step formula
(``step_formula_outputs`` in ``test_rnn_export.py``) with masks anywhere: trailing,
leading, interior, fully masked and unmasked rows side by side, for batch 0, 1, 7 and 64,
and under hypothesis for random masks, batch sizes and sequence lengths.
"""

from __future__ import annotations

import importlib.util
import itertools
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_checks import assert_graph_quality

from layerserve.export import to_onnx
from layerserve.export.converters.rnn_cells import GRU_CELL, LSTM_CELL, SIMPLE_RNN_CELL
from layerserve.layers import Masking
from layerserve.models import Sequential
from layerserve.serialization import keras_semantics

_spec = importlib.util.spec_from_file_location(
    "rnn_export_helpers", Path(__file__).with_name("test_rnn_export.py")
)
assert _spec is not None and _spec.loader is not None
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

STEPS, FEATURES, UNITS = helpers.STEPS, helpers.FEATURES, helpers.UNITS
MAX_OPSET = helpers.MAX_OPSET
KINDS = ("LSTM", "GRU", "SimpleRNN")
# (Keras version, zero_output_for_mask, unroll): which masked-output rule and which
# "output before the first valid step" each gives (RecurrentLayer.masked_output).
SEMANTICS = {
    "tfkeras": ("2.15.0", False, False),  # previous output; zeros before the first
    "keras3": ("3.15.1", False, False),  # previous output; the initial h before the first
    "keras3-zeros": ("3.15.1", True, False),  # zeros at masked steps
    "tfkeras-zeros": ("2.15.0", True, False),
    "tfkeras-unrolled-zeros": ("2.15.0", True, True),  # zeros where the time-order mask is 0
    "mbk": ("2.2.5", False, False),  # hard_sigmoid, GRU reset_after=False
}


def mixed_mask(batch: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Rows cycling through: trailing padding, leading padding, interior holes, fully
    masked, unmasked, and random."""
    mask = np.ones((batch, steps), dtype=bool)
    for row in range(batch):
        pattern = row % 6
        if pattern == 0:
            mask[row, rng.integers(1, max(steps, 2)) :] = False
        elif pattern == 1:
            mask[row, : rng.integers(1, max(steps, 2))] = False
        elif pattern == 2:
            mask[row, 1:-1:2] = False
        elif pattern == 3:
            mask[row] = False
        elif pattern == 5:
            mask[row] = rng.random(steps) < 0.5
    return mask


def make(kind: str, semantics: str, activation: str = "tanh", **flags: Any) -> Any:
    version, zero_output, unroll = SEMANTICS[semantics]
    options: dict[str, Any] = {"activation": activation, "unroll": unroll}
    if zero_output:
        options["zero_output_for_mask"] = True
    return helpers.make_layer(kind, version=version, **options, **flags)


def run_cases(
    kind: str,
    layer: Any,
    runner: Any,
    with_states: bool,
    batch_sizes: tuple[int, ...] = helpers.BATCH_SIZES,
    steps: int = STEPS,
) -> None:
    for batch in batch_sizes:
        rng = np.random.default_rng(batch + 100)
        x = rng.normal(size=(batch, steps, FEATURES)).astype("float32")
        mask = mixed_mask(batch, steps, rng)
        states = None
        if with_states:
            states = [
                rng.normal(size=(batch, UNITS)).astype("float32")
                for _ in range(helpers.STATE_COUNT[kind])
            ]
        helpers.check_against_both(kind, layer, runner, x, mask, states, f"batch {batch}")


FLAGS = list(itertools.product((False, True), repeat=4))  # seq, state, back, initial state


def _flag_id(flags: tuple[bool, ...]) -> str:
    names = ("seq", "state", "back", "initial")
    return "-".join(n for n, on in zip(names, flags, strict=True) if on) or "plain"


@pytest.mark.parametrize("flags", FLAGS, ids=[_flag_id(f) for f in FLAGS])
@pytest.mark.parametrize("semantics", list(SEMANTICS))
@pytest.mark.parametrize("kind", KINDS)
def test_fused_with_sequence_lens(kind: str, semantics: str, flags: tuple[bool, ...]) -> None:
    return_sequences, return_state, go_backwards, with_states = flags
    layer = make(
        kind,
        semantics,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
    )
    opset = MAX_OPSET if (return_sequences ^ go_backwards) else 13
    model, converted, shapes = helpers.convert(layer, opset, masked=True, with_states=with_states)
    helpers.check_graph(model, shapes)
    assert helpers.strategy(model, kind) == "fused+sequence_lens"
    output_mask = "mask" if return_sequences else None
    count = helpers.STATE_COUNT[kind]
    assert converted.masks == ([output_mask] + [None] * count if return_state else [output_mask])
    run_cases(kind, layer, helpers.session(model), with_states)


@pytest.mark.parametrize("flags", FLAGS[::3], ids=[_flag_id(f) for f in FLAGS[::3]])
@pytest.mark.parametrize("semantics", ["tfkeras", "keras3", "tfkeras-unrolled-zeros", "mbk"])
@pytest.mark.parametrize("kind", KINDS)
def test_scan_for_activations_the_op_lacks(
    kind: str, semantics: str, flags: tuple[bool, ...]
) -> None:
    return_sequences, return_state, go_backwards, with_states = flags
    layer = make(
        kind,
        semantics,
        activation="selu",  # no ONNX RNN function; in every Keras
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
    )
    model, _, shapes = helpers.convert(layer, MAX_OPSET, masked=True, with_states=with_states)
    helpers.check_graph(model, shapes)
    assert helpers.strategy(model, kind) == "scan"
    run_cases(kind, layer, helpers.session(model), with_states)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("opset", [13, MAX_OPSET])
def test_unknown_timesteps(kind: str, go_backwards: bool, opset: int) -> None:
    """With T unknown the reorder is a ScatterElements (TopK would lose the batch dim)."""
    layer = make(
        kind, "keras3", return_sequences=True, return_state=True, go_backwards=go_backwards
    )
    model, _, shapes = helpers.convert(layer, opset, masked=True, steps=None, with_states=True)
    helpers.check_graph(model, shapes)
    assert helpers.strategy(model, kind) == "fused+sequence_lens"
    runner = helpers.session(model)
    for steps in (1, 2, 6):
        run_cases(kind, layer, runner, True, batch_sizes=(0, 1, 7), steps=steps)


# -------------------------------------------------------------------- hypothesis

CONFIGS = [
    (kind, semantics, steps, flags)
    for kind in KINDS
    for semantics, steps, flags in (
        ("tfkeras", 6, (True, True, False, True)),
        ("keras3", 6, (True, True, True, True)),
        ("keras3-zeros", 6, (False, True, True, False)),
        ("tfkeras-unrolled-zeros", 6, (True, False, True, False)),
        ("keras3", None, (True, True, True, True)),
        ("tfkeras", None, (False, True, False, True)),
    )
]


@cache
def _compiled(index: int) -> tuple[Any, Any]:
    kind, semantics, steps, flags = CONFIGS[index]
    return_sequences, return_state, go_backwards, with_states = flags
    layer = make(
        kind,
        semantics,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
    )
    model, _, _ = helpers.convert(
        layer, MAX_OPSET, masked=True, steps=steps, with_states=with_states
    )
    return layer, helpers.session(model)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_masks(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(CONFIGS) - 1), label="config")
    kind, _, steps, flags = CONFIGS[index]
    layer, runner = _compiled(index)
    batch = data.draw(st.integers(0, 9), label="batch")
    steps = steps or data.draw(st.integers(1, 8), label="steps")
    cells = data.draw(
        st.lists(st.booleans(), min_size=batch * steps, max_size=batch * steps), label="mask"
    )
    mask = np.array(cells, dtype=bool).reshape(batch, steps)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x = rng.normal(size=(batch, steps, FEATURES)).astype("float32")
    states = None
    if flags[3]:
        states = [
            rng.normal(size=(batch, UNITS)).astype("float32")
            for _ in range(helpers.STATE_COUNT[kind])
        ]
    helpers.check_against_both(kind, layer, runner, x, mask, states, f"{CONFIGS[index]}")


def test_masked_steps_values_are_never_read() -> None:
    """NaN in masked steps changes nothing: the fused op never sees those steps (the
    NumPy layer discards them with a Where, so both give finite outputs)."""
    for kind in KINDS:
        layer = make(kind, "keras3", return_sequences=True, return_state=True)
        model, _, _ = helpers.convert(layer, MAX_OPSET, masked=True)
        runner = helpers.session(model)
        rng = np.random.default_rng(3)
        x = rng.normal(size=(7, STEPS, FEATURES)).astype("float32")
        mask = mixed_mask(7, STEPS, rng)
        clean = runner.run(None, {"x": x, "mask": mask})
        x[~mask] = np.nan
        dirty = runner.run(None, {"x": x, "mask": mask})
        for a, b in zip(clean, dirty, strict=True):
            np.testing.assert_array_equal(a, b)


MODEL_CASES = [
    # version, return_sequences, go_backwards, zero_output_for_mask, timesteps
    ("2.15.0", False, False, False, STEPS),
    ("3.15.1", True, False, False, STEPS),
    ("2.15.0", True, True, True, STEPS),
    ("3.15.1", False, True, True, STEPS),
    ("2.15.0", True, True, False, None),
    ("3.15.1", False, False, True, None),
]


@pytest.mark.parametrize(("version", "sequences", "backwards", "zeros", "steps"), MODEL_CASES)
@pytest.mark.parametrize("kind", KINDS)
def test_masking_model_end_to_end(
    kind: str, version: str, sequences: bool, backwards: bool, zeros: bool, steps: int | None
) -> None:
    """Masking then the layer, exported whole by ``to_onnx``: a clean graph (no dead
    node, nothing left to fold), the fused op reading Masking's (N, T, 1) keep flags
    directly (no Squeeze/Unsqueeze pair), and ``predict``'s numbers."""
    with keras_semantics(version):
        masking = Masking(mask_value=0.0, input_shape=(steps, FEATURES), name="masking")
        recurrent = helpers.KINDS[kind](
            UNITS,
            return_sequences=sequences,
            go_backwards=backwards,
            zero_output_for_mask=zeros,
            name="rnn",
        )
        model = Sequential([masking, recurrent])
    rng = np.random.default_rng(4)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    onnx_model = to_onnx(model)
    assert_graph_quality(onnx_model)
    assert helpers.strategy(onnx_model, kind) == "fused+sequence_lens"
    nodes = helpers.op_nodes(onnx_model.graph)
    assert all(n.name.startswith(("masking", "rnn")) for n in nodes)  # named after layers
    squeezed = {o for n in nodes if n.op_type == "Squeeze" for o in n.output}
    assert not [n for n in nodes if n.op_type == "Unsqueeze" and n.input[0] in squeezed]
    runner = helpers.session(onnx_model)
    input_name = runner.get_inputs()[0].name
    for batch in helpers.BATCH_SIZES:
        x = rng.normal(size=(batch, STEPS, FEATURES)).astype("float32")
        x[~mixed_mask(batch, STEPS, rng)] = 0.0  # all-zero steps are the masked ones
        got = runner.run(None, {input_name: x})
        expected = model.predict(x, batch_size=max(batch, 1))
        np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_onnxruntime_behaviours_the_fast_path_relies_on(kind: str) -> None:
    """The fused op, given ``sequence_lens``: zeros in ``Y`` beyond each row's length
    (the −1 index of a zero output reads them) and zero final states for a length of 0
    (where an initial state must be restored)."""
    layer = make(kind, "tfkeras", return_sequences=True)
    cell = {"LSTM": LSTM_CELL, "GRU": GRU_CELL, "SimpleRNN": SIMPLE_RNN_CELL}[kind]
    w, r, b = cell.onnx_weights(layer, np.float32)
    state_count = helpers.STATE_COUNT[kind]
    node = onnx.helper.make_node(
        helpers.FUSED_OP[kind],
        ["X", "W", "R", "B", "lengths", *[f"initial_{k}" for k in range(state_count)]],
        ["Y", *[f"final_{k}" for k in range(state_count)]],
        hidden_size=UNITS,
        **cell.op_attributes(layer),
    )
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [node],
        "probe",
        [
            value("X", onnx.TensorProto.FLOAT, [STEPS, None, FEATURES]),
            value("lengths", onnx.TensorProto.INT32, [None]),
            *[
                value(f"initial_{k}", onnx.TensorProto.FLOAT, [1, None, UNITS])
                for k in range(state_count)
            ],
        ],
        [value(name, onnx.TensorProto.FLOAT, None) for name in node.output],
        initializer=[
            onnx.numpy_helper.from_array(array, name)
            for array, name in ((w, "W"), (r, "R"), (b, "B"))
        ],
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=7
    )
    lengths = np.array([0, 2, STEPS, 0], dtype=np.int32)
    rng = np.random.default_rng(0)
    feeds = {"X": rng.normal(size=(STEPS, 4, FEATURES)).astype("float32"), "lengths": lengths}
    for k in range(state_count):
        feeds[f"initial_{k}"] = np.ones((1, 4, UNITS), dtype="float32")
    y, *finals = helpers.session(model).run(None, feeds)
    for row, length in enumerate(lengths):
        np.testing.assert_array_equal(y[length:, 0, row], 0.0)
        assert np.all(y[:length, 0, row] != 0.0)
        for final in finals:
            assert np.all(final[0, row] == 0.0) is (length == 0)
