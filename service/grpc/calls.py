"""What one gRPC call's log line and access check read: its text metadata, its peer's
address (both read once per connection and metadata, :class:`Callers`), and the access-log
line written when the call ends (REST's fields, method ``gRPC``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc

from layerserve.service.access import client_address
from layerserve.service.api.request_log import incoming_id

request_log = logging.getLogger("layerserve.service.requests")
CALLERS_KEPT = 64  # (metadata, peer) pairs: about one a connection of a busy client
CALLER_METADATA_CHARS = 4096  # longer metadata is read again for every call, not kept
REQUEST_ID_KEY = "x-request-id"


def text_entries(metadata: Any) -> list[tuple[str, str]]:
    """The text entries of the invocation metadata (binary ``-bin`` values skipped)."""
    return [(k.lower(), v) for k, v in metadata if isinstance(v, str)]


def peer_host(peer: str | None) -> str | None:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` -> the address; None otherwise
    (a Unix socket peer is not loopback for the admin check, as for REST)."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return None


@dataclass(frozen=True)
class CallLog:
    """What a call's access-log line says besides its status."""

    request_id: str
    path: str
    started: float
    host: str | None


def log_call(record: CallLog, code: grpc.StatusCode) -> None:
    duration = round((time.perf_counter() - record.started) * 1000, 2)
    fields = {
        "request_id": record.request_id,
        "method": "gRPC",
        "path": record.path,
        "status": code.name,
        "duration_ms": duration,
        "client": record.host or "-",
    }
    request_log.info(
        "request_id=%s method=gRPC path=%s status=%s duration_ms=%.2f client=%s",
        record.request_id,
        record.path,
        code.name,
        duration,
        fields["client"],
        extra={"fields": fields},
    )


@dataclass(frozen=True, slots=True)
class Caller:
    """What a call's metadata and peer say of its caller."""

    request_id: str | None  # the client's x-request-id, when it is a sane token
    host: str | None  # its address (behind a loopback proxy, the one the proxy names)
    authorizations: tuple[str, ...]  # the ``authorization`` metadata, for the access check


def read_caller(metadata: Any, peer: str | None) -> Caller:
    text = text_entries(metadata)
    return Caller(
        incoming_id((k.encode(), v.encode()) for k, v in text),
        client_address(peer_host(peer), ((k.encode(), v.encode("latin-1")) for k, v in text)),
        tuple(v for k, v in text if k == "authorization"),
    )


class Callers:
    """The callers of recent calls, by their metadata and peer: a client's calls on one
    connection carry the same metadata call after call, so it is read once. Metadata with
    an ``x-request-id`` of its own (new with every call) or longer than
    ``CALLER_METADATA_CHARS`` is read every time and not kept; at most ``CALLERS_KEPT``
    are."""

    def __init__(self) -> None:
        self._known: dict[tuple[Any, str | None], Caller] = {}

    def of(self, metadata: Any, peer: str | None) -> Caller:
        key = (metadata, peer)
        try:
            caller = self._known.get(key)
        except TypeError:  # metadata given as a list cannot be a key
            return read_caller(metadata, peer)
        if caller is None:
            caller = read_caller(metadata, peer)
            if _keepable(metadata):
                if len(self._known) >= CALLERS_KEPT:
                    self._known.clear()
                self._known[key] = caller
        return caller


def _keepable(metadata: Any) -> bool:
    size = 0
    for key, value in metadata:
        if key.lower() == REQUEST_ID_KEY:
            return False
        size += len(key) + len(value)
    return size <= CALLER_METADATA_CHARS
