"""Safety checks of uploaded zip archives (``.keras``, layerserve's own zip), done before
anything reads their contents.

The central directory is counted by hand before :mod:`zipfile` parses it (a directory
of millions of tiny entries would otherwise fill memory), every entry's name, type and
declared size is checked, and then every entry is inflated once in a stream that counts
the bytes it really produces: a header that lies about its size is caught, not trusted.
Nothing is extracted except entries the caller names, to paths the caller chooses.
JSON entries (the model's config) have their own, smaller cap: a config is parsed whole
in memory, so a small archive whose config.json inflates to GiBs of whitespace is refused
from its central directory, before any of it is inflated.
"""

from __future__ import annotations

import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from layerserve.service.errors import ModelRejected

CHUNK = 1 << 20
COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s24s3H12s")  # a central directory header, 46 bytes
_LOCAL = struct.Struct("<4s22s2H")
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_zip(
    path: Path,
    *,
    max_unpacked_bytes: int,
    max_entries: int,
    max_config_bytes: int | None = None,
    extract: Mapping[str, Path] | None = None,
) -> list[str]:
    """The entry names of a zip archive that is safe to read, after inflating every entry
    once; entries named in ``extract`` are written to the given paths on the way.
    ``max_config_bytes`` caps each JSON entry (None: only the archive's total)."""
    count_zip_entries(path, max_entries)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelRejected(f"The upload is a truncated or corrupt zip archive: {exc}") from exc
    with archive:
        infos = archive.infolist()
        check_entries(infos, max_unpacked_bytes, max_config_bytes)
        targets = dict(extract or {})
        budget = _Budget(max_unpacked_bytes)
        with path.open("rb") as handle:
            for info in infos:
                _inflate(handle, info, budget, targets.get(info.filename))
    return [info.filename for info in infos]


def count_zip_entries(path: Path, max_entries: int) -> int:
    """Walks the central directory's fixed-size headers, stopping past ``max_entries``."""
    with path.open("rb") as handle:
        start, size = _central_directory(handle)
        handle.seek(start)
        count, position = 0, 0
        while position < size:
            header = handle.read(_CENTRAL.size)
            if len(header) < _CENTRAL.size or header[:4] != b"PK\x01\x02":
                raise ModelRejected(
                    "The upload is a corrupt zip archive: its central directory is damaged."
                )
            name, extra, comment = struct.unpack("<3H", header[28:34])
            handle.seek(name + extra + comment, 1)
            position += _CENTRAL.size + name + extra + comment
            count += 1
            if count > max_entries:
                raise ModelRejected(
                    f"Expected an archive of at most {max_entries} entries. Received: an "
                    f"archive with more than {max_entries} entries."
                )
    return count


def _central_directory(handle: BinaryIO) -> tuple[int, int]:
    """``(offset, size)`` of the central directory, found as :mod:`zipfile` finds it."""
    size_of_file = handle.seek(0, 2)
    tail_start = max(0, size_of_file - (1 << 16) - _END.size)
    handle.seek(tail_start)
    tail = handle.read()
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or found + _END.size > len(tail):
        raise ModelRejected(
            "The upload is a truncated or corrupt zip archive: no end of central directory."
        )
    end = tail_start + found
    *_, size, _offset, _comment = _END.unpack_from(tail, found)
    start = end - size
    if found >= _END64_LOCATOR.size:
        locator = _END64_LOCATOR.unpack_from(tail, found - _END64_LOCATOR.size)
        if locator[0] == b"PK\x06\x07":
            record_at = found - _END64_LOCATOR.size - _END64.size
            if record_at < 0 or tail[record_at : record_at + 4] != b"PK\x06\x06":
                raise ModelRejected("The upload is a corrupt zip64 archive.")
            size = _END64.unpack_from(tail, record_at)[-2]
            start = end - _END64_LOCATOR.size - _END64.size - size
    if start < 0:
        raise ModelRejected(
            "The upload is a corrupt zip archive: its central directory lies outside the file."
        )
    return start, size


def check_entries(
    infos: list[zipfile.ZipInfo], max_unpacked_bytes: int, max_config_bytes: int | None = None
) -> None:
    """Names that stay inside their folder, regular files only, JSON entries within
    ``max_config_bytes`` and a declared total size within the cap. The sizes are the
    central directory's; :func:`_inflate` holds every entry to its declared size, so an
    entry that lies about it is caught while it inflates."""
    seen: set[str] = set()
    declared = 0
    for info in infos:
        problem = _entry_problem(info)
        if problem:
            raise ModelRejected(
                f"Expected archive entries that are plain files with relative paths inside "
                f"the archive. Received: entry {info.orig_filename!r}, {problem}."
            )
        if info.filename in seen:
            raise ModelRejected(
                f"Expected unique archive entry names. Received: {info.filename!r} twice."
            )
        seen.add(info.filename)
        if max_config_bytes is not None and is_config_entry(info.filename):
            check_config_size(f"entry {info.filename!r}", info.file_size, max_config_bytes)
        declared += info.file_size
    if declared > max_unpacked_bytes:
        raise ModelRejected(
            f"Expected an archive that expands to at most {max_unpacked_bytes} bytes. "
            f"Received: an archive whose entries declare {declared} bytes."
        )


