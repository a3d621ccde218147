"""Imported by the converters' forkserver (see ``conversion_process.PRELOAD``) for its
side effect: one conversion of a tiny model, so that what every conversion initialises
on first use (onnxruntime's environment, the exporter's and the loader's lazy imports
and caches) is ready in the forkserver and inherited by each child, which then converts
a small upload in about half the time. The sessions it creates are gone before the
forkserver forks, and so are their threads."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

log = logging.getLogger("layerserve.service")


def warm_up() -> None:
    from layerserve.layers import LSTM, Dense
    from layerserve.models import Sequential
    from layerserve.saving import save_model
    from layerserve.service.conversion import ConversionLimits, convert_file

    model = Sequential([LSTM(2, input_shape=(3, 2), return_sequences=True), Dense(2)])
    with tempfile.TemporaryDirectory(prefix="layerserve-warm-up-") as folder:
        path = Path(folder) / "warm-up.zip"
        save_model(model, path)
        converted = convert_file(path, path.name, ConversionLimits(max_unpacked_bytes=1 << 20))
        converted.onnx_model.SerializeToString()


try:
    warm_up()
except Exception:  # noqa: BLE001 - only a head start: the forkserver must start anyway
    log.warning("the converters' warm-up failed; conversions start cold", exc_info=True)
