"""The bundled demo repository: the documentation's example models, exported to ONNX
the first time the service starts on an empty repository."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from layerserve import examples
from layerserve.export import to_onnx
from layerserve.service.repository import MODEL_FILE

log = logging.getLogger("layerserve.service")
DEMO_MODELS = {
    "mlp": examples.mlp,
    "conv_flatten": examples.conv_flatten,
    "masking_lstm": examples.masking_lstm,
    "masking_sequence": examples.masking_sequence,  # has a mask output, lstm_mask
    "hadamard": examples.hadamard_model,
}


def ensure_demo_repository(root: Path) -> list[str]:
    """Export each demo model that is missing; returns the names written."""
    written = []
    for name, build in DEMO_MODELS.items():
        target = root / name / "1" / MODEL_FILE
        if target.exists():
            continue
        to_onnx(build(), target)
        (root / name / "config.json").write_text(json.dumps({"max_batch_size": 64}, indent=2))
        written.append(name)
        log.info("exported demo model %s to %s", name, target)
    return written
