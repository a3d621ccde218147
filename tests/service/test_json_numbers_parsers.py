"""A JSON body reads the same whether orjson reads it or, because it holds a ``NaN`` or
``Infinity`` token, rapidjson does: integers past 64 bits become the doubles orjson
makes of them, floats keep every bit. Checked against orjson itself on the same numbers
without the token, over random integers of any size and random doubles."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.service.protocols.json_floats import loads

NUMBERS = st.lists(
    st.one_of(
        st.integers(min_value=-(10**40), max_value=10**40),
        st.integers(min_value=10**300, max_value=10**320),  # past the largest double too
        st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
        st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(NUMBERS)
def test_numbers_beside_a_nan_read_as_orjson_reads_them(numbers):
    text = ", ".join(orjson.dumps(n).decode() if isinstance(n, float) else str(n) for n in numbers)
    try:
        expected = orjson.loads(f'{{"data": [{text}]}}')["data"]
    except ValueError:  # a number past the largest double: refused by both
        with pytest.raises(ValueError, match="too big to be stored in double"):
            loads(f'{{"data": [{text}, NaN], "id": "x"}}'.encode())
        return
    got = loads(f'{{"data": [{text}, NaN], "id": "x"}}'.encode())["data"]
    assert math.isnan(got.pop())
    assert [type(v) for v in got] == [type(v) for v in expected]
    assert got == expected
