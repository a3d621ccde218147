"""A large body spooled to ``/dev/shm`` that does not fit there (a container's is small)
goes on in the temporary directory, whole; with no room there either the request is
refused with 507, never a 500. Real tmpfs mounts of a few KiB stand in for full disks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from layerserve.service import decoding
from layerserve.service.api.errors import status_of
from layerserve.service.errors import InsufficientStorage

ROOM = 64 * 1024


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: int = ROOM):
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root (mount said: {mounted.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def chunks(total: int, size: int) -> list[bytes]:
    data = os.urandom(total)
    return [data[i : i + size] for i in range(0, total, size)]


def spool_all(parts: list[bytes]) -> tuple[Path, bytes, int]:
    """Spool ``parts``; where the file was, what it held and the size counted."""

    async def write() -> tuple[Path, bytes, int]:
        with decoding.Spool() as spool:
            for part in parts:
                await spool.write(part)
            return spool.path, spool.path.read_bytes(), spool.size

    return asyncio.run(write())


@pytest.mark.parametrize("size", [16 * 1024, 10_000])  # 10,000: a write is cut short
def test_a_body_larger_than_shared_memory_is_spooled_whole_to_the_temporary_directory(
    tmp_path, monkeypatch, size
):
    with tiny_tmpfs(tmp_path / "shm") as shm:
        monkeypatch.setattr(decoding, "SHARED_MEMORY", str(shm))
        parts = chunks(4 * ROOM, size)
        path, held, counted = spool_all(parts)
        assert path.parent == Path(tempfile.gettempdir())
        assert held == b"".join(parts)
        assert counted == 4 * ROOM
        assert not list(shm.iterdir())  # the shared-memory file is gone
        assert not path.exists()


def test_with_no_room_anywhere_the_request_is_refused_with_507(tmp_path, monkeypatch):
    with tiny_tmpfs(tmp_path / "shm") as shm, tiny_tmpfs(tmp_path / "tmp") as tmp:
        monkeypatch.setattr(decoding, "SHARED_MEMORY", str(shm))
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        with pytest.raises(InsufficientStorage, match="no room") as refused:
            spool_all(chunks(4 * ROOM, 16 * 1024))
        assert status_of(refused.value) == 507
        assert not list(shm.iterdir()) and not list(tmp.iterdir())  # nothing left behind
