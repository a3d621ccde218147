"""Domain errors of the service. They carry no HTTP status: the API maps them in one
place (``service/api/errors.py``)."""

from __future__ import annotations

# What a client hears of a failure that is the server's own (the details go to its log).
INTERNAL_ERROR = "internal server error; see the server log"


class ServiceError(Exception):
    """Base class; ``str(error)`` is the message clients see."""


class InvalidInput(ServiceError):
    """The request is malformed or does not fit the model (shape, dtype, data)."""


class ValidationFailed(InvalidInput):
    """A request checked against a model without running it; lists every problem."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class ModelRejected(InvalidInput):
    """An uploaded model file that is refused (format, safety, corrupt); nothing is stored."""


class ParityFailed(ServiceError):
    """An uploaded Keras-family model whose ONNX export does not match the reference."""


class Unauthorized(ServiceError):
    """No credentials, or not a Bearer token, for an endpoint that needs one."""


class InvalidToken(Unauthorized):
    """A Bearer token that is none of the server's: the caller is not identified (401
    with RFC 6750's ``error="invalid_token"``; gRPC's UNAUTHENTICATED)."""

    bearer_error = "invalid_token"


class AmbiguousCredentials(Unauthorized):
    """A request with more than one Authorization header: a singleton field (RFC 9110),
    of which a proxy and this server could each read another (400 with RFC 6750's
    ``error="invalid_request"``; gRPC's INVALID_ARGUMENT)."""

    bearer_error = "invalid_request"


class Forbidden(ServiceError):
    """A caller identified but not allowed: the API token on an admin endpoint (RFC
    6750's ``insufficient_scope``), or an admin endpoint asked from a non-loopback client
    while no admin token is configured."""


class InsufficientScope(Forbidden):
    """The API token on an admin endpoint (403 with RFC 6750's
    ``error="insufficient_scope"``)."""

    bearer_error = "insufficient_scope"


class ReadOnlyRepository(Forbidden):
    """A change to the model repository asked of a server that serves it read-only."""


class IdempotencyKeyReused(ServiceError):
    """An ``Idempotency-Key`` already used for a different request to this model."""


class Conflict(ServiceError):
    """The resource is busy (e.g. a benchmark is already running)."""


class ModelNotFound(ServiceError):
    """No such model, or no such version of it."""


class ModelNotReady(ServiceError):
    """The model (or the server) is loading, unloading or draining."""


class QueueFull(ServiceError):
    """The model's queue is at its bound; retry later."""


class QueueTimeout(ServiceError):
    """The request waited in the queue longer than its timeout."""


class PayloadTooLarge(ServiceError):
    """The body, or a tensor it describes, exceeds the size limit."""


class InsufficientStorage(ServiceError):
    """The server has no room (memory-backed or temporary files) to take a request now."""


class NotSupported(ServiceError):
    """A protocol feature this server does not implement (e.g. TF Serving :classify)."""


class ModelLoadError(ServiceError):
    """A model version could not be loaded (corrupt file, provider fallback, ...)."""


class InferenceFailed(ServiceError):
    """onnxruntime failed while running a valid request."""


class ModelRefusedInput(InvalidInput, InferenceFailed):
    """onnxruntime refused a request's values while running (INVALID_ARGUMENT, e.g. an
    index out of a Gather's range in an uploaded ONNX model): the client's error, a 400;
    like any failed run it is retried alone when it was merged with other requests."""
