"""The OpenAPI document of the service, checked in as ``openapi/openapi.json``.

Run from the repository root::

    python -m layerserve.service.api.openapi            # (re)write openapi/openapi.json
    python -m layerserve.service.api.openapi --check    # exit 1 if the file is stale
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from layerserve.service.api.app import create_app
from layerserve.service.settings import Settings

DOCUMENT = Path("openapi/openapi.json")
COMMAND = "python -m layerserve.service.api.openapi"
DIFF_LINES = 40


def build_openapi() -> dict[str, Any]:
    """The document the app serves at ``/openapi.json``, built without starting it (no
    models load). Default settings, not ``LAYERSERVE_*`` variables, so that it is the
    same on every machine."""
    return create_app(Settings.model_construct()).openapi()


def render(document: dict[str, Any]) -> str:
    """Stable text: FastAPI's key order, two-space indent, a trailing newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def drift(expected: str, actual: str, path: Path) -> str:
    """A short unified diff from the file on disk to the generated document."""
    lines = list(
        difflib.unified_diff(
            actual.splitlines(),
            expected.splitlines(),
            fromfile=str(path),
            tofile="generated",
            lineterm="",
        )
    )
    shown = lines[:DIFF_LINES]
    if len(lines) > DIFF_LINES:
        shown.append(f"... {len(lines) - DIFF_LINES} more diff lines")
    return "\n".join(shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DOCUMENT, help=f"default: {DOCUMENT}")
    parser.add_argument(
        "--check", action="store_true", help="compare with the file instead of writing it"
    )
    args = parser.parse_args(argv)
    text = render(build_openapi())
    if not args.check:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        return 0
    if not args.output.is_file():
        sys.stderr.write(f"{args.output} does not exist; generate it with: {COMMAND}\n")
        return 1
    current = args.output.read_text(encoding="utf-8")
    if current == text:
        return 0
    sys.stderr.write(drift(text, current, args.output) + "\n")
    sys.stderr.write(f"{args.output} is out of date; regenerate it with: {COMMAND}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
