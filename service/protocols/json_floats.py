"""Numbers in JSON bodies. Non-finite floats: the ``NaN``, ``Inf``, ``Infinity``, ``-Inf``
and ``-Infinity`` tokens, which strict JSON lacks. Both protocols read and write them as
their reference servers do: Triton parses and writes JSON with rapidjson's
``kParseNanAndInfFlag`` and ``kWriteNanAndInfFlag`` (``triton/common/triton_json.h``), TF
Serving with ``json_tensor.cc``. A body holding them is read by rapidjson itself
(python-rapidjson), which also refuses a number too large for a double (``1e400``), as
they do; tritonclient (python-rapidjson) and Python's ``json`` read the written tokens
back. orjson alone would refuse them in requests and write ``null`` in responses, which
loses the value (and the sign of an infinity). Booleans among numbers: NumPy reads
``[0.5, true]`` as ``[0.5, 1.0]``, so a numeric input's values are checked for them."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import numpy as np
import orjson
import rapidjson

NON_FINITE_TOKEN = re.compile(rb"NaN|Inf")
_FRAGMENTS = {
    "nan": orjson.Fragment(b"NaN"),
    "inf": orjson.Fragment(b"Infinity"),
    "-inf": orjson.Fragment(b"-Infinity"),
}


def snippet(value: Any, limit: int = 60) -> str:
    """A value of a request as JSON spells it (``true``, ``null``, ``"a"``, ``NaN``), cut
    to ``limit`` characters, for error messages."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def loads(body: bytes | bytearray | memoryview) -> Any:
    """orjson, or rapidjson when the body uses the non-finite tokens. Raises ValueError
    (both parsers' decode errors are ValueErrors) or RecursionError."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if not NON_FINITE_TOKEN.search(body):
            raise
    text = body if isinstance(body, bytes | bytearray) else bytes(body)
    document = rapidjson.loads(text, number_mode=rapidjson.NM_NAN)
    if LONG_DIGITS.search(text):
        document = _as_orjson_reads(document)
    return document


# A run of digits long enough for an integer past 64 bits (19 digits reach past 2**63).
LONG_DIGITS = re.compile(rb"\d{19}")
_INTEGERS = (-(2**63), 2**64 - 1)


def _as_orjson_reads(value: Any) -> Any:
    """rapidjson's Python integers past 64 bits as the doubles orjson (and Triton's C++
    rapidjson) reads them: a request reads the same whether or not it holds a NaN."""
    if isinstance(value, list):
        return [_as_orjson_reads(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_orjson_reads(item) for key, item in value.items()}
    if type(value) is int and not _INTEGERS[0] <= value <= _INTEGERS[1]:
        try:
            return float(value)
        except OverflowError:  # past the largest double: refused, as rapidjson refuses 1e400
            raise ValueError(
                f"Number too big to be stored in double: an integer of {len(str(value))} digits"
            ) from None
    return value


def with_tokens(array: np.ndarray) -> Any:
    """A float array for ``orjson.dumps`` (with ``OPT_SERIALIZE_NUMPY``): the array itself
    when every value is finite, else nested lists in which each non-finite value is its
    token (rows without one stay arrays)."""
    if array.ndim == 0:
        value = array[()]
        return value if np.isfinite(value) else _FRAGMENTS[str(float(value))]
    if np.isfinite(array).all():
        return array
    return [with_tokens(array[i, ...]) for i in range(array.shape[0])]


def may_hold_booleans(text: bytes | bytearray | memoryview | str) -> bool:
    """Whether JSON ``text`` may hold a ``true`` or ``false``, found with the ``u`` and the
    ``l`` of those words (``memchr`` speed): numbers never hold either letter, so in a
    request of numbers they appear only in its keys and names, a handful of times. Past
    64 of them (strings), True: the values are then walked (``first_boolean``)."""
    if not isinstance(text, (bytes, bytearray)):
        return True  # no find() to scan with: the values tell
    for letter, word in ((b"u", b"true"), (b"l", b"false")):
        at, seen = text.find(letter), 0
        while at != -1:
            if text[at - 2 : at - 2 + len(word)] == word:
                return True
            seen += 1
            if seen > 64:
                return True
            at = text.find(letter, at + 1)
    return False


def first_boolean(data: Any, numbers: np.ndarray) -> tuple[int, str] | None:
    """The flat index of the first JSON ``true`` or ``false`` in ``data`` and that word:
    ``data`` is what NumPy read as the numeric array ``numbers``, where a boolean became 1
    or 0. None when there is none. Triton and TF Serving refuse a boolean for a numeric
    input, and so does layerserve. Only data holding a 0 or a 1 is walked (an array
    compare first; callers also skip data whose request text names no boolean,
    ``may_hold_booleans``)."""
    if numbers.dtype.kind == "b":
        return None
    if numbers.ndim == 0:  # a bare value, no list to walk
        return (0, "true" if data else "false") if isinstance(data, bool) else None
    if not (np.count_nonzero(numbers == 0) or np.count_nonzero(numbers == 1)):
        return None  # count_nonzero: half what .any() costs on a small array
    values: Any = data
    for _ in range(numbers.ndim - 1):  # nested lists, flattened level by level in C
        values = itertools.chain.from_iterable(values)
    if bool not in set(map(type, values)):
        return None
    flat = np.asarray(data, dtype=object).reshape(-1)
    index = next(i for i, value in enumerate(flat) if isinstance(value, bool))
    return index, "true" if flat[index] else "false"
