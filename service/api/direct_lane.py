"""The direct lane's answers to V2 ``infer`` and TF Serving ``:predict`` requests.

The connection collects a plain inference request's body and asks for its response here
(``DirectRequest`` in ``service/http_protocol.py``), without ASGI. The answer is the one the
inference fast lane gives (``api/fast_lane.py``): the same request id and access log line
(``api/request_log.py``), the same decoding, data plane call and encoding as the V2 and TF
Serving routes (``api/v2.py``, ``api/tfserving.py``), the same error bodies and statuses
(``api/errors.py``), and a request refused before it reached the batcher is counted as
that middleware counts it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from layerserve.errors import LayerserveError
from layerserve.service.access import client_address
from layerserve.service.api.errors import (
    error_response,
    report_service_error,
    service_error_response,
)
from layerserve.service.api.request_log import (
    CLIENT_ERRORS,
    HEADER,
    incoming_id,
    log_request,
    new_request_id,
    url_path,
)
from layerserve.service.batcher import Admission
from layerserve.service.body_limits import model_body_limit
from layerserve.service.dataplane import DataPlane
from layerserve.service.direct_requests import DirectCycle, DirectRequest, Headers
from layerserve.service.errors import INTERNAL_ERROR, ServiceError
from layerserve.service.http_protocol import CLIENT_CLOSED_REQUEST, CUT_BY_SHUTDOWN, JSON_TYPE
from layerserve.service.protocols import tfserving, v2
from layerserve.service.protocols.body import check_declared_size
from layerserve.service.request_context import RequestContext, current_request
from layerserve.service.runtime import LoadedModel

Answer = tuple[int, Headers, bytes]

log = logging.getLogger("layerserve.service")
METHOD = "POST"  # the shedder admits POST requests only


class DirectLane:
    """Makes the ``DirectRequest`` of an admitted V2 ``infer`` or TF Serving ``:predict``
    request."""

    def __init__(self, app: FastAPI) -> None:
        self.plane: DataPlane = app.state.dataplane
        self.max_request_bytes: int = app.state.settings.max_request_bytes
        self.access_log: bool = app.state.settings.access_log

    def takes(self, model: LoadedModel, headers: Headers, tf_serving: bool) -> bool:
        """Whether the lane takes the request: one its head already refuses (a body
        declared larger than the model takes, a malformed Inference-Header-Content-Length)
        is left to the application, which answers it before the body arrives."""
        try:
            if not tf_serving:
                v2.header_length(_values(headers, v2.HEADER_LENGTH_BYTES))
            self._check_declared_size(model, headers)
        except ServiceError:
            return False
        return True

    def request(
        self,
        model: LoadedModel,
        version: str | None,
        admission: Admission,
        url: bytes,
        tf_serving: bool = False,
    ) -> DirectRequest:
        """``version``: as the path names it (None for the latest); ``tf_serving``: a
        ``:predict`` request, else a V2 ``infer`` one."""
        infer = self._predict if tf_serving else self._infer
        answer = functools.partial(self._answer, infer, model, version, admission, url)
        return DirectRequest(admission, answer, functools.partial(self._abandoned, url))

    def _abandoned(
        self, url: bytes, headers: Headers, peer: str | None, started: float, status: int
    ) -> None:
        """The log line of a request whose body never came whole (``status``: 408 or 499),
        as the application writes it (``api/request_log.py``)."""
        if self.access_log:
            request_id = incoming_id(headers) or new_request_id()
            log_request(
                request_id, METHOD, url_path(url), status, started, client_address(peer, headers)
            )

    async def _answer(
        self,
        infer: Callable[[LoadedModel, Admission, bytes, Headers], Awaitable[Answer]],
        model: LoadedModel,
        version: str | None,
        admission: Admission,
        url: bytes,
        body: bytes,
        headers: Headers,
        peer: str | None,
        cycle: DirectCycle,
    ) -> Answer:
        started = cycle.started
        request_id = incoming_id(headers) or new_request_id()
        context = RequestContext(request_id, started=started)
        token = current_request.set(context)
        path = url_path(url)
        try:
            try:
                status, response_headers, content = await infer(model, admission, body, headers)
            except ServiceError as exc:
                report_service_error(METHOD, path, exc)
                status, response_headers, content = _parts(service_error_response(exc))
            except LayerserveError as exc:
                status, response_headers, content = _parts(error_response(400, str(exc)))
            except Exception:  # noqa: BLE001 - the last line of defence, as in the application
                log.exception("unexpected error in %s %s", METHOD, path)
                status, response_headers, content = _parts(error_response(500, INTERNAL_ERROR))
            except asyncio.CancelledError:  # past the exit timeout, as the application logs it
                if self.access_log:
                    cut = CLIENT_CLOSED_REQUEST if cycle.disconnected else CUT_BY_SHUTDOWN
                    client = client_address(peer, headers)
                    log_request(request_id, METHOD, path, cut, started, client)
                raise
            finally:
                admission.release()
            if status in CLIENT_ERRORS and not context.accounted:
                self.plane.count_failure(model.name, version, "OTHER")
            if self.access_log:  # a client gone before its answer hears nothing: 499
                heard = CLIENT_CLOSED_REQUEST if cycle.disconnected else status
                client = client_address(peer, headers)
                log_request(request_id, METHOD, path, heard, started, client)
        finally:
            current_request.reset(token)
        response_headers.append((HEADER, request_id.encode("ascii")))
        return status, response_headers, content

    async def _infer(
        self, model: LoadedModel, admission: Admission, body: bytes, headers: Headers
    ) -> Answer:
        """A V2 ``infer`` request, as ``api/v2.py`` answers it."""
        # checked with the body's declared size before the lane took the request (takes)
        header_length = v2.header_length(_values(headers, v2.HEADER_LENGTH_BYTES))
        parsed = await self.plane.decoder.decode(
            v2.decode_request,
            body,
            header_length,
            model,
            self.max_request_bytes,
            json_bytes=header_length,
        )
        outputs = await self.plane.infer(model, parsed.inputs, parsed.timeout_us, admission)
        content, json_length = await self.plane.decoder.encode(
            v2.encode_response,
            model,
            parsed,
            outputs,
            text_values=v2.text_values(model, parsed, outputs),
        )
        if json_length is None:
            return 200, [JSON_TYPE], content
        binary = [
            (b"content-type", b"application/octet-stream"),
            (v2.HEADER_LENGTH_BYTES, b"%d" % json_length),
        ]
        return 200, binary, content

    async def _predict(
        self, model: LoadedModel, admission: Admission, body: bytes, headers: Headers
    ) -> Answer:
        """A TF Serving ``:predict`` request, as ``api/tfserving.py`` answers it (the
        shedder admits ``:predict`` paths only, so the method needs no check; the body's
        declared size was checked before the lane took the request)."""
        parsed = await self.plane.decoder.decode(tfserving.decode_predict, body, model)
        outputs = await self.plane.infer(model, parsed.inputs, admission=admission)
        content = await self.plane.decoder.encode(
            tfserving.encode_predict,
            model,
            parsed,
            outputs,
            text_values=tfserving.answer_values(model, parsed, outputs),
        )
        return 200, [JSON_TYPE], content

    def _check_declared_size(self, model: LoadedModel, headers: Headers) -> None:
        """413 for a body larger than any valid request for ``model``, as the routes'
        ``decode_inference_body`` refuses it."""
        limit = model_body_limit(model, self.max_request_bytes)
        check_declared_size(_header(headers, b"content-length"), limit.size, limit.reason)


def _values(headers: Headers, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key == name]


def _header(headers: Headers, name: bytes) -> str | None:
    """The first value of a header (names are lower case), as Starlette reads it."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _parts(response: JSONResponse) -> tuple[int, Headers, bytes]:
    """Status, headers (without Content-Length, which the connection writes) and body of
    one of the application's error responses."""
    raw = [(n, v) for n, v in response.raw_headers if n != b"content-length"]
    return response.status_code, raw, bytes(response.body)
