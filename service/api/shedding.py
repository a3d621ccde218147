"""Admitting or refusing inference requests from their head (the connection-level hook
of ``service/http_protocol.py``).

Under overload, the addressed model version's queue and runs are full: the request is
answered 503 with exactly the error the route would give, counted as the route counts
it, without reading its body or starting the application. Otherwise it is admitted
there and then (the admission rides in the ASGI scope to the route, and is released when
the request is answered), so that the requests arriving in one turn of the event loop
cannot all pass the check before any of them is counted. An admitted V2 ``infer`` or TF
Serving ``:predict`` request is offered to the direct lane (``api/direct_lane.py``) with its
admission. Anything else (an unknown
model, a path with escapes, missing credentials) goes to the application as usual, so a
client without the API token learns nothing here.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sys
import time

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from layerserve.service.access import AccessPolicy, client_address, one_authorization
from layerserve.service.api.direct_lane import DirectLane
from layerserve.service.api.request_log import (
    incoming_id,
    log_request,
    new_request_id,
    url_path,
)
from layerserve.service.batcher import Admission
from layerserve.service.dataplane import DataPlane
from layerserve.service.direct_requests import DirectRequest, Headers, Shedder
from layerserve.service.errors import ServiceError
from layerserve.service.http_protocol import ADMISSION_KEY, JSON_TYPE, RETRY_AFTER

_V2 = re.compile(rb"^/v2/models/([^/?#%]+)(?:/versions/([^/?#%]+))?/infer(?:\?.*)?$")
_TF_SERVING = re.compile(rb"^/v1/models/([^/?#%:]+)(?:/versions/([^/?#%:]+))?:predict(?:\?.*)?$")


def shedder(app: FastAPI) -> Shedder:
    plane: DataPlane = app.state.dataplane
    access: AccessPolicy = app.state.access_policy
    access_log: bool = app.state.settings.access_log
    direct = DirectLane(app) if app.state.settings.direct_lane else None
    handoff = GilHandoff()

    def shed(
        url: bytes, headers: Headers, peer: str | None
    ) -> tuple[int, bytes, Headers] | DirectRequest | Admission | None:
        match = _V2.match(url) or _TF_SERVING.match(url)
        if match is None:
            return None
        name = match.group(1).decode()
        version = match.group(2).decode() if match.group(2) else None
        try:
            model = plane.model(name, version)
        except ServiceError:
            return None
        if access.checks_api:
            try:
                authorization = one_authorization([v for k, v in headers if k == b"authorization"])
                access.check("api", authorization, None)
            except ServiceError:
                return None  # the application answers 401/403
        admission = plane.try_admit(model)
        if admission is not None:
            tf_serving = match.re is _TF_SERVING
            if direct is not None and direct.takes(model, headers, tf_serving):
                return direct.request(model, version, admission, url, tf_serving)
            return admission
        started = time.perf_counter()
        error = plane.refuse(model)
        handoff.shedding()
        request_id = incoming_id(headers) or new_request_id()
        if access_log:  # the line every answered request gets
            path = url_path(url)
            log_request(request_id, "POST", path, 503, started, client_address(peer, headers))
        body = _error_body(str(error))
        return (
            503,
            body,
            [JSON_TYPE, (b"retry-after", RETRY_AFTER), (b"x-request-id", request_id.encode())],
        )

    return shed


@functools.lru_cache(maxsize=256)
def _error_body(message: str) -> bytes:
    """The JSON body of a refusal (a model's refusals all say the same)."""
    return orjson.dumps({"error": message})


class GilHandoff:
    """Python's GIL switch interval, shortened while requests are refused.

    Under overload the event loop answers refusal after refusal without ever blocking, and
    the onnxruntime threads that would empty the queue wait for the GIL: Python makes the
    running thread give it up only after the switch interval (5 ms), three times per batch
    (take it, run, hand back the results). The queue then stays full and nearly every
    request is refused. While refusals go on, the interval is ``SHEDDING_SWITCH_SECONDS``;
    it is set back one second after the last refusal (a shorter interval costs about 10%
    of throughput under ordinary load, so it is not kept)."""

    SHEDDING_SWITCH_SECONDS = 0.0001
    RESTORE_AFTER_SECONDS = 1.0

    def __init__(self) -> None:
        self._normal: float | None = None
        self._last = 0.0

    def shedding(self) -> None:
        self._last = time.monotonic()
        if self._normal is None:
            self._normal = sys.getswitchinterval()
            sys.setswitchinterval(self.SHEDDING_SWITCH_SECONDS)
            asyncio.get_running_loop().call_later(self.RESTORE_AFTER_SECONDS, self._check)

    def _check(self) -> None:
        idle = time.monotonic() - self._last
        if idle < self.RESTORE_AFTER_SECONDS:
            asyncio.get_running_loop().call_later(self.RESTORE_AFTER_SECONDS - idle, self._check)
            return
        assert self._normal is not None
        sys.setswitchinterval(self._normal)
        self._normal = None


class ReleaseAdmissions:
    """The outermost ASGI layer: a request admitted from its head that never reached its
    route (refused by access control, say) gives its place back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            admission = scope.get(ADMISSION_KEY)
            if admission is not None:
                admission.release()