def is_config_entry(name: str) -> bool:
    """JSON entries: config.json and metadata.json of a .keras archive, layerserve.json
    and model.json of layerserve's zip. Each is parsed whole in memory."""
    return name.lower().endswith(".json")


def check_config_size(what: str, size: int, max_config_bytes: int) -> None:
    """Refuses a JSON config of ``size`` bytes past the cap; ``what`` names it."""
    if size > max_config_bytes:
        raise ModelRejected(
            f"Expected the model config {what} to be at most {max_config_bytes} bytes "
            "(setting max_config_bytes, LAYERSERVE_MAX_CONFIG_BYTES; the config of a large "
            f"real model is about 1 MB). Received: {size} bytes."
        )


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.orig_filename
    kind = stat.S_IFMT(info.external_attr >> 16)
    if not name or "\x00" in name:
        return "an empty name or one with a NUL byte"
    if "\\" in name:
        return "a name with a backslash, which some systems read as a folder separator"
    if name.startswith("/") or _DRIVE.match(name):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a path with a '..' component that escapes the archive's folder"
    if kind == stat.S_IFLNK:
        return "a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "a special file (device, pipe or socket)"
    if info.flag_bits & 0x1:
        return "an encrypted entry"
    if info.compress_type not in COMPRESSIONS:
        return (
            f"compression method {info.compress_type}; expected stored or deflate, "
            "which Keras and layerserve write"
        )
    return None


class _Budget:
    """Counts the bytes all entries really expand to."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise ModelRejected(
                f"Expected an archive that expands to at most {self.limit} bytes. Received: "
                f"an archive whose entries expand past that while being read."
            )


def _inflate(handle: BinaryIO, info: zipfile.ZipInfo, budget: _Budget, target: Path | None) -> None:
    """Inflates one entry from its raw bytes, counting and checking what it produces."""
    _seek_to_data(handle, info)
    decompressor = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    remaining, produced, crc = info.compress_size, 0, 0
    # zlib can have consumed all the input and still hold output when a call's output
    # filled CHUNK: then it is asked again with no input.
    pending = False
    sink = target.open("wb") if target is not None else None
    try:
        while remaining or (decompressor and (decompressor.unconsumed_tail or pending)):
            if decompressor and decompressor.unconsumed_tail:
                raw = decompressor.unconsumed_tail
            elif remaining:
                raw = handle.read(min(CHUNK, remaining))
                if not raw:
                    raise _corrupt(info, "its data is truncated")
                remaining -= len(raw)
            else:
                raw = b""
            data = decompressor.decompress(raw, CHUNK) if decompressor else raw
            pending = decompressor is not None and len(data) == CHUNK and not decompressor.eof
            produced += len(data)
            if produced > info.file_size:
                raise ModelRejected(
                    f"Expected entry {info.filename!r} to expand to the {info.file_size} bytes "
                    "its header declares. Received: an entry that expands to more."
                )
            budget.spend(len(data))
            crc = zlib.crc32(data, crc)
            if sink is not None:
                sink.write(data)
        if decompressor is not None and not decompressor.eof:
            raise _corrupt(info, "its compressed data ends early")
    except zlib.error as exc:
        raise _corrupt(info, f"its compressed data is invalid ({exc})") from exc
    finally:
        if sink is not None:
            sink.close()
    if produced != info.file_size or crc != info.CRC:
        raise _corrupt(info, "its size or checksum does not match its header")


def _seek_to_data(handle: BinaryIO, info: zipfile.ZipInfo) -> None:
    handle.seek(info.header_offset)
    header = handle.read(_LOCAL.size)
    if len(header) < _LOCAL.size or header[:4] != b"PK\x03\x04":
        raise _corrupt(info, "its local header is missing")
    _, _, name_length, extra_length = _LOCAL.unpack(header)
    raw_name = handle.read(name_length)
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if raw_name.decode(encoding, errors="replace") != info.orig_filename:
        raise _corrupt(info, "its local header names a different file")
    handle.seek(extra_length, 1)


def _corrupt(info: zipfile.ZipInfo, why: str) -> ModelRejected:
    return ModelRejected(f"The archive entry {info.filename!r} is corrupt: {why}.")
