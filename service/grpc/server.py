"""The gRPC server: ``inference.GRPCInferenceService``, the standard health service
(``grpc.health.v1``, SERVING while the server is ready, for Kubernetes gRPC probes) and
server reflection (for ``grpcurl``), on ``grpc_port``, in the event loop and process of the
HTTP server, sharing its data plane.

A single process listens at start-up, so that ServerLive answers while the models load;
a worker of several listens once its models are loaded, on its own ``SO_REUSEPORT``
socket, as it does for HTTP (``service/server.py``). On shutdown the server stops
accepting calls and lets those in flight finish within ``exit_timeout_seconds``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from layerserve.service.access import AccessPolicy
from layerserve.service.grpc import reflection_v1
from layerserve.service.grpc import tfserving as tfserving_grpc
from layerserve.service.grpc.http2.server import Http2Server
from layerserve.service.grpc.pool import POOL, ReflectedPool, hold
from layerserve.service.grpc.servicer import SERVICE_NAME, InferenceServicer
from layerserve.service.grpc.servicer import add_to_server as add_inference_service

log = logging.getLogger("layerserve.service")
HEALTH_POLL_SECONDS = 0.2  # how soon the health service follows readiness (drain, loads)
# A health service name for liveness probes: SERVING whenever a worker's event loop
# answers, ready or not (Kubernetes: grpc probe with service "liveness").
LIVENESS_SERVICE = "liveness"


class ReadinessHealth(health.aio.HealthServicer):
    """The standard health service; a Check reads the readiness at that moment (a Watch
    follows it within ``HEALTH_POLL_SECONDS``)."""

    def __init__(self, plane: Any) -> None:
        super().__init__()
        self.plane = plane
        # "" (the server as a whole) and every service the port serves, as reflection
        # lists them: a probe may name any of them
        self.services: tuple[str, ...] = ("", SERVICE_NAME)

    async def follow_readiness(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.plane.ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in self.services:
            await self.set(service, status)
        await self.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        await self.follow_readiness()
        return await super().Check(request, context)


class GrpcServer:
    def __init__(self, app: Any, policy: AccessPolicy, worker: bool) -> None:
        self.app = app
        self.settings = app.state.settings
        self.policy = policy
        self.worker = worker
        self.server: grpc.aio.Server | Http2Server | None = None
        self.servicer: InferenceServicer | None = None
        self.health = ReadinessHealth(app.state.dataplane)
        self._health_task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"{host}:{self.settings.grpc_port}"

    async def start(self) -> None:
        """Listen (once); a port that cannot be bound fails the start-up."""
        if self.server is not None:
            return
        limit = self.settings.grpc_max_message_bytes
        server: grpc.aio.Server | Http2Server
        if self.settings.grpc_server == "http2":
            # Workers share the port; a single server must not share it with another.
            server = Http2Server(
                limit,
                reuse_port=self.worker,
                max_connections=self.settings.max_connections,
                stall_seconds=self.settings.body_timeout_seconds,
                idle_seconds=self.settings.grpc_max_connection_idle_seconds,
            )
        else:
            options = [
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 1 if self.worker else 0),
                (
                    "grpc.max_connection_idle_ms",
                    int(self.settings.grpc_max_connection_idle_seconds * 1000),
                ),
            ]
            server = grpc.aio.server(options=options)
        self.servicer = InferenceServicer(self.app, self.policy)
        add_inference_service(self.servicer, server)
        tfserving_names = tfserving_grpc.add_to_server(self.app, self.policy, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        names = (SERVICE_NAME, *tfserving_names, health_name)
        self.health.services = ("", SERVICE_NAME, *tfserving_names)
        # Reflection describes every service it lists from POOL: health's and its own
        # protos are in protobuf's default pool.
        hold(health_pb2.DESCRIPTOR)
        hold(reflection_pb2.DESCRIPTOR)
        # The asyncio reflection servicer, which enable_server_reflection picks only for a
        # grpc.aio.Server; it answers as v1alpha and as v1.
        reflecting = reflection.aio.ReflectionServicer(
            (*names, reflection.SERVICE_NAME, reflection_v1.SERVICE_NAME),
            pool=ReflectedPool(POOL),
        )
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflecting, server)
        reflection_v1.add_to_server(reflecting, server)
        hint = " (another server is listening there; choose --grpc-port)"
        try:
            if isinstance(server, Http2Server):
                host = self.settings.host
                await server.start(host, self.settings.grpc_port)
            else:
                server.add_insecure_port(self.address)
                await server.start()
        except (RuntimeError, OSError) as exc:
            raise RuntimeError(f"cannot listen for gRPC on {self.address}: {exc}{hint}") from exc
        self.server = server
        await self.health.follow_readiness()
        self._health_task = asyncio.create_task(self._follow_readiness())
        log.info("gRPC (inference.GRPCInferenceService) on %s", self.address)

    async def _follow_readiness(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_POLL_SECONDS)
            await self.health.follow_readiness()

    def begin_stop(self) -> asyncio.Task[None] | None:
        """Stop accepting calls now; those in flight finish within the exit timeout, and
        open streams end once they answered the requests they read."""
        if self.server is None:
            return None
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop())
        return self._stopping

    async def _stop(self) -> None:
        assert self.server is not None
        await self.health.enter_graceful_shutdown()  # NOT_SERVING for every service
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        grace = self.settings.exit_timeout_seconds or None
        if self.servicer is not None:
            self.servicer.close_streams()
            self.servicer.cut_calls_after(grace)
        await self.server.stop(grace)

    async def stop(self) -> None:
        task = self.begin_stop()
        if task is not None:
            await task
