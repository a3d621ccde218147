"""The request in progress: its id, when the server began it, and whether the batcher
counts its outcome. A context variable set per request, read by the batcher, the data
plane, the access log and the protocols."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestContext:
    """Set for each request when the server begins it: by the request-log middleware for
    HTTP, by the gRPC servicer for each call and each streamed request."""

    request_id: str
    accounted: bool = False  # the batcher took the request and counts its outcome
    # when the server began the request (perf_counter): a request refused before the
    # batcher counts the time until then as its failure's duration, as Triton does
    started: float = field(default_factory=time.perf_counter)


current_request: ContextVar[RequestContext | None] = ContextVar("layerserve_request", default=None)


def mark_accounted() -> None:
    """Called when a request reaches the batcher, which then counts its success or failure;
    a request failing before that (invalid input) is counted as OTHER by the middleware."""
    context = current_request.get()
    if context is not None:
        context.accounted = True


def request_elapsed_s() -> float:
    """Seconds since the server began the request in progress (0 outside a request)."""
    context = current_request.get()
    return time.perf_counter() - context.started if context is not None else 0.0


def current_request_id() -> str | None:
    context = current_request.get()
    return context.request_id if context is not None else None
