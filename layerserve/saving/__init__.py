"""Loading and saving models: Keras JSON, Keras 2/3 ``.h5``, Keras 3 ``.keras`` archives
and layerserve's own format."""

from __future__ import annotations

import io
import json
import os
import secrets
import stat
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import h5py

from layerserve.activations import any_version_names
from layerserve.errors import LayerserveError, ModelFormatError
from layerserve.saving import keras_json, native, weights_h5
from layerserve.serialization import (
    custom_object_scope,
    keras_document_scope,
    keras_semantics,
    parse_version,
    safe_mode_scope,
    weight_budget_active,
    weight_budget_scope,
)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# What a damaged or hand-made file makes h5py, zipfile, json and the config walk raise
# once it opened: a missing member or attribute, a value of another type or shape, text
# that is not UTF-8, a structure that refers to itself.
_DAMAGE = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
)


@contextmanager
def _read_as_keras(what: object) -> Iterator[None]:
    """Errors a damaged file raises as :class:`ModelFormatError` naming ``what``; the
    typed errors of layerserve pass as they are."""
    try:
        yield
    except LayerserveError:
        raise
    except _DAMAGE as exc:  # RecursionError is a RuntimeError
        raise ModelFormatError(
            f"{what} cannot be read as a Keras model: {type(exc).__name__}: {exc}"[:500]
        ) from exc


def model_from_json(
    json_string: str | bytes | dict,
    custom_objects: Mapping[str, Any] | None = None,
    safe_mode: bool = True,
    keras_version: str | None = None,
) -> Any:
    """A model from ``to_json()`` output of Keras 2.2.x, tf.keras 2.x, Keras 3 or
    layerserve. ``keras_version`` overrides the version the document states."""
    with _read_as_keras("The model JSON"):
        document = keras_json.parse_document(json_string)
        version = keras_version or keras_json.detect_keras_version(document)
        return _build(document, version, custom_objects, safe_mode)


def _build(
    document: dict[str, Any],
    version: str,
    custom_objects: Mapping[str, Any] | None,
    safe_mode: bool,
) -> Any:
    from layerserve.models.rebuild import check_known_classes, deserialize_layer

    normalized = keras_json.normalize_model(document, version)
    # layerserve's own documents may name an activation of any Keras version.
    names = any_version_names() if document.get("backend") == "layerserve" else nullcontext()
    with (
        keras_semantics(version),
        keras_document_scope(document.get("backend") != "layerserve"),
        custom_object_scope(custom_objects),
        safe_mode_scope(safe_mode),
        names,
    ):
        check_known_classes(normalized)
        model = deserialize_layer(normalized)
    return model


def load_model(
    filepath: str | os.PathLike,
    custom_objects: Mapping[str, Any] | None = None,
    safe_mode: bool = True,
    weights: str | os.PathLike | None = None,
) -> Any:
    """Loads a Keras 3 ``.keras`` archive, a Keras 2/3 ``.h5`` model, a layerserve
    archive, or a model JSON file (with ``weights`` from a Keras weights file)."""
    path = Path(filepath)
    try:
        head = path.open("rb").read(8)
    except OSError as exc:
        raise ModelFormatError(f"Cannot read model file {path}: {exc}") from exc
    is_json = head.lstrip()[:1] == b"{"
    budget = nullcontext()
    if not (is_json and weights is None) and not weight_budget_active():  # stored weights
        budget = weight_budget_scope(_weight_budget_of(path, weights))
    with _read_as_keras(path), budget:
        if head.startswith(HDF5_SIGNATURE):
            model = _load_h5(path, custom_objects, safe_mode)
        elif zipfile.is_zipfile(path):
            model = _load_zip(path, custom_objects, safe_mode)
        elif is_json:
            model = model_from_json(path.read_bytes(), custom_objects, safe_mode)
        else:
            raise ModelFormatError(
                f"{path} is not a model file layerserve knows: expected a "
                ".keras archive, an HDF5 .h5 file, a layerserve archive or JSON. "
                f"Found {_describe_head(head)}."
            )
        if weights is not None:
            load_weights(model, weights)
    return model


def _weight_budget_of(path: Path, weights: str | os.PathLike | None) -> int:
    """What the weights a file (and a weights file beside it) can fill may take in memory:
    four times the bytes they hold (float16 values of a float32 layer take twice theirs),
    and 64 MiB more. A model's weights are made from its config before any stored value
    is read: a config asking for more than its file holds (``Dense(10**9)`` in a file of
    kilobytes) would allocate them only to fail."""
    held = _bytes_held(path) + (0 if weights is None else _bytes_held(Path(weights)))
    return 4 * held + (64 << 20)


