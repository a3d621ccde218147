"""``inference.GRPCInferenceService``: thin methods over the data plane, as the REST routes
of ``service/api/v2.py`` are. One wrapper per call does what REST's middleware does: the
access check (Bearer token in the ``authorization`` metadata, the levels of
``service/access.py``), the request id (``x-request-id`` metadata, echoed in the trailing
metadata), one access-log line, and the mapping of domain errors to gRPC status codes with
their messages unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from layerserve.errors import LayerserveError
from layerserve.service import errors
from layerserve.service.access import AccessPolicy, Level, one_authorization
from layerserve.service.api.request_log import new_request_id
from layerserve.service.grpc import codec, infer_response
from layerserve.service.grpc.calls import Callers, CallLog, log_call
from layerserve.service.grpc.generated import grpc_service_pb2 as pb
from layerserve.service.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from layerserve.service.grpc.infer_request import InferRequest, read_infer_request
from layerserve.service.grpc.status_message import fit
from layerserve.service.metrics import VersionCounts, statistics_json, totals
from layerserve.service.protocols import v2
from layerserve.service.request_context import RequestContext, current_request

log = logging.getLogger("layerserve.service")
request_log = logging.getLogger("layerserve.service.requests")
access_log = logging.getLogger("layerserve.service.access")

# In the order of the exception's MRO: the first class found decides (ModelRefusedInput
# is an InvalidInput before it is an InferenceFailed; ReadOnlyRepository a Forbidden).
STATUS: dict[type[Exception], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.AmbiguousCredentials: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    errors.Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.ParityFailed: grpc.StatusCode.INVALID_ARGUMENT,
    errors.IdempotencyKeyReused: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ModelLoadError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NotSupported: grpc.StatusCode.UNIMPLEMENTED,
    errors.InsufficientStorage: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    errors.QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.QueueTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.InferenceFailed: grpc.StatusCode.INTERNAL,
}
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# Requests of one ModelStreamInfer stream being run or waiting to be sent back at once: past
# it the stream is not read (HTTP/2 flow control holds the client), so a client that
# sends and never reads cannot fill the server's memory with answers.
STREAM_IN_FLIGHT = 64
STREAM_CLOSED = (
    "the server is shutting down: this stream took no request after those answered on it; "
    "send the others on a new stream"
)


def status_of(error: Exception) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    if isinstance(error, LayerserveError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


Handler = Callable[[Any, Any, Any], Awaitable[Any]]


def rpc(level: Level) -> Callable[[Handler], Handler]:
    """A servicer method with REST's access level, request id, log line and errors."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def method(self: InferenceServicer, request: Any, context: Any) -> Any:
            return await self.call(handler, level, request, context)

        return method

    return decorate


def _not_served(name: str, reason: str) -> Handler:
    """An RPC of the protocol that this server answers UNIMPLEMENTED, saying why."""

    async def handler(self: InferenceServicer, request: Any, context: Any) -> Any:
        raise errors.NotSupported(f"{name} is not supported: {reason}")

    handler.__name__ = handler.__qualname__ = name
    return rpc("api")(handler)


