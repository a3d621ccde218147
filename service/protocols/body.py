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


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """gzip or deflate bodies, refusing any that inflate past ``limit`` bytes."""
    if not encoding or encoding.lower() == "identity":
        return body
    kinds = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
    if encoding.lower() not in kinds:
        raise InvalidInput(f"unsupported Content-Encoding '{encoding}'; expected gzip or deflate")
    wbits, parts, size, rest = kinds[encoding.lower()], [], 0, body
    while True:  # gzip may hold several members, one after the other (RFC 1952)
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise InvalidInput(f"the {encoding} body cannot be decompressed: {exc}") from exc
        parts.append(part)
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                f"decompressed request exceeds the maximum allowed input size of {limit} bytes"
            )
        rest = inflater.unused_data
        if not (rest and inflater.eof and wbits == kinds["gzip"]):
            break  # what is left is refused below (deflate is one stream)
    problem = unended(inflater, f"{encoding} body")
    if problem:
        raise InvalidInput(problem)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def unended(inflater: zlib._Decompress, what: str) -> str | None:
    """What is wrong with a compressed ``what`` that stops before its stream's end (one cut
    short inflates to a prefix of the request, which may still parse: a raw binary body cut
    at a row boundary is a smaller batch) or goes on past it; None when neither."""
    if not inflater.eof:
        return f"the {what} is truncated: its compressed stream does not end"
    if inflater.unused_data:
        return (
            f"the {what} goes on for {len(inflater.unused_data)} bytes after its compressed "
            "stream ends"
        )
    return None
