"""What the model repository on disk holds for one model, read without loading anything:
its version folders with a fingerprint of their files, its ``config.json`` (parsed, with
a digest of its bytes) and whether it was unloaded through the API. The repository
compares this with what it serves and loads, reloads or unloads the difference."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from layerserve.service.errors import ModelLoadError
from layerserve.service.model_config import ModelConfig, read_config_file
from layerserve.service.storage import CONFIG_FILE, UNLOADED_DIR, is_version_name

MODEL_FILE = "model.onnx"
# A version found on disk whose files changed more recently than this waits: a copy may
# be in progress (polls and changes of siblings; an explicit load trusts the disk).
SETTLE_SECONDS = 1.0
# (file name, inode, size, modification time, change time) of every file of a version
# folder: a file replaced, rewritten or added changes it, also one rewritten in place with
# its size and modification time kept (cp -p, reproducible builds): the change time cannot
# be set back. A folder renamed into place keeps it.
Fingerprint = tuple[tuple[str, int, int, int, int], ...]


@dataclass(frozen=True)
class DiskVersion:
    path: Path
    fingerprint: Fingerprint
    # The folder's last change of contents (mtime) or its files' last change (ctime):
    # renaming a finished folder into place changes neither.
    changed_ns: int

    def quiet_for(self, seconds: float) -> bool:
        """Nothing in the folder changed for ``seconds``: not a copy still in progress."""
        return time.time_ns() - self.changed_ns >= seconds * 1e9


@dataclass(frozen=True)
class DiskModel:
    name: str
    versions: dict[str, DiskVersion] = field(default_factory=dict)
    config: ModelConfig | None = None  # None when config_error is set
    config_digest: str = ""
    config_error: str = ""
    unloaded: bool = False

    def selected(self) -> list[str]:
        """The versions the model's version policy serves, lowest first."""
        assert self.config is not None
        return self.config.policy().select(sorted(self.versions, key=int))


def scan_version(path: Path) -> DiskVersion | None:
    """The version folder ``path`` if it holds a model.onnx, else None."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
        folder = path.stat()
    except OSError:
        return None
    files, changed = [], folder.st_mtime_ns
    for entry in entries:
        try:
            stat = entry.stat()
        except OSError:
            continue
        changed = max(changed, stat.st_ctime_ns)
        if entry.is_file():
            files.append(
                (entry.name, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
            )
    if not any(name == MODEL_FILE for name, *_ in files):
        return None
    return DiskVersion(path, tuple(files), changed)


def scan_model(root: Path, name: str) -> DiskModel | None:
    """``<root>/<name>`` as it is now; None when it has no version to serve."""
    model_dir = root / name
    try:
        numbers = [e.name for e in os.scandir(model_dir) if is_version_name(e.name) and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return None  # gone; other errors are raised: unreadable is not deleted
    versions = {n: v for n in numbers if (v := scan_version(model_dir / n)) is not None}
    if not versions:
        return None
    unloaded = (root / UNLOADED_DIR / name).exists()
    try:
        raw = read_config_file(model_dir / CONFIG_FILE)
    except FileNotFoundError:
        raw = b""
    except OSError as exc:
        return DiskModel(name, versions, None, "", f"cannot read {CONFIG_FILE}: {exc}", unloaded)
    except ModelLoadError as exc:  # too large to read
        return DiskModel(name, versions, None, "", str(exc), unloaded)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        config = ModelConfig.parse(raw, model_dir / CONFIG_FILE) if raw else ModelConfig()
    except ModelLoadError as exc:
        return DiskModel(name, versions, None, digest, str(exc), unloaded)
    return DiskModel(name, versions, config, digest, "", unloaded)
