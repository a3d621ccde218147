"""The largest request body a model can need, derived from its input shapes and batch
limit, so that a body no valid request could have is refused from its ``Content-Length``
(413) before a byte of it is read or decoded.

A value takes at most ``JSON_BYTES_PER_VALUE`` bytes as JSON, generous enough for any
number written in full precision with pretty-printing (``-1.2345678901234567e-308,`` and
its indentation); the binary extension needs less. A model with a variable dimension
(other than the batch), a string (BYTES) input or no batch limit has no bound of its own:
the server's ``max_request_bytes`` applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from layerserve.service.runtime import LoadedModel

JSON_BYTES_PER_VALUE = 64
ALLOWANCE_BYTES = 64 * 1024  # names, shapes, parameters and requested outputs
SERVER_LIMIT = "the server's maximum request size (LAYERSERVE_MAX_REQUEST_BYTES)"


@dataclass(frozen=True)
class BodyLimit:
    size: int
    reason: str  # what the size is, for the 413's message


def model_body_limit(model: LoadedModel, server_limit: int) -> BodyLimit:
    """The body limit of inference requests for ``model``."""
    rows = model.config.max_batch_size if model.batched else 1
    per_row = 0
    for spec in model.inputs:
        dims = spec.shape[1:] if model.batched else spec.shape
        if spec.datatype == "BYTES" or any(d < 0 for d in dims):
            return BodyLimit(server_limit, SERVER_LIMIT)
        per_row += math.prod(dims)
    size = rows * per_row * JSON_BYTES_PER_VALUE + ALLOWANCE_BYTES
    if size >= server_limit:
        return BodyLimit(server_limit, SERVER_LIMIT)
    return BodyLimit(
        size,
        f"the most a request for model '{model.name}' can need: {rows} row(s) of "
        f"{per_row} values, at most {JSON_BYTES_PER_VALUE} bytes a value as JSON",
    )
