"""Names in Linux's abstract socket namespace, held as locks: an abstract Unix socket
bound to a name is one per network namespace, and gone with the process that holds it
however that process ends (no file to clean up after a crash)."""

from __future__ import annotations

import errno
import socket


class NameTaken(Exception):
    """Another process holds the name."""


def hold(name: str) -> socket.socket | None:
    """The socket holding ``name`` (close it to let go); :class:`NameTaken` when another
    process holds it; None where there is no abstract namespace."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0{name}")
    except OSError as exc:
        claim.close()
        if exc.errno == errno.EADDRINUSE:
            raise NameTaken(name) from None
        return None
    return claim
