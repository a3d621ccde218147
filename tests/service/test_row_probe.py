"""The load-time probe of whether a graph's rows depend on one another
(``service/row_probe.py``), with NumPy functions standing in for the graph: each verdict
against what the function does to its rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from layerserve.service.row_probe import PROBE_ROWS, probe_inputs, rows_depend_on_each_other

SPEC = SimpleNamespace(name="x", dtype=np.dtype("float32"))
FEEDS = probe_inputs([SPEC], {"x": [1, 5, 4]}, {})


def failing_batch(feeds):
    if len(feeds["x"]) > 1:
        raise ValueError("broadcast fails")
    return [feeds["x"]]


def failing(feeds):
    raise ValueError("no run")


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
    assert rows_depend_on_each_other(lambda feeds: function(feeds["x"]), FEEDS) is coupled


def test_a_batch_that_fails_where_rows_run_counts_as_coupled():
    assert rows_depend_on_each_other(failing_batch, FEEDS) is True


def test_values_the_graph_refuses_tell_nothing():
    assert rows_depend_on_each_other(failing, FEEDS) is False


def test_probe_inputs_suit_each_input():
    specs = [
        SimpleNamespace(name="tokens", dtype=np.dtype("int32")),
        SimpleNamespace(name="flags", dtype=np.dtype("bool")),
        SimpleNamespace(name="text", dtype=np.dtype("O")),
        SimpleNamespace(name="steps", dtype=np.dtype("float32")),
    ]
    shapes = {"tokens": [1, 6], "flags": [1, 2], "text": [1, 1], "steps": [1, 50, 3]}
    feeds = probe_inputs(specs, shapes, {"tokens": (-10, 7)})
    assert {name: a.shape[0] for name, a in feeds.items()} == dict.fromkeys(shapes, PROBE_ROWS)
    assert feeds["tokens"].min() >= 0 and feeds["tokens"].max() < 7
    assert feeds["flags"].dtype == bool and feeds["text"].dtype == object
    assert all(isinstance(v, str) for v in feeds["text"].ravel())
    # some timesteps all zeros, so that Masking layers mask them
    assert (np.abs(feeds["steps"]).sum(axis=2) == 0).any()


def test_string_outputs_are_compared_as_strings():
    def words(feeds, shuffle=False):
        out = np.array([f"row {v:.3f}" for v in feeds["x"][:, 0, 0]], dtype=object)
        return [out[::-1] if shuffle and len(out) > 1 else out]

    assert rows_depend_on_each_other(words, FEEDS) is False
    assert rows_depend_on_each_other(lambda f: words(f, shuffle=True), FEEDS) is True
