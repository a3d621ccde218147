"""A large body spooled to ``/dev/shm`` that does not fit there (a container's is small)
goes on in the temporary directory, whole; with no room there either the request is
refused with 507, never a 500. Real tmpfs mounts of a few KiB stand in for full disks."""

from __future__ import annotations

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


def chunks(total: int, size: int = 16 * 1024) -> list[bytes]:
    data = os.urandom(total)
    return [data[i : i + size] for i in range(0, total, size)]


def test_a_body_larger_than_shared_memory_is_spooled_whole_to_the_temporary_directory(
    tmp_path, monkeypatch
):
    with tiny_tmpfs(tmp_path / "shm") as shm:
        monkeypatch.setattr(decoding, "SHARED_MEMORY", str(shm))
        parts = chunks(4 * ROOM)
        with decoding.Spool() as spool:
            for part in parts:
                spool.write(part)
            assert spool.path.parent == Path(tempfile.gettempdir())
            assert spool.path.read_bytes() == b"".join(parts)
            assert spool.size == 4 * ROOM
            assert not list(shm.iterdir())  # the shared-memory file is gone
        assert not spool.path.exists()


def test_with_no_room_anywhere_the_request_is_refused_with_507(tmp_path, monkeypatch):
    with tiny_tmpfs(tmp_path / "shm") as shm, tiny_tmpfs(tmp_path / "tmp") as tmp:
        monkeypatch.setattr(decoding, "SHARED_MEMORY", str(shm))
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        with pytest.raises(InsufficientStorage, match="no room") as refused:
            with decoding.Spool() as spool:
                for part in chunks(4 * ROOM):
                    spool.write(part)
        assert status_of(refused.value) == 507
        assert not list(shm.iterdir()) and not list(tmp.iterdir())  # nothing left behind
