"""An uploaded model file to a checked ONNX graph, refusing anything unsafe.

``.onnx`` files are checked and served as they are. Keras-family files (``.keras``,
``.h5``, layerserve's zip) are checked as containers first, loaded by the NumPy
reference with Lambda bytecode refused, exported, and compared with the reference.
Protocol-neutral: failures are :class:`ModelRejected` or :class:`ParityFailed`.
"""

from __future__ import annotations

import math
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnx
from google.protobuf.message import EncodeError

from layerserve.errors import (
    ConfigError,
    LayerserveError,
    UnknownFunctionError,
    UnknownLayerError,
    UnsafeDeserializationError,
)
from layerserve.saving import HDF5_SIGNATURE, native
from layerserve.service.errors import InvalidInput, ModelRejected, ParityFailed
from layerserve.service.settings import Settings
from layerserve.service.upload_checks import check_zip, count_zip_entries
from layerserve.service.upload_hdf5 import check_hdf5
from layerserve.service.upload_onnx import check_onnx_file

SourceFormat = Literal["onnx", "keras", "h5", "layerserve"]
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "keras": ".keras", "h5": ".h5", "layerserve": ".zip"}
KINDS = {
    "onnx": "ONNX model",
    "keras": "Keras 3 .keras archive",
    "h5": "Keras HDF5 model",
    "layerserve": "layerserve model archive",
}
ACCEPTED = (
    "an ONNX model (.onnx), a Keras 3 archive (.keras: config.json, metadata.json and "
    "model.weights.h5), a Keras HDF5 model (.h5) or a layerserve model archive (.zip)"
)
KERAS_ENTRIES = {"config.json", "model.weights.h5"}
DEFAULT_MAX_ARCHIVE_ENTRIES = 10_000
# First byte of a serialized ModelProto: the key of one of its fields (ir_version first
# in every writer's output, since protobuf writes fields in number order).
_ONNX_FIRST_BYTES = frozenset(b"\x08\x12\x1a\x22\x28\x32\x3a\x42\x72\xa2\xca")


@dataclass(frozen=True)
class ConversionLimits:
    max_unpacked_bytes: int  # total uncompressed size cap of archives (and HDF5 datasets)
    max_archive_entries: int = DEFAULT_MAX_ARCHIVE_ENTRIES
    # each JSON config (archive entry or .h5 attribute), parsed whole in memory
    max_config_bytes: int = Settings.model_fields["max_config_bytes"].default
    parity_atol: float = 1e-4  # scaled by max(1, largest |reference output|)


@dataclass
class Converted:
    onnx_model: onnx.ModelProto
    source_format: SourceFormat
    parity: dict | None  # None for .onnx uploads
    original_suffix: str


def detect_format(path: Path, filename: str | None = None) -> SourceFormat:
    """The upload's format from its bytes; ``filename``'s suffix is only a hint."""
    return _detect(Path(path), filename, DEFAULT_MAX_ARCHIVE_ENTRIES)


