"""The files of an uploaded model version: checking the form's parts, staging the
graph, the original file and its upload record (``upload.json``), and describing the
served version as an upload answers it."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from layerserve.service import idempotency, storage
from layerserve.service.conversion_process import ConvertedFile
from layerserve.service.errors import InvalidInput, ModelLoadError, ModelRejected
from layerserve.service.model_config import ModelConfig
from layerserve.service.protocols.multipart import Form, UploadedFile
from layerserve.service.repository import MODEL_FILE, MODEL_NAME
from layerserve.service.runtime import LoadedModel

UPLOAD_RECORD = "upload.json"
ORIGINAL_STEM = "original"


def safe_stem(filename: str | None) -> str:
    """The file name's stem if it is plain enough for a Content-Disposition header."""
    stem = Path(filename or "").stem
    return stem if stem and MODEL_NAME.match(stem) else "model"


def required_file(form: Form) -> UploadedFile:
    upload = form.files.get("file")
    if upload is None:
        raise InvalidInput(
            "the form has no 'file' part; expected the model file (.onnx, .keras, .h5 or "
            "a layerserve saved model) in a multipart field named 'file'"
        )
    if upload.size == 0:
        raise ModelRejected(f"the uploaded file '{upload.filename or 'file'}' is empty")
    return upload


def parse_config(text: str | None) -> ModelConfig | None:
    if text is None or not text.strip():
        return None
    try:
        return ModelConfig.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"invalid 'config' field: {problems}") from exc


def parse_opset(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise InvalidInput(
            f"the 'opset' field must be an integer ONNX opset; received {text!r}"
        ) from exc


def config_bytes(config: ModelConfig) -> bytes:
    return json.dumps(config.model_dump(exclude_none=True), indent=2).encode() + b"\n"


def read_config(model_dir: Path) -> ModelConfig:
    return ModelConfig.read(model_dir) if model_dir.is_dir() else ModelConfig()


def merge_config(model_dir: Path, given: ModelConfig) -> ModelConfig:
    """An upload's ``config`` over the model's config.json: the fields it gives (``null``
    included, which returns a field to the server's default) replace the file's, the
    others are kept, so that a batch size sent alone keeps the version policy. A
    config.json that does not read is replaced whole."""
    try:
        current = read_config(model_dir)
    except ModelLoadError:
        return given
    fields = current.model_dump(exclude_none=True) | given.model_dump(exclude_unset=True)
    try:
        return ModelConfig.model_validate(fields)
    except ValidationError as exc:
        raise InvalidInput(
            f"the 'config' field over the model's config.json is invalid: {exc}"
        ) from exc


def stage_version(
    staged: Path,
    upload: UploadedFile,
    converted: ConvertedFile,
    keyed: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Fill ``staged`` with model.onnx, the original file and upload.json, all synced.
    An uploaded .onnx is served byte for byte, so it is its own original."""
    staged.mkdir()
    if converted.source_format == "onnx":
        original = MODEL_FILE
        os.replace(upload.path, staged / MODEL_FILE)
        onnx_sha256 = upload.sha256
    else:
        original = f"{ORIGINAL_STEM}{converted.original_suffix}"
        os.replace(converted.onnx_path, staged / MODEL_FILE)
        os.replace(upload.path, staged / original)
        onnx_sha256 = sha256_of(staged / MODEL_FILE)
    record = {
        "source_format": converted.source_format,
        "original_filename": upload.filename,
        "original_file": original,
        "sha256": upload.sha256,
        "size_bytes": upload.size,
        "onnx_sha256": onnx_sha256,
        "parity": converted.parity,
        "uploaded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if keyed is not None:
        record[idempotency.RECORD_FIELD] = keyed
    storage.write_file(staged / UPLOAD_RECORD, json.dumps(record, indent=2).encode())
    storage.sync_tree(staged)
    return record


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def describe(model: LoadedModel, record: dict[str, Any]) -> dict[str, Any]:
    """A served version as the upload answers it."""
    return {
        "name": model.name,
        "version": model.version,
        "source_format": record.get("source_format"),
        "original_filename": record.get("original_filename"),
        "sha256": record.get("sha256"),
        "onnx_sha256": record.get("onnx_sha256"),
        "inputs": [s.as_dict() for s in model.inputs],
        "outputs": [s.as_dict() for s in model.outputs],
        "mask_outputs": model.mask_outputs,
        "providers": list(model.providers),
        "parity": record.get("parity"),
        "config": model.config.model_dump(),
        "uploaded_at": record.get("uploaded_at"),
    }
