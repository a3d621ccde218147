"""Starting the service: bind the port first (a busy port fails in a second, not after
the models load), then serve in this process (one worker) or under a supervisor of
worker processes. Kept apart from the application so that a supervisor, which serves
nothing itself, does not import it."""

from __future__ import annotations

import logging
import socket

from layerserve.service import abstract_names
from layerserve.service.logs import configure_logging
from layerserve.service.settings import Settings

log = logging.getLogger("layerserve.service")
LISTEN_BACKLOG = 2048


class PortUnavailable(RuntimeError):
    """The address to listen on cannot be bound (in use, not local, no permission)."""


def bind(host: str, port: int, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A listening socket on ``host:port``, or :class:`PortUnavailable` saying why.
    ``reuse_port``: one of the workers' sockets, among which the kernel spreads the
    connections; ``listen`` False only reserves the address (the supervisor's)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        hint = " (another server is listening there; choose --port)" if exc.errno == 98 else ""
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from exc
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> None:
    """Serve until SIGTERM: in this process with one worker, else under a supervisor."""
    configure_logging(settings.log_level, settings.log_format)
    workers = settings.worker_count()
    settings = settings.model_copy(update={"workers": workers})
    try:
        # Before any model loads: a busy port fails in a second, not after the loading.
        if workers == 1:
            sock = bind(settings.host, settings.port)
        else:
            # A plain bind first: SO_REUSEPORT alone would share the port with another
            # server of this user instead of failing.
            probe = bind(settings.host, settings.port, listen=False)
            port = probe.getsockname()[1]
            probe.close()
            sock = bind(settings.host, port, reuse_port=True, listen=False)
        grpc_reservation = reserve_grpc_port(settings, workers)
        # Held while the server runs: several workers share their addresses (SO_REUSEPORT)
        # with any process of this user, and a second layerserve started while the
        # first's workers load (nothing listens yet) would share them too. (One process
        # listens from the start: a second bind fails without a lock.)
        held = [] if workers == 1 else [hold_address(sock)]
        if grpc_reservation is not None:
            held.append(hold_address(grpc_reservation))
    except PortUnavailable as exc:
        log.error("%s", exc)
        raise SystemExit(1) from exc
    if workers == 1:
        from layerserve.service.server import build_server

        build_server(settings).run(sockets=[sock])
        return
    from layerserve.service.supervisor import Supervisor

    try:
        raise SystemExit(Supervisor(settings, sock).run())
    finally:
        if grpc_reservation is not None:
            grpc_reservation.close()


def hold_address(reservation: socket.socket) -> socket.socket | None:
    """A Unix socket in Linux's abstract namespace named after the address
    ``reservation`` is bound to: one per network namespace, as the address is, gone with
    the process that holds it (however it ends). :class:`PortUnavailable` when another
    layerserve holds it; None where there is no abstract namespace."""
    host, port = reservation.getsockname()[:2]
    try:
        return abstract_names.hold(f"layerserve-address-{host}-{port}")
    except abstract_names.NameTaken:
        raise PortUnavailable(
            f"cannot listen on {host}:{port}: another layerserve server on this machine "
            "serves it (its workers may still be loading their models)"
        ) from None


def reserve_grpc_port(settings: Settings, workers: int) -> socket.socket | None:
    """Fail now when the gRPC port is taken. Several workers: the address stays held
    (bound, not listening, ``SO_REUSEPORT``) while the server runs, as the HTTP port is, and
    each worker listens beside it; one process binds it itself a moment later."""
    if not settings.grpc_port:
        return None
    try:
        bind(settings.host, settings.grpc_port, listen=False).close()
    except PortUnavailable as exc:
        raise PortUnavailable(str(exc).replace("--port", "--grpc-port")) from exc
    if workers == 1:
        return None
    return bind(settings.host, settings.grpc_port, reuse_port=True, listen=False)
