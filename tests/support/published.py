"""Models of the repository tests: a small Dense model whose weights a version number
seeds (so that each version answers differently), and versions published into a
repository as the README says to: built aside on the same filesystem, then renamed."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from layerserve import initializers
from layerserve.layers import Dense
from layerserve.models import Sequential
from layerserve.service.repository_scan import SETTLE_SECONDS

POLL = 0.1  # the servers of these tests read the repository this often
BOUND = SETTLE_SECONDS + 2 * POLL + 3.0  # settle time, two polls, margin for a busy machine


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


def eventually(probe: Callable[[], Any], expected: Any, timeout: float = BOUND) -> None:
    """Until ``probe()`` answers ``expected``, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (value := probe()) != expected:
        assert time.monotonic() < deadline, f"after {timeout:.1f} s: {value!r} != {expected!r}"
        time.sleep(0.05)
