"""Booleans among JSON numbers: NumPy reads ``[0.5, true]`` as ``[0.5, 1.0]``, so
``first_boolean`` finds them in what NumPy read as numbers. Checked against a plain walk
of the nested lists, over random shapes, values and positions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.service.protocols.json_floats import first_boolean

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
