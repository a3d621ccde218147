"""Shared by the wrapper tests: masked inputs, a SimpleRNN written out by hand, and the
ONNX export checked against the NumPy reference for batch sizes 0, 1, 7 and 64."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.export import to_onnx
from layerserve.export.api import MASK_SUFFIX, exported_mask, output_names
from layerserve.export.parity import session

BATCH_SIZES = (0, 1, 7, 64)
ATOL = 1e-5


def masked_sequences(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal floats with whole timesteps zeroed (so ``Masking()`` hides them) anywhere:
    the first and last steps of row 0, all of row 1, random steps elsewhere."""
    x = rng.normal(size=shape).astype(np.float32)
    hidden = rng.random(shape[:2]) < 0.3
    if shape[0] > 1:
        hidden[0, [0, -1]] = True
        hidden[1] = True
    x[hidden] = 0
    return x


def simple_rnn_by_hand(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent: np.ndarray,
    bias: np.ndarray,
    mask: np.ndarray | None = None,
    go_backwards: bool = False,
    zero_output: bool = False,
    initial: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sequence in processing order, last output, final h)`` of
    ``h_t = tanh(x_t·W + b + h_{t−1}·U)``: a masked step keeps h and outputs the
    previous output (zeros with ``zero_output``); the previous output starts as h0."""
    batch, steps = x.shape[:2]
    units = recurrent.shape[0]
    h = np.zeros((batch, units), np.float32) if initial is None else initial
    previous, outputs = h, []
    for t in reversed(range(steps)) if go_backwards else range(steps):
        new = np.tanh(x[:, t] @ kernel + bias + h @ recurrent)
        keep = np.ones((batch, 1), bool) if mask is None else mask[:, t : t + 1]
        output = np.where(keep, new, 0.0 if zero_output else previous)
        h = np.where(keep, new, h)
        previous = output
        outputs.append(output)
    sequence = np.stack(outputs, 1) if outputs else np.zeros((batch, 0, units), np.float32)
    return sequence, (outputs[-1] if outputs else h), h


def random_weights(layer: Any, rng: np.random.Generator) -> list[np.ndarray]:
    """Draws every weight of a built layer (scaled like trained ones) and sets them."""
    weights = [
        rng.normal(0, 1 / np.sqrt(max(w.shape[0], 1)), w.shape).astype(np.float32)
        for w in layer.get_weights()
    ]
    for index, variable in enumerate(layer.weights):
        if "variance" in variable.name:
            weights[index] = np.abs(weights[index]) + 0.5
    layer.set_weights(weights)
    return weights


def assert_export_matches(model: Any, make_inputs: Any, batch_sizes=BATCH_SIZES) -> None:
    """The exported model run by onnxruntime equals ``model.run`` (outputs and masks)."""
    runner = session(to_onnx(model))
    graph_outputs = [o.name for o in runner.get_outputs()]
    for batch in batch_sizes:
        arrays = make_inputs(batch)
        arrays = arrays if isinstance(arrays, list) else [arrays]
        feeds = {i.name: a for i, a in zip(runner.get_inputs(), arrays, strict=True)}
        got = dict(zip(graph_outputs, runner.run(None, feeds), strict=True))
        outputs, masks = model.run(arrays if len(arrays) > 1 else arrays[0])
        if len(model.outputs) == 1:
            outputs, masks = [outputs], [masks]
        for name, expected, mask in zip(output_names(model), outputs, masks, strict=True):
            np.testing.assert_allclose(
                got[name], expected, rtol=1e-5, atol=ATOL, err_msg=f"{name}, batch {batch}"
            )
            if mask is None:
                assert name + MASK_SUFFIX not in got, name
            else:
                want = exported_mask(mask, len(np.asarray(expected)))
                np.testing.assert_array_equal(got[name + MASK_SUFFIX], want)
