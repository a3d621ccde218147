"""The package list in pyproject.toml against the source tree: an installed (non-editable)
layerserve, as the Docker image has it, holds only the packages listed there."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _packages_on_disk(package_dirs: dict[str, str]) -> set[str]:
    found: set[str] = set()
    for package, folder in package_dirs.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                continue
            found.add(".".join([package, *relative.parts]))
    return found


def test_every_package_folder_is_listed_for_the_build() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = _packages_on_disk(setuptools["package-dir"])
    assert on_disk - listed == set(), "folders with an __init__.py missing from packages"
    assert listed - on_disk == set(), "packages listed without a folder"
