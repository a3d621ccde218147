"""Atomic changes to the model repository on disk.

A version is built whole in ``<repo>/.staging/<dir>/`` (the same filesystem), synced, and
published with one ``os.rename`` to ``<repo>/<model>/<version>``: it appears whole or not
at all, even if the process dies half-way. Deletions rename the version (or model) into
``.staging`` first and remove it there. Start-up removes what dead processes left in
``.staging``; the repository scan never looks there (model names cannot start with ".").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import socket
import time
from pathlib import Path

log = logging.getLogger("layerserve.service")

STAGING = ".staging"
VERSIONS_DIR = ".versions"  # <repo>/.versions/<name>: the highest version published
CONFIG_FILE = "config.json"
# <repo>/.unloaded/<name>: the model was unloaded through the API; every worker and
# replica sharing the repository leaves it unloaded until a load removes the mark.
UNLOADED_DIR = ".unloaded"
# <repo>/.locks/<name>: locked (flock) while an upload with an idempotency key checks the
# keys of the model's versions and publishes its own, also against other processes.
LOCKS_DIR = ".locks"
# rename() onto an existing non-empty directory fails with one of these.
_TAKEN = {errno.EEXIST, errno.ENOTEMPTY}


def staging_root(repository: Path) -> Path:
    root = Path(repository) / STAGING
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        fsync_dir(root.parent)
    return root


def new_staging_dir(repository: Path, kind: str = "upload") -> Path:
    """An empty private directory under ``.staging``; its name carries this process's id
    and host so that start-up clean-up spares directories of other live processes, here
    and on the other replicas sharing the repository."""
    path = staging_root(repository) / _staging_name(kind)
    path.mkdir()
    return path


def _staging_name(kind: str) -> str:
    return f"{kind}-{os.getpid()}-{HOST}-{secrets.token_hex(8)}"


def _this_host() -> str:
    """This machine and process namespace, as 12 hex digits: replicas sharing a volume
    have their own pid namespaces, where the same pid means another process."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return hashlib.sha256(f"{socket.gethostname()}/{namespace}".encode()).hexdigest()[:12]


HOST = _this_host()
# Another host's leftovers: its process may still be writing them; removed only when
# nothing in them changed for this long (longer than any upload or conversion).
FOREIGN_STALE_SECONDS = 24 * 3600


def remove_stale_staging(repository: Path) -> list[str]:
    """Remove what dead processes (or an earlier life of this one) left in ``.staging``;
    the names removed."""
    root = Path(repository) / STAGING
    if not root.is_dir():
        return []
    removed = []
    for entry in sorted(root.iterdir()):
        if _owner_alive(entry):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        except OSError as exc:  # e.g. a read-only repository: serve it anyway
            log.warning("cannot remove %s: %s", entry, exc)
            continue
        removed.append(entry.name)
    if removed:
        log.warning("removed %d unfinished upload(s) or deletion(s) from %s", len(removed), root)
    return removed


