"""Who may call what: the access level of each endpoint and the credential check.

Three levels, decided by method and path alone (before routing, so that a refusal is the
same whether the model asked for exists or not; ``/metrics`` is open, as Triton's is, and
its labels name the models served):

- ``admin``: upload, delete, ONNX download and export, load/unload and benchmark. With
  ``LAYERSERVE_ADMIN_TOKEN`` set they need ``Authorization: Bearer <admin token>``; unset,
  they answer loopback clients only (127.0.0.0/8, ::1).
- ``api``: inference, metadata and everything else, unknown paths included. With
  ``LAYERSERVE_API_TOKEN`` set they need the API token or the admin token; unset, open.
- ``open``: ``/v2``, ``/v2/health/*``, ``/metrics`` and the API docs with their assets
  (``/docs/static/*``), always.

Missing credentials (or another scheme than Bearer) are :class:`Unauthorized`, a token
that is none of the server's :class:`InvalidToken` (401 both, RFC 6750: the caller is not
identified); the API token on an admin endpoint (RFC 6750's ``insufficient_scope``), or a
non-loopback client of an admin endpoint while no admin token is set, is
:class:`Forbidden`. Tokens are compared with :func:`hmac.compare_digest` and never appear
in messages.

One rule decides who is local, for the admin check and for the client address the logs
show (:func:`client_address`): a loopback peer is local *and* is the only peer whose
forwarding headers are believed. When it forwards a request (``X-Forwarded-For``, RFC 7239
``Forwarded: for=``), the client is the nearest address of that chain that is not loopback,
so a same-host proxy on any loopback address (127.0.0.2 as much as 127.0.0.1) passes its
remote clients through as remote; an address that cannot be parsed counts as remote, and is
named ``unknown`` (what a client wrote in those headers never reaches a log line).
Behind a same-host proxy that sets neither header every client looks local: set the admin
token there.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from layerserve.service.errors import (
    AmbiguousCredentials,
    Forbidden,
    InsufficientScope,
    InvalidToken,
    Unauthorized,
)
from layerserve.service.settings import TOKEN_RULE, is_token

Level = Literal["admin", "api", "open"]

OPEN_PATHS = frozenset(
    {"/v2", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
_READ_METHODS = frozenset({"GET", "HEAD", "get", "head"})
_RESOURCE_ACTIONS = frozenset({"load", "unload"})


def classify(method: str, path: str) -> Level:
    """The access level of ``method path``; ``path`` is the decoded route path (the ASGI
    ``scope["path"]`` without the root path). Trailing slashes are ignored, since
    routing redirects them to the path without.

    Path parameters match as Starlette matches ``{name}``: one non-empty segment, which
    may hold ``:``. Plain string operations, not regular expressions: this runs on every
    request, inference included."""
    if path.endswith("/"):
        path = path.rstrip("/") or "/"
    if path.startswith("/v2/models/"):  # inference, metadata, statistics: the hot path
        return "api"
    if path in OPEN_PATHS:
        return "open"
    parts = path.split("/")
    if path.startswith("/v1/models/"):
        return _v1_model_level(method, path, parts[3:])
    if path.startswith("/v2/repository/models/"):
        admin = len(parts) == 6 and parts[4] and parts[5] in _RESOURCE_ACTIONS
        return "admin" if admin else "api"
    if path == "/v1/export":
        return "admin"
    if path.startswith("/v2/health/") and len(parts) == 4 and parts[3]:
        return "open"
    if path.startswith("/docs/static/") and len(parts) == 4 and parts[3]:  # the docs' assets
        return "open"
    return "api"


def _v1_model_level(method: str, path: str, rest: list[str]) -> Level:
    """``rest``: the segments after ``/v1/models/``."""
    if path.endswith(":benchmark"):  # /v1/models/{name}[/versions/{version}]:benchmark
        return "admin"
    if not all(rest):  # an empty segment matches no route
        return "api"
    count, versioned = len(rest), len(rest) >= 3 and rest[1] == "versions"
    if rest[-1] == "onnx" and (count == 2 or (count == 4 and versioned)):
        return "admin"  # /v1/models/{name}[/versions/{version}]/onnx
    if count == 1 or (count == 3 and versioned):  # /v1/models/{name}[/versions/{version}]
        if method in _READ_METHODS:
            return "api"
        # TF Serving's ":{method}" routes (":predict", ":mask", ...) come before upload.
        tf_serving_method = ":" in rest[-1][1:-1]
        return "api" if method.upper() == "POST" and tf_serving_method else "admin"
    return "api"


@functools.lru_cache(maxsize=4096)  # asked for every request, of a few peers
def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False for names, None (a Unix
    socket peer) and anything unparsable."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def client_address(peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client a request comes from: ``peer`` (the TCP peer), or, when ``peer`` is
    loopback, the nearest non-loopback address its ``x-forwarded-for`` / ``forwarded``
    headers name (``headers``: the request's ``(name, value)`` pairs, names in lower case,
    in order; the others are not looked at, nor any when ``peer`` is not loopback)."""
    if not is_loopback(peer):
        return peer
    chain: list[str] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            chain.extend(item.strip() for item in value.decode("latin-1").split(","))
        elif name == b"forwarded":  # for=1.2.3.4;proto=http, for="[2001:db8::1]:80"
            for element in value.decode("latin-1").split(","):
                for pair in element.split(";"):
                    key, _, item = pair.strip().partition("=")
                    if key.strip().lower() == "for":
                        chain.append(item.strip().strip('"'))
    for item in reversed(chain):  # the nearest hop is the last one appended
        host = _host_of(item)
        if not is_loopback(host):
            # a hop that is no IP address (RFC 7239's "unknown" or "_hidden", or text a
            # client forged into its headers) is a remote client all the same, and is
            # named "unknown": what a client wrote never reaches a log line
            return host if _is_address(host) else "unknown"
    return peer


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_of(item: str) -> str:
    """``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80`` or ``::1`` without the port."""
    if item.startswith("["):
        return item[1 : item.find("]")] if "]" in item else item
    if item.count(":") == 1:
        return item.split(":", 1)[0]
    return item


