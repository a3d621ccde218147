"""The lowest onnxruntime pyproject.toml allows, in a venv of its own under ``.cache/``.

:func:`lowest_onnxruntime_python` installs it once per onnxruntime, NumPy and Python
version and returns the venv's interpreter; :func:`run_onnx_files` runs a folder of ONNX
files there through ``onnxruntime_runner.py`` (which imports only NumPy and onnxruntime).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
RUNNER = Path(__file__).with_name("onnxruntime_runner.py")
CACHE = ROOT / ".cache" / "lowest-onnxruntime"
READY = "installed.txt"  # written last: a venv without it is incomplete
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 300


def dependency(package: str) -> Requirement:
    """``package``'s requirement in pyproject.toml's dependencies."""
    for line in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == package:
            return requirement
    raise LookupError(f"pyproject.toml has no dependency on {package}")


def lowest_allowed(package: str) -> str:
    """The ``>=`` bound of ``package`` in pyproject.toml's dependencies."""
    (bound,) = [s.version for s in dependency(package).specifier if s.operator == ">="]
    return bound


def requirements() -> list[str]:
    """Exactly the lowest onnxruntime, beside NumPy as pyproject.toml requires it: pip
    pairs them as it would for a user (onnxruntime 1.18.1 caps NumPy below 2)."""
    return [f"onnxruntime=={lowest_allowed('onnxruntime')}", str(dependency("numpy"))]


def lowest_onnxruntime_python() -> Path:
    """The interpreter of the venv that holds :func:`requirements`, installed by pip the
    first time (into a scratch folder renamed into place, so a venv in the cache is whole)."""
    specs = requirements()
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    key = f"onnxruntime-{lowest_allowed('onnxruntime')}-numpy-{lowest_allowed('numpy')}-{python}"
    home = CACHE / key
    if (home / READY).exists():
        return home / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=CACHE))
    try:
        venv.create(scratch, with_pip=True)  # ensurepip: the test venv may have no pip
        process = subprocess.run(
            [str(scratch / "bin" / "python"), "-m", "pip", "install", "--no-input"]
            + ["--disable-pip-version-check", *specs],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
        if process.returncode != 0:
            pytest.fail(
                f"Could not install {' and '.join(specs)}, the lowest versions pyproject.toml "
                f"allows, into a venv under {CACHE}: this test needs a package index (PyPI "
                "over the network, or one named by PIP_INDEX_URL or PIP_FIND_LINKS). pip "
                f"exited {process.returncode}:\n{(process.stdout + process.stderr)[-4000:]}"
            )
        (scratch / READY).write_text("\n".join(specs) + "\n")
        scratch.chmod(0o755)  # mkdtemp made it private
        try:
            scratch.rename(home)
        except OSError:  # another test session installed the same venv meanwhile
            if not (home / READY).exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return home / "bin" / "python"


def run_onnx_files(directory: Path) -> dict[str, Any]:
    """Run every ``<name>.onnx`` in ``directory`` on the lowest onnxruntime (see
    ``onnxruntime_runner.py`` for the files it reads and writes); returns the versions
    it ran with."""
    process = subprocess.run(
        [str(lowest_onnxruntime_python()), str(RUNNER), str(directory)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    if process.returncode != 0:
        pytest.fail(f"onnxruntime_runner.py exited {process.returncode}:\n{process.stderr}")
    return json.loads(process.stdout)
