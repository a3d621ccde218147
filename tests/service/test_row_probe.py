"""The load-time probe of whether a graph's rows depend on one another
(``service/row_probe.py``), with NumPy functions standing in for the graph: each verdict
against what the function does to its rows."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from layerserve.service import row_probe
from layerserve.service.row_probe import PROBE_ROWS, counting_rows, probe, random_rows

SPEC = SimpleNamespace(name="x", dtype=np.dtype("float32"))
SHAPES = {"x": [1, 5, 4]}
ROW_BYTES = 5 * 4 * 4


def graph(function):
    """``run(feeds, seconds)`` for a function of the one input."""
    return lambda feeds, seconds: function(feeds["x"])


def verdict_of(function, loose=False):
    return probe(graph(function), [SPEC], SHAPES, {}, ROW_BYTES, loose).coupled


@pytest.mark.parametrize(
    ("function", "coupled"),
    [
        (lambda x: [np.tanh(x) * 2, x.sum(axis=(1, 2))], False),  # row by row
        (lambda x: [x @ np.full((4, 3), 0.1, np.float32)], False),
        (lambda x: [x > 0], False),
        (lambda x: [x - x.mean(axis=0, keepdims=True)], True),  # centred on the batch
        (lambda x: [np.cumsum(x, axis=0)], True),
        (lambda x: [x[::-1]], True),  # rows swapped
        (lambda x: [x.sum(axis=0)], True),  # no batch axis left
        (lambda x: [x, (x > 0) & (x.sum(axis=0) > 0)], True),  # a coupled mask output
    ],
)
def test_the_verdict_follows_what_the_graph_does_to_rows(function, coupled):
    assert verdict_of(function) is coupled


def test_a_batch_that_fails_where_rows_run_counts_as_coupled():
    def failing_batch(x):
        if len(x) > 1:
            raise ValueError("broadcast fails")
        return [x]

    assert verdict_of(failing_batch) is True


def test_a_graph_that_refuses_random_rows_is_probed_with_whole_numbers():
    """An index input without a recorded range: random floats are refused, rows of 0, 1
    and 2 run, and the coupling shows."""

    def lookup(x):
        if not np.array_equal(x, np.round(x)):
            raise ValueError("indices must be whole numbers")
        return [x - x.mean(axis=0, keepdims=True)]

    assert verdict_of(lookup) is True


@pytest.mark.parametrize(
    "failure", [ValueError("no run"), MemoryError(), RuntimeError("onnxruntime says no")]
)
def test_a_graph_the_probe_cannot_run_is_unknown_and_never_merged(failure):
    def failing(x):
        raise failure

    verdict = probe(graph(failing), [SPEC], SHAPES, {}, ROW_BYTES)
    assert verdict.coupled is None and not verdict.merges
    assert type(failure).__name__ in verdict.reason


def test_the_probe_has_one_deadline(monkeypatch):
    monkeypatch.setattr(row_probe, "PROBE_SECONDS", 0.05)
    seconds = []

    def slow(feeds, left):
        seconds.append(left)
        time.sleep(0.02)
        return [feeds["x"]]

    verdict = probe(slow, [SPEC], SHAPES, {}, ROW_BYTES)
    assert verdict.coupled is None and "past" in verdict.reason
    assert all(b < a for a, b in zip(seconds, seconds[1:], strict=False))  # the rest shrinks


def test_inputs_too_large_to_probe_are_unknown():
    huge = {"x": [1, 4096, 4096]}  # 3 rows of 64 MiB
    verdict = probe(graph(lambda x: [x]), [SPEC], huge, {}, 4096 * 4096 * 4)
    assert verdict.coupled is None and "bytes" in verdict.reason


def test_loose_tolerances_for_cuda_and_half_precision():
    def rounded(x):  # a batch-size dependent rounding of 0.5%
        return [x * (1 + 0.005 * (len(x) > 1))]

    assert verdict_of(rounded) is True
    assert verdict_of(rounded, loose=True) is False


def test_string_outputs_are_compared_as_strings():
    def words(x, shuffle=False):
        out = np.array([f"row {v:.3f}" for v in x[:, 0, 0]], dtype=object)
        return [out[::-1] if shuffle and len(out) > 1 else out]

    assert verdict_of(words) is False
    assert verdict_of(lambda x: words(x, shuffle=True)) is True


def test_probe_rows_suit_each_input():
    specs = [
        SimpleNamespace(name="tokens", dtype=np.dtype("int32")),
        SimpleNamespace(name="float_tokens", dtype=np.dtype("float32")),
        SimpleNamespace(name="flags", dtype=np.dtype("bool")),
        SimpleNamespace(name="text", dtype=np.dtype("O")),
        SimpleNamespace(name="steps", dtype=np.dtype("float32")),
    ]
    shapes = {
        "tokens": [1, 6],
        "float_tokens": [1, 40],
        "flags": [1, 2],
        "text": [1, 1],
        "steps": [1, 50, 3],
    }
    ranges = {"tokens": (-10, 7), "float_tokens": (0, 5)}
    for feeds in (random_rows(specs, shapes, ranges), counting_rows(specs, shapes)):
        assert {n: a.shape[0] for n, a in feeds.items()} == dict.fromkeys(shapes, PROBE_ROWS)
        assert {n: a.dtype for n, a in feeds.items()} == {s.name: s.dtype for s in specs}
    feeds = random_rows(specs, shapes, ranges)
    assert feeds["tokens"].min() >= 0 and feeds["tokens"].max() < 7
    # tf.keras feeds Embedding floats: whole numbers within the recorded range
    tokens = feeds["float_tokens"]
    assert np.array_equal(tokens, np.round(tokens)) and tokens.min() >= 0 and tokens.max() < 5
    assert all(isinstance(v, str) for v in feeds["text"].ravel())
    # some timesteps all zeros, so that Masking layers mask them
    assert (np.abs(feeds["steps"]).sum(axis=2) == 0).any()
    rows = counting_rows(specs, shapes)["steps"]
    assert [float(rows[r].min()) for r in range(PROBE_ROWS)] == list(range(PROBE_ROWS))
