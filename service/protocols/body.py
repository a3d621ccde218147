"""Reading request bodies safely: size caps before and after decompression."""

from __future__ import annotations

import zlib

from layerserve.service.errors import InvalidInput, PayloadTooLarge


def declared_size(content_length: str | None) -> int | None:
    """The Content-Length header as a number (None when absent)."""
    if content_length is None:
        return None
    try:
        return int(content_length)
    except ValueError as exc:
        raise InvalidInput(f"invalid Content-Length header: {content_length!r}") from exc


def check_declared_size(content_length: str | None, limit: int, reason: str = "") -> int | None:
    """The declared size (None when absent), refused from the header alone when it passes
    ``limit``; ``reason`` says what the limit is."""
    size = declared_size(content_length)
    if size is not None and size > limit:
        raise too_large(limit, reason, size)
    return size


def too_large(limit: int, reason: str = "", size: int | None = None) -> PayloadTooLarge:
    """The 413 of a body past ``limit`` (of ``size`` bytes, when declared)."""
    because = f" ({reason})" if reason else ""
    body = "request body" if size is None else f"request body of {size} bytes"
    return PayloadTooLarge(
        f"{body} exceeds the maximum allowed input size of {limit} bytes{because}"
    )


# A gzip body may hold several members (RFC 1952); clients send one. A bound keeps a body
# of countless empty members from costing a pass each.
MAX_GZIP_MEMBERS = 64
# Bytes handed to zlib at a time: what zlib copies as the unread rest of its input
# (``unused_data``) stays this small, whatever the body's size.
INFLATE_INPUT_BYTES = 64 * 1024


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """gzip or deflate bodies, refusing any that inflate past ``limit`` bytes, stop short
    of their stream's end or go on past it (zero bytes after a gzip body are padding, as
    gzip itself reads them)."""
    if not encoding or encoding.lower() == "identity" or not body:
        return body
    kinds = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
    if encoding.lower() not in kinds:
        raise InvalidInput(f"unsupported Content-Encoding '{encoding}'; expected gzip or deflate")
    wbits, view, parts, size, position = kinds[encoding.lower()], memoryview(body), [], 0, 0
    for _ in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(wbits)
        while not inflater.eof and position < len(view):
            piece = view[position : position + INFLATE_INPUT_BYTES]
            try:
                part = inflater.decompress(piece, limit + 1 - size)
            except zlib.error as exc:
                raise InvalidInput(f"the {encoding} body cannot be decompressed: {exc}") from exc
            parts.append(part)
            size += len(part)
            if size > limit or inflater.unconsumed_tail:
                raise PayloadTooLarge(
                    f"decompressed request exceeds the maximum allowed input size of {limit} bytes"
                )
            position += len(piece) - len(inflater.unused_data)
        if not inflater.eof:
            raise InvalidInput(_truncated(f"{encoding} body"))
        rest = view[position:]
        gzip_next = wbits == kinds["gzip"] and bytes(rest[:2]) == b"\x1f\x8b"
        if gzip_next:
            continue
        if not rest or (wbits == kinds["gzip"] and not bytes(rest).strip(b"\0")):
            return parts[0] if len(parts) == 1 else b"".join(parts)
        raise InvalidInput(_trailing(f"{encoding} body", len(rest)))
    raise InvalidInput(f"the gzip body holds more than {MAX_GZIP_MEMBERS} members")


def unended(inflater: zlib._Decompress, what: str) -> str | None:
    """What is wrong with a compressed ``what`` that stops before its stream's end (one cut
    short inflates to a prefix of the request, which may still parse: a raw binary body cut
    at a row boundary is a smaller batch) or goes on past it; None when neither."""
    if not inflater.eof:
        return _truncated(what)
    if inflater.unused_data:
        return _trailing(what, len(inflater.unused_data))
    return None


def _truncated(what: str) -> str:
    return f"the {what} is truncated: its compressed stream does not end"


def _trailing(what: str, count: int) -> str:
    return f"the {what} goes on for {count} bytes after its compressed stream ends"
