"""layerserve's own format: a zip with the model JSON and the weights as ``.npy`` arrays.

Nothing in it is pickled; Lambda bytecode is stored as Keras stores it and, as with
Keras files, is only loaded with ``safe_mode=False``.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from typing import Any

import numpy as np

from layerserve import __version__
from layerserve.errors import ModelFormatError

FORMAT_NAME = "layerserve.model"
FORMAT_VERSION = 1
MANIFEST = "layerserve.json"


def write_archive(model: Any, handle: Any) -> None:
    weights = model.get_weights()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "layerserve_version": __version__,
        "weights": len(weights),
    }
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
        archive.writestr("model.json", model.to_json(indent=1))
        for index, array in enumerate(weights):
            buffer = io.BytesIO()
            # order="C", not ascontiguousarray: that makes a 0-d weight (Attention.scale) 1-d
            np.save(buffer, np.asarray(array, order="C"), allow_pickle=False)
            archive.writestr(f"weights/{index:05d}.npy", buffer.getvalue())


def read_archive(archive: zipfile.ZipFile) -> tuple[str, list[np.ndarray]]:
    """``(model JSON, weights)`` from an opened archive."""
    try:
        manifest = json.loads(archive.read(MANIFEST))
        text = archive.read("model.json").decode("utf-8")
        count = int(manifest["weights"])
        if manifest.get("format") != FORMAT_NAME:
            raise ModelFormatError(f"Unknown archive format {manifest.get('format')!r}.")
        if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelFormatError(
                f"This model was saved by a newer layerserve (format version "
                f"{manifest['format_version']}); upgrade layerserve to load it."
            )
        weights = [
            np.load(io.BytesIO(archive.read(f"weights/{i:05d}.npy")), allow_pickle=False)
            for i in range(count)
        ]
    except (KeyError, ValueError, TypeError, MemoryError, zipfile.BadZipFile, zlib.error) as exc:
        raise ModelFormatError(
            f"The layerserve model archive is incomplete or corrupt: {exc}"
        ) from exc
    return text, weights
