"""Models of the repository tests: a small Dense model whose weights a version number
seeds (so that each version answers differently), and versions published into a
repository as the README says to: built aside on the same filesystem, then renamed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from layerserve import initializers
from layerserve.layers import Dense
from layerserve.models import Sequential


def tiny(version: int) -> Sequential:
    """A 4 -> 3 Dense model whose weights are seeded by ``version``."""
    kernel = initializers.glorot_uniform(seed=version)
    return Sequential([Dense(3, input_shape=(4,), kernel_initializer=kernel, name="dense")])


def publish(repo: Path, name: str, version: str, content: bytes) -> Path:
    """Write ``content`` as the version's model.onnx in a folder beside the models (a
    name no model can have), then rename that folder into ``<model>/<version>``."""
    incoming = Path(tempfile.mkdtemp(dir=repo, prefix=".incoming-"))
    (incoming / "model.onnx").write_bytes(content)
    target = repo / name / version
    target.parent.mkdir(exist_ok=True)
    os.rename(incoming, target)
    return target
