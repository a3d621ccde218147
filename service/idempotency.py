"""Idempotent uploads: a client that lost the answer to an upload retries it with the
same ``Idempotency-Key`` header and gets the version the first attempt created, not a
second one.

The key and a digest of the request (the file's SHA-256, its name and the config field,
everything that changes the result) are written into the version's ``upload.json``,
which is published with the version in one rename: the record exists exactly as long
as the version, survives restarts and is read by every process sharing the repository.
Keys are scoped to a model name. As the IETF draft (draft-ietf-httpapi-idempotency-key-
header) asks, a retry is answered with the first answer (201, the same body) and the
same key with a different request is refused with 422.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from layerserve.service.errors import IdempotencyKeyReused, InvalidInput

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on an answer that is a replay (Stripe's)
MAX_KEY_LENGTH = 255
RECORD_FIELD = "idempotency"  # in upload.json: {"key": ..., "request_sha256": ...}
KEY_RULE = (
    f"1 to {MAX_KEY_LENGTH} visible ASCII characters (letters, digits, punctuation; no "
    "spaces, quotes or backslashes), optionally in double quotes as a structured-field "
    "string, e.g. a UUID"
)


def parse_key(values: list[str]) -> str | None:
    """The key from the header's values (none: None); InvalidInput if not a sane token."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput(
            f"Expected one {HEADER} header. Received: {len(values)} of them; send the "
            "key of this upload once."
        )
    raw = values[0].strip()
    key = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(
        0x21 <= ord(c) <= 0x7E and c not in '"\\' for c in key
    ):
        shown = raw if len(raw) <= 64 else raw[:64] + "..."
        raise InvalidInput(
            f"Expected an {HEADER} header of {KEY_RULE}. Received: {shown!r} "
            f"({len(key)} characters)."
        )
    return key


def request_digest(file_sha256: str, filename: str | None, config: bytes | None) -> str:
    """SHA-256 of what decides an upload's result: the file, its name (a format hint
    and part of the answer) and the normalized config field."""
    fields = {
        "file_sha256": file_sha256,
        "filename": filename,
        "config": None if config is None else config.decode("utf-8"),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def record(key: str, digest: str) -> dict[str, str]:
    """The ``upload.json`` field of a version uploaded with ``key``."""
    return {"key": key, "request_sha256": digest}


def find(
    model_dir: Path, key: str, digest: str, record_file: str
) -> tuple[str, dict[str, Any]] | None:
    """``(version, upload record)`` of the version ``key`` created, None if none did;
    IdempotencyKeyReused if it was created by a different request."""
    if not model_dir.is_dir():
        return None
    for version_dir in model_dir.iterdir():
        if not version_dir.name.isdigit():
            continue
        try:
            upload = json.loads((version_dir / record_file).read_text())
        except (OSError, ValueError):  # an .onnx copied in by hand has no record
            continue
        keyed = upload.get(RECORD_FIELD) if isinstance(upload, dict) else None
        if not isinstance(keyed, dict) or keyed.get("key") != key:
            continue
        if keyed.get("request_sha256") != digest:
            raise IdempotencyKeyReused(
                f"Expected {HEADER} {key!r} to come with the request it was first used "
                f"for, which created version {version_dir.name} of model "
                f"{model_dir.name!r}. Received: a different request (another file, file "
                "name or config). Use a new key for a new upload; a retry must resend "
                "the same request."
            )
        return version_dir.name, upload
    return None