def _bytes_held(path: Path) -> int:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return sum(entry.file_size for entry in archive.infolist())
        return path.stat().st_size
    except (OSError, zipfile.BadZipFile):
        return 0  # the read that follows says what is wrong with the file


def _describe_head(head: bytes) -> str:
    if not head:
        return "an empty file"
    if head.startswith(b"PK"):
        return (
            "the start of a zip archive without its central directory: the file is "
            "truncated or corrupt"
        )
    return f"a file starting with the bytes {head!r}"


def _load_h5(path: Path, custom_objects: Any, safe_mode: bool) -> Any:
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFormatError(f"{path} is not a readable HDF5 file: {exc}") from exc
    with handle:
        config = handle.attrs.get("model_config")
        if config is None:
            raise ModelFormatError(
                f"{path} holds weights only (no 'model_config'). Build or "
                "load the model, then call model.load_weights()."
            )
        text = config.decode("utf-8") if isinstance(config, bytes) else str(config)
        version = handle.attrs.get("keras_version")
        version = version.decode() if isinstance(version, bytes) else version
        document = keras_json.parse_document(text)
        model = _build(
            document,
            version or keras_json.detect_keras_version(document),
            custom_objects,
            safe_mode,
        )
        weights_h5.load_weights_group(model, handle)
    return model


def _load_zip(path: Path, custom_objects: Any, safe_mode: bool) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ModelFormatError(f"{path} is a corrupt zip archive: {exc}") from exc
    with archive:
        names = set(archive.namelist())
        if native.MANIFEST in names:
            text, arrays = native.read_archive(archive)
            model = model_from_json(text, custom_objects, safe_mode)
            model.set_weights(arrays)
            return model
        if {"config.json", "model.weights.h5"} <= names:
            return _load_keras_archive(archive, custom_objects, safe_mode)
    raise ModelFormatError(
        f"{path} is a zip archive but neither a .keras model nor a layerserve model."
    )


def _load_keras_archive(archive: zipfile.ZipFile, custom_objects: Any, safe_mode: bool) -> Any:
    try:
        metadata = (
            json.loads(archive.read("metadata.json"))
            if ("metadata.json" in archive.namelist())
            else {}
        )
        document = keras_json.parse_document(archive.read("config.json"))
        weights_bytes = archive.read("model.weights.h5")
    except (KeyError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise ModelFormatError(f"The .keras archive is corrupt: {exc}") from exc
    version = metadata.get("keras_version") or keras_json.detect_keras_version(document)
    model = _build(document, version, custom_objects, safe_mode)
    try:
        handle = h5py.File(io.BytesIO(weights_bytes), "r")
    except OSError as exc:
        raise ModelFormatError(f"The .keras archive's weights are unreadable: {exc}") from exc
    with handle:
        keras2 = parse_version(version) < (3, 0, 0)  # tf.keras writes .keras files too
        weights_h5.load_keras3_weights(handle, model.layers, keras2)
    return model


def load_weights(model: Any, filepath: str | os.PathLike) -> None:
    """Weights from a Keras ``.h5`` / ``.weights.h5`` file or a layerserve archive, all
    of them or none: the file's layers are set one by one, so when a later one is refused
    (its shapes, its layout) the ones set before it are put back as they were."""
    before = model.get_weights()
    try:
        with _read_as_keras(f"The weights file {filepath}"):
            _load_weights(model, Path(filepath))
    except BaseException:
        if len(before) == len(model.weights):  # a model built by the load has no "before"
            model.set_weights(before)
        raise


def _load_weights(model: Any, path: Path) -> None:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if native.MANIFEST in archive.namelist():
                model.set_weights(native.read_archive(archive)[1])
                return
            if "model.weights.h5" in archive.namelist():
                with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as handle:
                    weights_h5.load_keras3_weights(handle, model.layers)
                return
    weights_h5.load_weights_file(model, path)


def save_model(model: Any, filepath: str | os.PathLike) -> None:
    """Writes layerserve's archive atomically: the file appears whole or not at all."""
    path = Path(filepath)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created like open(path, "wb") would (0666 less the umask), unlike mkstemp's 0600.
    temporary = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            native.write_archive(model, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():  # overwriting keeps the file's mode, as open() does
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


__all__ = ["load_model", "load_weights", "model_from_json", "save_model"]