SHARED_MEMORY = (
    "this server reads tensors from the request itself (raw_input_contents or contents), "
    "not from shared memory regions"
)
TRACING = (
    "this server does not trace requests; its access log (LAYERSERVE_ACCESS_LOG), "
    "statistics and /metrics say what each model did"
)
LOGGING = (
    "set LAYERSERVE_LOG_LEVEL, LAYERSERVE_LOG_FORMAT and LAYERSERVE_ACCESS_LOG when the "
    "server starts"
)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, app: Any, policy: AccessPolicy) -> None:
        state = app.state
        self.plane = state.dataplane
        self.admin = state.model_admin
        self.metrics = state.metrics
        self.cluster = state.cluster
        self.settings = state.settings
        self.policy = policy
        self._readers: set[asyncio.Task[None]] = set()  # the request readers of open streams
        self._callers = Callers()
        self._closing = False
        self._cut_at: float | None = None  # the loop time gRPC cancels what still runs

    def cut_calls_after(self, grace: float | None) -> None:
        """The server stops now and cancels the calls still running after ``grace``
        seconds (None: it waits for them), answering them UNAVAILABLE."""
        if grace is not None:
            self._cut_at = asyncio.get_running_loop().time() + grace

    def cancelled_code(self, context: Any) -> grpc.StatusCode:
        """The status a call whose handler was cancelled ends with, as its client hears
        it: DEADLINE_EXCEEDED once its deadline passed, UNAVAILABLE once the stopping
        server cut it off, else CANCELLED (the client left)."""
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        if self._cut_at is not None and asyncio.get_running_loop().time() >= self._cut_at:
            return grpc.StatusCode.UNAVAILABLE
        return grpc.StatusCode.CANCELLED

    def close_streams(self) -> None:
        """The end of the drain, as gRPC stops taking calls: every open stream stops
        reading, answers each request it took and ends with UNAVAILABLE, as an HTTP
        connection closes after its answer in flight; a request caught mid-read is not
        run, so every unanswered request can be sent again elsewhere. A stream does not
        hold the shutdown until the exit timeout."""
        self._closing = True
        for reader in list(self._readers):
            reader.cancel()

    async def call(
        self,
        handler: Handler,
        level: Level,
        request: Any,
        context: Any,
        service: str = SERVICE_NAME,
        name: str | None = None,
        ends_later: bool = False,
    ) -> Any:
        """Run ``handler`` as REST's middleware runs a route; ``service`` and ``name``
        (default the handler's) name it in the access log. With ``ends_later`` (a
        stream, past its access check) the call is not over when ``handler`` returns:
        its :class:`CallLog` is returned, for ``log_end`` when the stream ends."""
        name = name or handler.__name__
        started = time.perf_counter()
        metadata = context.invocation_metadata() or ()
        caller = self._callers.of(metadata, context.peer())
        request_id = caller.request_id or new_request_id()
        context.set_trailing_metadata((("x-request-id", request_id),))
        host = caller.host
        request_context = RequestContext(request_id, started=started)
        token = current_request.set(request_context)
        code, message = grpc.StatusCode.OK, ""
        over = True
        try:
            if level == "admin" or (level == "api" and self.policy.checks_api):
                self._check_access(level, caller.authorizations, host, name)
            result = await handler(self, request, context)
            if ends_later:
                over = False
                return CallLog(request_id, f"/{service}/{name}", started, host)
            return result
        except asyncio.CancelledError:  # the client left or the server stopped: no answer
            code = self.cancelled_code(context)
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence, as REST's
            code, message = self._answer_to(exc, request, request_context, name)
        finally:
            current_request.reset(token)
            if over and self.logs_calls:
                log_call(CallLog(request_id, f"/{service}/{name}", started, host), code)
        # raises: the call ends with this status (and the id, which abort would drop)
        await context.abort(code, fit(message), (("x-request-id", request_id),))

    @property
    def logs_calls(self) -> bool:
        return self.settings.access_log and request_log.isEnabledFor(logging.INFO)

    def log_end(self, record: CallLog, code: grpc.StatusCode) -> None:
        """The access-log line of a call, once it has ended with ``code``."""
        if self.logs_calls:
            log_call(record, code)

    def _answer_to(
        self, error: Exception, request: Any, context: RequestContext, name: str
    ) -> tuple[grpc.StatusCode, str]:
        """The gRPC code and message of an error raised by a call, or by one request of a
        stream (REST's message); an inference refused before the batcher took it is
        counted. Called while the error is handled, so an unexpected one is logged with
        its traceback."""
        if isinstance(error, errors.ServiceError):
            code = status_of(error)
            if code is grpc.StatusCode.INTERNAL:
                log.error("gRPC %s failed: %s", name, error)
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
                self._count_invalid(request, context, error)
            return code, str(error)
        if isinstance(error, LayerserveError):
            return grpc.StatusCode.INVALID_ARGUMENT, str(error)
        log.exception("unexpected error in gRPC %s", name)
        return grpc.StatusCode.INTERNAL, errors.INTERNAL_ERROR

    def _check_access(
        self, level: Level, authorizations: tuple[str, ...], host: str | None, name: str
    ) -> None:
        try:
            authorization = one_authorization([a.encode() for a in authorizations])
            self.policy.check(level, authorization, host)
        except (errors.Unauthorized, errors.Forbidden) as exc:
            access_log.info(
                "access denied: gRPC %s from %s: %s", name, host or "-", type(exc).__name__
            )
            raise

    def _count_invalid(self, request: Any, context: RequestContext, error: Exception) -> None:
        """An inference refused before the batcher took it counts as a failure (OTHER)
        of its model version, as REST counts its 400 and 413 answers (not a refusal of its
        credentials: that is no inference)."""
        if isinstance(error, errors.Unauthorized):
            return
        if isinstance(request, InferRequest) and not context.accounted:
            message = request.message
            self.plane.count_failure(message.model_name, message.model_version or None, "OTHER")

    # ---- server --------------------------------------------------------------------------
    @rpc("open")
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self.plane.live)

    @rpc("open")
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.ready)

    @rpc("open")
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**self.plane.server_metadata())

    # ---- models --------------------------------------------------------------------------
    @rpc("api")
    async def ModelReady(self, request: Any, context: Any) -> Any:
        """False for an unknown or loading model (the HTTP client's ``is_model_ready``
        says False for REST's 404 and 503 too)."""
        try:
            self.plane.model(request.name, request.version or None)
        except (errors.ModelNotFound, errors.ModelNotReady):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @rpc("api")
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        model = self.plane.model(request.name, request.version or None)
        return codec.model_metadata(v2.tensor_metadata(model, self._versions(request.name)))

    @rpc("api")
    async def ModelConfig(self, request: Any, context: Any) -> Any:
        model = self.plane.model(request.name, request.version or None)
        return codec.model_config(v2.model_configuration(model))

    @rpc("api")
    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        """This worker's versions (all, one model's, or one version), with the totals of
        every worker, as REST's statistics extension."""
        name, version = request.name or None, request.version or None
        if name is None and version is not None:
            raise errors.InvalidInput("statistics of a version need the model's name")
        models = self.plane.loaded_models(name, version)
        local = self.metrics.snapshot(self.plane)
        summed = {c.key: c for c in totals([local, *await self.cluster.peer_snapshots()])}
        versions = [
            summed.get((m.name, m.version)) or VersionCounts(m.name, m.version) for m in models
        ]
        return codec.model_statistics(statistics_json(versions))

    def _versions(self, name: str) -> list[str]:
        for state in self.plane.repository.states():
            if state.name == name:
                return sorted(state.versions, key=int)
        return []

    # ---- inference -----------------------------------------------------------------------
    @rpc("api")
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        return await self._infer(request)

    async def ModelStreamInfer(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        """Triton's streaming inference: each request on the stream is answered on it as
        soon as its outputs are ready (a client matches answers by id), the requests run
        at the same time as one another; a request that fails is answered with its
        ``error_message`` (REST's message) and the stream goes on, as Triton does. The
        access check, request id and log line are the stream's, as for one call: the
        line is written when the stream ends, with its status and duration."""
        record = await self.call(
            _stream_opened, "api", None, context, name="ModelStreamInfer", ends_later=True
        )
        code = grpc.StatusCode.UNKNOWN  # what grpc.aio answers for an unexpected error
        try:
            async with contextlib.aclosing(self._stream(requests, context)) as answers:
                async for answer in answers:
                    yield answer
            code = grpc.StatusCode.OK
        except (asyncio.CancelledError, GeneratorExit):  # the client left, or the server
            code = self.cancelled_code(context)
            raise
        except grpc.aio.AbortError:
            code = grpc.StatusCode.UNAVAILABLE  # closed by close_streams
            raise
        finally:
            self.log_end(record, code)

    async def _stream(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        """The answers of one ModelStreamInfer stream, as its requests are answered."""
        answers: asyncio.Queue[Any] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(STREAM_IN_FLIGHT)
        closed = False

        async def answer(request: InferRequest) -> None:
            await answers.put(await self._stream_answer(request))

        async def read() -> None:
            nonlocal closed
            reader = asyncio.current_task()
            assert reader is not None
            self._readers.add(reader)  # close_streams may cancel it from now on
            try:
                try:
                    if self._closing:  # opened as the server closes its streams
                        raise asyncio.CancelledError
                    async for request in requests:
                        await slots.acquire()  # released once its answer is sent
                        task = asyncio.create_task(answer(request))
                        running.add(task)
                        task.add_done_callback(running.discard)
                except asyncio.CancelledError:
                    if not self._closing:
                        raise
                    reader.uncancel()
                    closed = True  # answer what was read, then end with UNAVAILABLE
                finally:
                    self._readers.discard(reader)
                while running:
                    await asyncio.gather(*running)
            finally:
                await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await answers.get()) is not None:
                yield item
                slots.release()
            await reader  # a broken stream raises here
        finally:
            for task in (reader, *running):
                task.cancel()
        if closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, STREAM_CLOSED)

    async def _stream_answer(self, request: InferRequest) -> Any:
        message = request.message
        request_context = RequestContext(message.id or new_request_id())
        token = current_request.set(request_context)
        try:
            return infer_response.stream_infer_response(await self._infer(request))
        except Exception as exc:  # noqa: BLE001 - one request's failure must not end the stream
            _, error = self._answer_to(exc, request, request_context, "ModelStreamInfer")
        finally:
            current_request.reset(token)
        failed = pb.ModelInferResponse(
            id=message.id, model_name=message.model_name, model_version=message.model_version
        )
        return pb.ModelStreamInferResponse(error_message=error, infer_response=failed)

    async def _infer(self, request: InferRequest) -> infer_response.EncodedResponse:
        plane = self.plane
        model = plane.model(request.message.model_name, request.message.model_version or None)
        place = plane.admit(model)
        try:
            parsed = codec.decode_request(request, model, self.settings.grpc_max_message_bytes)
            outputs = await plane.infer(model, parsed.inputs, parsed.timeout_us, place)
            return codec.encode_response(model, parsed, outputs)
        finally:
            place.release()

    # ---- repository extension ------------------------------------------------------------
    @rpc("api")
    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        entries = self.plane.repository.index()
        if request.ready:
            entries = [e for e in entries if e["state"] == "READY"]
        return codec.repository_index(entries)

    @rpc("admin")
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        overrides = sorted(k for k in request.parameters if k == "config" or k.startswith("file:"))
        if overrides:
            raise errors.NotSupported(
                f"load parameters {overrides} are not supported: this server loads models "
                "from the repository directory only"
            )
        await self.admin.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @rpc("admin")
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self.admin.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # ---- what this server does not serve -------------------------------------------------
    SystemSharedMemoryStatus = _not_served("SystemSharedMemoryStatus", SHARED_MEMORY)
    SystemSharedMemoryRegister = _not_served("SystemSharedMemoryRegister", SHARED_MEMORY)
    SystemSharedMemoryUnregister = _not_served("SystemSharedMemoryUnregister", SHARED_MEMORY)
    CudaSharedMemoryStatus = _not_served("CudaSharedMemoryStatus", SHARED_MEMORY)
    CudaSharedMemoryRegister = _not_served("CudaSharedMemoryRegister", SHARED_MEMORY)
    CudaSharedMemoryUnregister = _not_served("CudaSharedMemoryUnregister", SHARED_MEMORY)
    TraceSetting = _not_served("TraceSetting", TRACING)
    LogSettings = _not_served("LogSettings", LOGGING)


async def _stream_opened(servicer: InferenceServicer, request: Any, context: Any) -> None:
    """What a stream's opening runs under ``call``: nothing past its access check."""


def add_to_server(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """The service's generated handlers, but for ModelInfer and ModelStreamInfer, whose
    requests ``read_infer_request`` reads without copying their tensors and whose answers
    ``infer_response`` writes in their wire format."""
    table = _HandlerTable()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, table)
    handlers = table.handlers
    for name in ("ModelInfer", "ModelStreamInfer"):
        handlers[name] = handlers[name]._replace(
            request_deserializer=read_infer_request, response_serializer=infer_response.serialize
        )
    generic = grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
    server.add_generic_rpc_handlers((generic,))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class _HandlerTable:
    """Takes the handlers the generated code would add to a server."""

    handlers: dict[str, grpc.RpcMethodHandler]

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers = dict(handlers)