def convert_file(
    path: Path, filename: str | None, limits: ConversionLimits, *, opset: int | None = None
) -> Converted:
    """The checked ONNX graph of an upload. ``opset`` applies to Keras-family exports; an
    uploaded ``.onnx`` is served as it is."""
    path = Path(path)
    label = repr(filename) if filename else "the upload"
    source = _detect(path, filename, limits.max_archive_entries)
    if source == "onnx":
        return Converted(check_onnx_file(path, label), "onnx", None, SUFFIXES["onnx"])
    _check_opset(opset)
    with tempfile.TemporaryDirectory(prefix="layerserve-convert-") as scratch:
        _check_container(path, source, limits, Path(scratch), label)
    weight_budget = min(limits.max_unpacked_bytes, ONNX_MAX_WEIGHT_BYTES)
    model = _load(path, source, label, weight_budget)
    try:
        onnx_model = _to_onnx(model, opset)
    except EncodeError as exc:
        raise ModelRejected(
            f"The model in {label} does not fit one ONNX file (2 GiB protobuf limit): {exc}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - never a 500 for a user's file
        raise ModelRejected(
            f"The model in {label} cannot be exported to ONNX: {_described(exc)}"
        ) from exc
    try:
        parity = _check_parity(model, onnx_model, limits.parity_atol)
    except ParityFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime and layer errors alike
        raise ModelRejected(
            f"The model in {label} cannot run on sample inputs of its own shapes: {_described(exc)}"
        ) from exc
    return Converted(onnx_model, source, parity, SUFFIXES[source])


def _described(exc: BaseException) -> str:
    """A library error's own message (it names the layer); others with their type."""
    if isinstance(exc, LayerserveError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _detect(path: Path, filename: str | None, max_entries: int) -> SourceFormat:
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(HDF5_SIGNATURE):
        return "h5"
    if head.startswith(b"PK"):
        return _zip_format(path, max_entries)
    suffix = Path(filename or "").suffix.lower()
    if head and not _is_text(head) and (head[0] in _ONNX_FIRST_BYTES or suffix == ".onnx"):
        return "onnx"
    name = f"{filename!r}, " if filename else ""
    raise ModelRejected(f"Expected {ACCEPTED}. Received: {name}{_describe(head)}.")


def _zip_format(path: Path, max_entries: int) -> SourceFormat:
    count_zip_entries(path, max_entries)  # before zipfile parses the whole directory
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelRejected(f"The upload is a truncated or corrupt zip archive: {exc}") from exc
    if native.MANIFEST in names:
        return "layerserve"
    if KERAS_ENTRIES <= set(names):
        return "keras"
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    raise ModelRejected(
        f"Expected {ACCEPTED}; a layerserve archive holds {native.MANIFEST!r}. Received: a "
        f"zip archive with the entries {shown or 'none'}."
    )


def _is_text(head: bytes) -> bool:
    for cut in range(4):  # the last character may be cut in the middle of its bytes
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return bool(text) and all(c.isprintable() or c in "\t\n\r" for c in text)
    return False


def _describe(head: bytes) -> str:
    if not head:
        return "an empty file"
    if _is_text(head):
        text = head.decode("utf-8", errors="ignore").strip()
        if text.startswith("{"):
            return (
                "a JSON document; a model config alone has no weights to serve, so save "
                "the whole model (model.save('model.keras'))"
            )
        return f"a text file starting with {text[:32]!r}"
    return f"a file starting with the bytes {head[:8]!r}"


def _check_opset(opset: int | None) -> None:
    from layerserve.export.opsets import resolve_opset

    try:
        resolve_opset(opset)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from exc


def _check_container(
    path: Path, source: str, limits: ConversionLimits, scratch: Path, label: str
) -> None:
    if source == "h5":
        check_hdf5(
            path,
            max_unpacked_bytes=limits.max_unpacked_bytes,
            label=label,
            max_config_bytes=limits.max_config_bytes,
        )
        return
    weights = scratch / "model.weights.h5"
    check_zip(
        path,
        max_unpacked_bytes=limits.max_unpacked_bytes,
        max_entries=limits.max_archive_entries,
        max_config_bytes=limits.max_config_bytes,
        extract={"model.weights.h5": weights} if source == "keras" else None,
    )
    if source == "keras":
        check_hdf5(
            weights,
            max_unpacked_bytes=limits.max_unpacked_bytes,
            label=f"model.weights.h5 in {label}",
        )


def lambda_message(kind: str) -> str:
    return (
        f"Expected a model without Python code. Received: a {kind} that carries Python "
        "bytecode (a Lambda layer's function), which this service never executes. To serve "
        "it, export it on a machine you trust with `layerserve export MODEL_FILE -o "
        "model.onnx --unsafe` and upload model.onnx instead."
    )


def unknown_layers_message(kind: str, label: str, error: UnknownLayerError) -> str:
    names = [repr(n) for n in error.layers] + [
        f"{n!r} (a Keras operation)" for n in error.operations
    ]
    return (
        f"The {kind} {label} uses {len(names)} layer class(es) layerserve does not "
        f"implement: {', '.join(names)}. Expected only the layers listed in layerserve's "
        "README. To serve it anyway, export it to ONNX with another tool on a machine with "
        "Keras (Keras 3: `model.export('model.onnx', format='onnx')`; tf.keras: tf2onnx) "
        "and upload the .onnx file."
    )


def unknown_function_message(kind: str, label: str, error: UnknownFunctionError) -> str:
    where = f" from module {error.module!r}" if error.module else ""
    return (
        f"The {kind} {label} has a Lambda layer that calls the Python function "
        f"{error.function!r}{where}, which this service does not know: the file stores its "
        "name, not its code. Expected a function of the Keras backend. To serve it, export "
        "it where that function can be imported, with `layerserve export MODEL_FILE -o "
        f"model.onnx --function {error.function}=your_module:{error.function}`, and upload "
        "model.onnx instead."
    )


# One ModelProto is at most 2 GiB; weights past this cannot be exported in one file.
ONNX_MAX_WEIGHT_BYTES = (2 << 30) - (64 << 20)


def _load(path: Path, source: str, label: str, max_weight_bytes: int) -> Any:
    from layerserve.saving import load_model
    from layerserve.serialization import weight_budget_scope

    kind = KINDS[source]
    try:
        with weight_budget_scope(max_weight_bytes):
            return load_model(path, safe_mode=True)
    except UnsafeDeserializationError as exc:
        raise ModelRejected(lambda_message(kind)) from exc
    except UnknownLayerError as exc:
        raise ModelRejected(unknown_layers_message(kind, label, exc)) from exc
    except UnknownFunctionError as exc:
        raise ModelRejected(unknown_function_message(kind, label, exc)) from exc
    except LayerserveError as exc:
        message = str(exc).replace(str(path), label)
        raise ModelRejected(f"The {kind} {label} cannot be loaded: {message}") from exc
    except Exception as exc:  # noqa: BLE001 - h5py, zipfile, json... never a 500
        message = str(exc).replace(str(path), label)
        raise ModelRejected(
            f"The {kind} {label} is corrupt or not a model layerserve reads: "
            f"{type(exc).__name__}: {message}"
        ) from exc


def _to_onnx(model: Any, opset: int | None) -> onnx.ModelProto:
    from layerserve.export import to_onnx

    return to_onnx(model, opset=opset)


def _check_parity(model: Any, onnx_model: onnx.ModelProto, atol: float) -> dict:
    """onnxruntime against the reference. The tolerance grows with the outputs' scale,
    ``atol * max(1, largest |output|)``, so large outputs keep float32's relative
    precision instead of an absolute bound they cannot meet."""
    from layerserve.export.parity import compare

    report = compare(model, onnx_model)
    tolerance = atol * max(1.0, report.output_scale)
    error = report.max_abs_error
    if not math.isfinite(error) or error > tolerance or not report.masks_equal:
        raise ParityFailed(
            f"Expected the ONNX export to match the NumPy reference within {tolerance:.3g} "
            f"(parity_atol {atol:g} times max(1, largest |output|)) with equal masks. "
            f"Received: max |onnxruntime - reference| = {error:.3g}, masks equal: "
            f"{report.masks_equal}, over batch sizes {report.batch_sizes}."
        )
    return {
        "max_abs_error": float(error),
        "masks_equal": bool(report.masks_equal),
        "batch_sizes": list(report.batch_sizes),
    }
