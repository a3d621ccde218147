"""Non-finite floats in JSON bodies: the ``NaN``, ``Infinity`` and ``-Infinity`` tokens,
which strict JSON lacks. Both protocols read and write them as their reference servers
do: Triton parses and writes JSON with rapidjson's ``kParseNanAndInfFlag`` and
``kWriteNanAndInfFlag`` (``triton/common/triton_json.h``), TF Serving with
``json_tensor.cc``; tritonclient (python-rapidjson) and Python's ``json`` read them
back. orjson alone would refuse them in requests and write ``null`` in responses,
which loses the value (and the sign of an infinity)."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import orjson

NON_FINITE_TOKEN = re.compile(rb"NaN|Infinity")
_FRAGMENTS = {
    "nan": orjson.Fragment(b"NaN"),
    "inf": orjson.Fragment(b"Infinity"),
    "-inf": orjson.Fragment(b"-Infinity"),
}


def loads(body: bytes) -> Any:
    """orjson, or Python's parser when the body uses the non-finite tokens. Raises
    ValueError (orjson's and json's decode errors are ValueErrors) or RecursionError."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if not NON_FINITE_TOKEN.search(body):
            raise
    return json.loads(body)


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
