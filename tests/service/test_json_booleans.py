"""Booleans among JSON numbers: NumPy reads ``[0.5, true]`` as ``[0.5, 1.0]``, so
``first_boolean`` finds them in what NumPy read as numbers. Checked against a plain walk
of the nested lists, over random shapes, values and positions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.service.protocols.json_floats import first_boolean, may_hold_booleans

NUMBER = st.one_of(
    st.sampled_from([0, 1, 0.0, 1.0, -0.0]),
    st.integers(-5, 5),
    st.floats(-2, 2, allow_nan=False),
)


def _walk(value: object) -> list:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _walk(item)]
    return [value]


def _nest(flat: list, shape: list[int]) -> list:
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def nested_values(draw: st.DrawFn) -> list:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    size = int(np.prod(shape))
    flat = draw(st.lists(NUMBER, min_size=size, max_size=size))
    for index in draw(st.lists(st.integers(0, size - 1), max_size=3)):
        flat[index] = draw(st.booleans())
    return _nest(flat, shape)


@settings(max_examples=300, deadline=None)
@given(nested_values())
def test_first_boolean_is_the_first_true_or_false_of_a_plain_walk(data):
    numbers = np.asarray(data)
    flat = _walk(data)
    expected = next(
        ((i, "true" if v else "false") for i, v in enumerate(flat) if isinstance(v, bool)),
        None,
    )
    if numbers.dtype.kind == "b":
        expected = None  # all booleans: the datatype check refuses those for numbers
    assert first_boolean(data, numbers) == expected


TOKENS = st.sampled_from(
    ["true", "false", "null", "1.5", "-2e-05", "NaN", "Infinity", '"inputs"', '"url"', "0"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=200), st.integers(0, 3))
def test_may_hold_booleans_whenever_the_text_holds_true_or_false(tokens, padding):
    """Never False for a text holding ``true`` or ``false`` (a plain search is the
    second implementation); False for numbers alone."""
    text = (" " * padding + "[" + ", ".join(tokens) + "]").encode()
    if b"true" in text or b"false" in text:
        assert may_hold_booleans(text)
    if not any(t in tokens for t in ("true", "false", "null", '"inputs"', '"url"')):
        assert not may_hold_booleans(text)


def test_may_hold_booleans_on_requests():
    numbers = (
        b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0, 1, 0.5]}]}'
    )
    assert not may_hold_booleans(numbers)
    assert may_hold_booleans(numbers.replace(b"0.5", b"true"))
    assert may_hold_booleans(numbers.replace(b"0.5", b"false"))
    assert may_hold_booleans(b'{"data": [' + b'"lulu", ' * 100 + b"0]}")  # strings: walk
