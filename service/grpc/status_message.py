"""The message of a gRPC status (``grpc-message``): percent-encoded on the wire (every
byte outside printable ASCII, and "%" itself), and kept short.

gRPC's C core (grpcio, tritonclient, perf_analyzer) fails a call whose trailers reach
16 KiB, and at random one whose trailers pass 8 KiB, with RESOURCE_EXHAUSTED in place of
the status the server sent: an error naming a client's very long input name would reach
it so. A message is therefore cut to ``MESSAGE_MOST`` characters once encoded (REST's
JSON answer carries it whole)."""

from __future__ import annotations

from urllib.parse import quote

MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
MESSAGE_MOST = 4096  # characters of an encoded message: well below the C core's 8 KiB
CUT = " [...]"  # the end of a message cut to fit


def encode(message: str) -> str:
    return quote(message, safe=MESSAGE_SAFE)


def fit(message: str, room: int = MESSAGE_MOST) -> str:
    """``message``, or its beginning and ``CUT``, whose encoding takes at most ``room``
    characters; "" when not even that fits."""
    encoded, kept, keep = encode(message), message, len(message)
    while len(encoded) > room:
        # A character encodes to 1 to 12 characters: shrink in proportion, at least by one.
        keep = min(keep - 1, keep * room // len(encoded) - len(CUT))
        if keep <= 0:
            return ""
        kept = message[:keep] + CUT
        encoded = encode(kept)
    return kept