def _owner_alive(entry: Path) -> bool:
    """Whether the process that made ``entry`` may still be using it: a live process of
    this host, or another host's entry that changed within FOREIGN_STALE_SECONDS."""
    parts = entry.name.split("-")
    if len(parts) < 4 or not is_version_name(parts[1]):  # a pid: ASCII digits
        return False
    if parts[2] != HOST:
        try:
            return time.time() - entry.stat().st_mtime < FOREIGN_STALE_SECONDS
        except OSError:
            return False
    pid = int(parts[1])
    if pid == os.getpid():  # a restarted container often gets the same pid again
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_file(path: Path, data: bytes) -> None:
    """Write and fsync ``path`` (a new file inside a staging directory)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` in one step: a synced temporary file beside it, then os.replace."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(path: Path) -> None:
    """fsync every file and directory under ``path`` (deepest first), and ``path``."""
    for root, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(Path(root))


def is_version_name(name: str) -> bool:
    """A version folder's name: a number in ASCII digits ("²" is a digit to
    str.isdigit), written without leading zeros: "07" beside "7" would be two folders
    for one version, which Triton and TF Serving both read as 7."""
    return name.isascii() and name.isdigit() and (name == "0" or not name.startswith("0"))


def numeric_entries(model_dir: Path) -> list[int]:
    """Every all-digit name in ``model_dir``, loaded or not: a new version never reuses
    one, so a rename can only collide with a version that is being published."""
    if not model_dir.is_dir():
        return []
    return [int(p.name) for p in model_dir.iterdir() if is_version_name(p.name)]


def ensure_model_dir(repository: Path, name: str) -> tuple[Path, bool]:
    """``<repo>/<name>``, created (and synced) if missing; whether it was created."""
    model_dir = Path(repository) / name
    try:
        model_dir.mkdir()
    except FileExistsError:
        return model_dir, False
    fsync_dir(model_dir.parent)
    return model_dir, True


def publish_version(repository: Path, name: str, staged: Path) -> str:
    """Move the synced directory ``staged`` to ``<repo>/<name>/<n>`` with n one above the
    highest existing number; on a collision (another process published n meanwhile) try
    the next number. Returns the version."""
    model_dir, _ = ensure_model_dir(repository, name)
    version = next_version(repository, name)
    while True:
        try:
            os.rename(staged, model_dir / str(version))
        except OSError as exc:
            if exc.errno not in _TAKEN:
                raise
            version = max([version, *numeric_entries(model_dir)]) + 1
            continue
        fsync_dir(model_dir)
        _record_published(repository, name, version)
        return str(version)


def next_version(repository: Path, name: str) -> int:
    """The number the next version of ``name`` gets, unless another process publishes one
    first: one above every version folder and every number ever published."""
    model_dir = Path(repository) / name
    return max([*numeric_entries(model_dir), highest_published(repository, name)]) + 1


def highest_published(repository: Path, name: str) -> int:
    """The highest version ever published for ``name``, also after deletes, so that a
    number never comes back with other contents (clients and caches key on it)."""
    try:
        return int((Path(repository) / VERSIONS_DIR / name).read_text())
    except (OSError, ValueError):
        return 0


def _record_published(repository: Path, name: str, version: int) -> None:
    folder = Path(repository) / VERSIONS_DIR
    folder.mkdir(exist_ok=True)
    if version > highest_published(repository, name):
        write_atomic(folder / name, str(version).encode())


def open_model_lock(repository: Path, name: str) -> int:
    """A descriptor of ``name``'s lock file, for :func:`try_lock`; closing it unlocks.
    Lock files stay: removing one while another process waits on it would let a third
    lock a new file with the same name at the same time."""
    folder = Path(repository) / LOCKS_DIR
    folder.mkdir(exist_ok=True)
    return os.open(folder / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def try_lock(descriptor: int) -> bool:
    """Take the exclusive lock without waiting; whether it was free."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def remove_dir(repository: Path, path: Path) -> None:
    """Take ``path`` out of the repository in one rename, then delete it: a crash leaves
    either the whole directory in place or a leftover in ``.staging``."""
    trash = staging_root(repository) / _staging_name("trash")
    try:
        os.rename(path, trash)
    except FileNotFoundError:  # removed meanwhile (by hand): nothing left to do
        return
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def read_optional(path: Path) -> bytes | None:
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    return None


def restore_file(path: Path, content: bytes | None) -> None:
    """Put back what ``read_optional`` returned: the old bytes, or no file."""
    if content is None:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
    else:
        write_atomic(path, content)


def mark_unloaded(repository: Path, name: str) -> None:
    folder = Path(repository) / UNLOADED_DIR
    folder.mkdir(exist_ok=True)
    write_atomic(folder / name, b"")


def clear_unloaded(repository: Path, name: str) -> None:
    path = Path(repository) / UNLOADED_DIR / name
    if path.exists():
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)


def writable(repository: Path) -> bool:
    """Whether this process can change the repository (or create it, when it is missing:
    the nearest folder that exists decides)."""
    path = Path(repository).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK) and not _mounted_read_only(path)


def _mounted_read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
