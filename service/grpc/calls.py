"""What one gRPC call's log line and access check read: its text metadata, its peer's
address, and the access-log line written when the call ends (REST's fields, method
``gRPC``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc

request_log = logging.getLogger("layerserve.service.requests")


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
