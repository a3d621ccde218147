"""What a connection and the code that answers requests without the ASGI application
(the direct lane: ``http_protocol.py``, ``api/direct_lane.py``) agree on: the shedder that
admits a request from its head, the request it admits, and the cycle that stands in for
uvicorn's while the connection answers it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]
# ``shed(path, headers, peer)``: ``(status, body, headers)`` to answer the request from its
# head (its headers with the Content-Type), a ``DirectRequest`` to answer it in the direct
# lane, an object to pass to the application in the scope under ``ADMISSION_KEY``, or None.
# ``peer``: the client's address, as the connection sees it.
Shedder = Callable[[bytes, Headers, str | None], object]
# ``answer(body, headers, peer, cycle)``: the response's ``(status, headers, body)``
# (``cycle``: the request's ``DirectCycle``, which tells when its head arrived and whether
# its client has left); it raises nothing and releases the request's admission.
DirectAnswer = Callable[
    [bytes, Headers, str | None, "DirectCycle"], Awaitable[tuple[int, Headers, bytes]]
]


@dataclass(slots=True)
class DirectRequest:
    """An inference request admitted from its head for the direct lane (``http_protocol.py``):
    ``admission`` goes to the application when the request is not plain enough for it;
    ``abandoned(headers, peer, started, status)`` is told of a request whose body never
    came whole: ``status`` 408 when it stalled (and was answered so), else
    ``CLIENT_CLOSED_REQUEST``."""

    admission: object
    answer: DirectAnswer
    abandoned: Callable[[Headers, str | None, float, int], None]


class _Unwaited:
    """The message event of a request in the direct lane: nothing waits on it."""

    def set(self) -> None:
        pass


class DirectCycle:
    """Stands in for uvicorn's request-response cycle while a request is in the direct
    lane: uvicorn queues pipelined requests behind it, a drain clears ``keep_alive`` and a
    lost connection sets ``disconnected``, as they do for its own cycles."""

    __slots__ = ("response_started", "response_complete", "disconnected", "keep_alive", "started")
    message_event = _Unwaited()

    def __init__(self, keep_alive: bool) -> None:
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = keep_alive
        self.started = time.perf_counter()  # when the head arrived
