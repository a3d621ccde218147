"""A streaming ``multipart/form-data`` reader: file parts go straight to disk (hashed on
the way), small text parts stay in memory, and every size is capped while the body
arrives. The whole body is never held in memory."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from layerserve.service.errors import InvalidInput, PayloadTooLarge
from layerserve.service.protocols.body import declared_size

FLUSH_BYTES = 1024 * 1024  # file data gathered before one write off the event loop
HEADROOM_BYTES = 64 * 1024  # boundaries and part headers around the parts


@dataclass(frozen=True)
class FormSpec:
    """The parts a form may have. Parts named in ``files`` are written to disk whether
    or not the client marked them as files, the others kept as text."""

    files: frozenset[str]
    texts: frozenset[str]
    max_file_bytes: int
    max_text_bytes: int = 1024 * 1024

    @property
    def max_body_bytes(self) -> int:
        return (
            self.max_file_bytes * len(self.files)
            + self.max_text_bytes * len(self.texts)
            + HEADROOM_BYTES
        )

    def expected(self) -> str:
        return ", ".join(f"'{n}'" for n in sorted(self.files | self.texts))


@dataclass
class UploadedFile:
    path: Path
    filename: str | None
    size: int = 0
    sha256: str = ""


@dataclass
class Form:
    files: dict[str, UploadedFile] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


async def read_form(
    chunks: AsyncIterable[bytes],
    content_type: str | None,
    content_length: str | None,
    directory: Path,
    spec: FormSpec,
) -> Form:
    """Parse the body into ``directory`` (file parts as ``<directory>/<name>.part``).
    InvalidInput for a malformed form, PayloadTooLarge past a cap; on either, files
    already written stay in ``directory`` for the caller to remove."""
    boundary = _boundary(content_type)
    _check_declared_size(content_length, spec)
    reader = _Reader(directory, spec)
    parser = MultipartParser(boundary, reader.callbacks())
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > spec.max_body_bytes:
                raise PayloadTooLarge(_too_large(f"more than {spec.max_body_bytes}", spec))
            parser.write(chunk)
            await reader.flush(force=False)
        parser.finalize()
        await reader.flush(force=True)
    except FormParserError as exc:
        raise InvalidInput(f"invalid multipart/form-data body: {exc}") from exc
    finally:
        await asyncio.to_thread(reader.close)
    if not reader.ended:
        raise InvalidInput(
            "the multipart/form-data body ended before its closing boundary "
            f"(received {received} bytes)"
        )
    return reader.form


def _check_declared_size(content_length: str | None, spec: FormSpec) -> None:
    size = declared_size(content_length)
    if size is not None and size > spec.max_body_bytes:
        raise PayloadTooLarge(_too_large(str(size), spec))


def _too_large(size: str, spec: FormSpec) -> str:
    return (
        f"upload of {size} bytes exceeds the maximum of {spec.max_body_bytes} bytes: "
        f"{spec.max_file_bytes} bytes per file plus the form's other fields"
    )


def _boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput(
            "expected a multipart/form-data body with a boundary; received Content-Type "
            f"{content_type!r}"
        )
    return boundary


@dataclass
class _Part:
    name: str
    upload: UploadedFile | None = None
    handle: BinaryIO | None = None
    digest: Any = None
    text: bytearray = field(default_factory=bytearray)


class _Reader:
    """python_multipart callbacks; they run on the event loop, so file data is only
    gathered here and written by :meth:`flush` in a worker thread."""

    def __init__(self, directory: Path, spec: FormSpec) -> None:
        self.directory = directory
        self.spec = spec
        self.form = Form()
        self.ended = False
        self._part: _Part | None = None
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._pending: list[tuple[_Part, bytes]] = []
        self._pending_bytes = 0
        self._finished: list[_Part] = []
        self._open: list[_Part] = []

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = _text(options.get(b"name"), "part name")
        if not name:
            raise InvalidInput("a multipart part has no name in its Content-Disposition")
        if name not in self.spec.files | self.spec.texts:
            raise InvalidInput(
                f"unexpected form field '{name}'; expected fields: {self.spec.expected()}"
            )
        if name in self.form.files or name in self.form.texts or name in self._names_open():
            raise InvalidInput(f"form field '{name}' was sent more than once")
        part = _Part(name)
        if name in self.spec.files:
            filename = _text(options.get(b"filename"), "file name")
            # Only the last path component is meaningful; clients may send full paths.
            filename = filename.replace("\\", "/").rsplit("/", 1)[-1] if filename else None
            part.upload = UploadedFile(self.directory / f"{name}.part", filename or None)
            part.digest = hashlib.sha256()
        self._part = part
        self._open.append(part)

    def _names_open(self) -> set[str]:
        return {p.name for p in self._open}

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is None:
            return
        size = end - start
        if part.upload is None:
            if len(part.text) + size > self.spec.max_text_bytes:
                raise PayloadTooLarge(
                    f"form field '{part.name}' exceeds {self.spec.max_text_bytes} bytes"
                )
            part.text.extend(data[start:end])
            return
        part.upload.size += size
        if part.upload.size > self.spec.max_file_bytes:
            raise PayloadTooLarge(
                f"uploaded file '{part.name}' exceeds the maximum upload size of "
                f"{self.spec.max_file_bytes} bytes"
            )
        self._pending.append((part, data[start:end]))
        self._pending_bytes += size

    def on_part_end(self) -> None:
        part, self._part = self._part, None
        if part is None:
            return
        if part.upload is None:
            try:
                self.form.texts[part.name] = part.text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"form field '{part.name}' is not UTF-8 text: {exc}") from exc
            self._open.remove(part)
        else:
            self._finished.append(part)

    def on_end(self) -> None:
        self.ended = True

    async def flush(self, force: bool) -> None:
        if (self._pending_bytes >= FLUSH_BYTES or force) and (self._pending or self._finished):
            pending, finished = self._pending, self._finished
            self._pending, self._pending_bytes, self._finished = [], 0, []
            await asyncio.to_thread(self._write, pending, finished)

    def _write(self, pending: list[tuple[_Part, bytes]], finished: list[_Part]) -> None:
        for part, data in pending:
            if part.handle is None and part.upload is not None:
                part.handle = open(part.upload.path, "wb")  # noqa: SIM115 - closed below
            if part.handle is not None:
                part.handle.write(data)
                part.digest.update(data)
        for part in finished:
            if part.upload is None:
                continue
            if part.handle is None:  # an empty file part
                part.upload.path.write_bytes(b"")
            else:
                part.handle.close()
                part.handle = None
            part.upload.sha256 = part.digest.hexdigest()
            self.form.files[part.name] = part.upload
            self._open.remove(part)

    def close(self) -> None:
        for part in self._open:
            if part.handle is not None:
                part.handle.close()


def _text(value: bytes | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the multipart {what} is not UTF-8: {exc}") from exc