_SCHEME = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}")


def one_authorization(values: list[bytes]) -> bytes | None:
    """The request's Authorization header value (``values``: each one it has), None
    without one; :class:`AmbiguousCredentials` for more than one."""
    if len(values) > 1:
        raise AmbiguousCredentials(
            f"the request has {len(values)} Authorization headers; send exactly one"
        )
    return values[0] if values else None


def bearer_token(authorization: bytes | None, expected: str) -> bytes:
    """The token of an ``Authorization: Bearer <token>`` header value (scheme matched
    case-insensitively); :class:`Unauthorized` naming ``expected`` otherwise."""
    needs = f"this endpoint needs 'Authorization: Bearer <{expected}>'"
    if authorization is None:
        raise Unauthorized(f"{needs}; the request has no Authorization header")
    scheme, _, token = authorization.strip().partition(b" ")
    if not scheme:
        raise Unauthorized(f"{needs}; the request's Authorization header is empty")
    if scheme.lower() != b"bearer":
        shown = f"the '{scheme.decode()}'" if _SCHEME.fullmatch(scheme) else "an unrecognised"
        raise Unauthorized(f"{needs}; the request's Authorization header uses {shown} scheme")
    token = token.strip()
    if not token:
        raise Unauthorized(f"{needs}; the request's Bearer token is empty")
    return token


@dataclass(frozen=True)
class AccessPolicy:
    """The configured tokens (UTF-8 bytes, None when unset) and the checks using them."""

    admin_token: bytes | None = None
    api_token: bytes | None = None

    @classmethod
    def from_secrets(cls, admin_token: str | None, api_token: str | None) -> AccessPolicy:
        """Refuses a token that is not one (:func:`is_token`)."""
        tokens = {"LAYERSERVE_ADMIN_TOKEN": admin_token, "LAYERSERVE_API_TOKEN": api_token}
        for variable, token in tokens.items():
            if token is not None and not is_token(token):
                raise ValueError(f"{variable} must be {TOKEN_RULE}; unset it to disable the check")
        return cls(
            admin_token.encode() if admin_token is not None else None,
            api_token.encode() if api_token is not None else None,
        )

    @property
    def checks_api(self) -> bool:
        return self.api_token is not None

    def check(self, level: Level, authorization: bytes | None, client_host: str | None) -> None:
        """Raise :class:`Unauthorized` or :class:`Forbidden` unless the request may pass."""
        if level == "admin":
            self._check_admin(authorization, client_host)
        elif level == "api" and self.api_token is not None:
            token = bearer_token(authorization, "API token")
            # Both comparisons always run: the time taken does not tell which token matched.
            matches = _same(token, self.api_token) | _same(token, self.admin_token)
            if not matches:
                raise InvalidToken("the Bearer token is not valid for this endpoint")

    def _check_admin(self, authorization: bytes | None, client_host: str | None) -> None:
        if self.admin_token is None:
            if not is_loopback(client_host):
                raise Forbidden(
                    "admin endpoints answer loopback clients only while LAYERSERVE_ADMIN_TOKEN "
                    "is unset; set LAYERSERVE_ADMIN_TOKEN on the server and send "
                    "'Authorization: Bearer <admin token>'"
                )
            return
        token = bearer_token(authorization, "admin token")
        # Both comparisons always run: the time taken does not tell which token matched.
        admin, api = _same(token, self.admin_token), _same(token, self.api_token)
        if api and not admin:
            raise InsufficientScope(
                "the API token does not reach this endpoint: it needs the admin token"
            )
        if not admin:
            raise InvalidToken("the Bearer token is not the admin token this endpoint needs")


def _same(given: bytes, expected: bytes | None) -> bool:
    return expected is not None and hmac.compare_digest(given, expected)
