"""Adding and removing model versions, protocol-neutral: an upload is streamed to a
staging directory, converted to ONNX in a child process with memory and time limits,
loaded once to prove it serves, published with one rename and then served; a deletion
stops serving first and then removes the files. An upload with an idempotency key that
created a version already is answered with that version. The HTTP routes only hand over
the body stream and shape the answers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from layerserve.service import idempotency, storage
from layerserve.service.cluster import Cluster
from layerserve.service.conversion import ConversionLimits, detect_format
from layerserve.service.conversion_process import (
    ConvertedFile,
    ProcessLimits,
    convert_in_child,
    start_forkserver,
)
from layerserve.service.dataplane import DataPlane
from layerserve.service.errors import (
    InvalidInput,
    ModelLoadError,
    ModelNotFound,
    ModelRejected,
    ReadOnlyRepository,
)
from layerserve.service.model_config import ModelConfig
from layerserve.service.model_publish import Publishing
from layerserve.service.model_versions import (
    UPLOAD_RECORD,
    config_bytes,
    describe,
    merge_config,
    parse_config,
    parse_opset,
    read_config,
    required_file,
    safe_stem,
    stage_version,
)
from layerserve.service.protocols.multipart import Form, FormSpec, UploadedFile, read_form
from layerserve.service.repository import MODEL_FILE, MODEL_NAME, NAME_RULE
from layerserve.service.repository_scan import SETTLE_SECONDS
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings

log = logging.getLogger("layerserve.service")
T = TypeVar("T")
CONVERSION_WORKERS = 2  # uploads and exports convert at most this many at once
LOCK_POLL_SECONDS = 0.05  # while another process holds a model's lock


@dataclass(frozen=True)
class Body:
    """A request body as the protocol layer received it."""

    chunks: AsyncIterable[bytes]
    content_type: str | None
    content_length: str | None


@dataclass(frozen=True)
class Uploaded:
    """An upload's answer; ``replayed`` when it repeats the answer of an earlier upload
    with the same idempotency key instead of creating a version."""

    answer: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class Exported:
    onnx_bytes: bytes
    source_format: str
    parity: dict[str, Any] | None
    filename: str

    @property
    def max_abs_error(self) -> float | None:
        value = (self.parity or {}).get("max_abs_error")
        return None if value is None else float(value)


@dataclass(frozen=True)
class OnnxFile:
    """An open handle on a served graph; deleting the version meanwhile does not
    disturb a download already started."""

    filename: str
    handle: BinaryIO
    size: int


def check_known_name(name: str) -> None:
    """A name no model can have is not found (before any lock or file is touched)."""
    if not MODEL_NAME.match(name):
        raise ModelNotFound(f"Request for unknown model: '{name}' is not found")


def check_name(name: str) -> None:
    if not MODEL_NAME.match(name):
        raise InvalidInput(f"invalid model name {name!r}: expected {NAME_RULE}")


class ModelAdmin(Publishing):
    def __init__(
        self, plane: DataPlane, settings: Settings, cluster: Cluster | None = None
    ) -> None:
        self.plane = plane
        self.settings = settings
        self.cluster = cluster or Cluster()
        self.root = Path(settings.model_repository)
        self.read_only = settings.read_only or not storage.writable(self.root)
        self.limits = ConversionLimits(
            max_unpacked_bytes=settings.max_unpacked_bytes,
            max_config_bytes=settings.max_config_bytes,
        )
        self.process = ProcessLimits(
            settings.conversion_memory_bytes, settings.conversion_timeout_seconds
        )
        # Conversions and first loads: bounded, and apart from the inference threads, so
        # that uploads never starve inference.
        self._pool = ThreadPoolExecutor(CONVERSION_WORKERS, thread_name_prefix="convert")
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Models with versions left to settle, and when they are looked at again.
        self._second_looks: dict[str, asyncio.TimerHandle] = {}
        self._looking: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        """Start the converters' forkserver in the background, so that the first upload
        does not wait for its imports (about 0.5 s); without it, that upload starts it."""
        self._pool.submit(start_forkserver)

    async def stop_looking(self) -> None:
        """No second look from now on (on the event loop: its timers and tasks are the
        loop's); those running end first."""
        self._closed = True
        for handle in self._second_looks.values():
            handle.cancel()
        self._second_looks.clear()
        await asyncio.gather(*self._looking, return_exceptions=True)

    def close(self) -> None:
        """Let running conversions finish (their staging dirs are removed either way)."""
        self._pool.shutdown(wait=True)

    # ---- upload --------------------------------------------------------------------
    async def upload(
        self, name: str, body: Body, idempotency_keys: list[str] | None = None
    ) -> Uploaded:
        """Store ``body``'s model as the next version of ``name`` and serve it; the new
        version's description. Nothing is left on disk when any step fails. With an
        idempotency key (the header's values) that created a version already, that
        version is answered and nothing is converted or stored."""
        check_name(name)
        self._check_writable("upload a model")
        key = idempotency.parse_key(idempotency_keys or [])
        staging = await asyncio.to_thread(storage.new_staging_dir, self.root)
        try:
            form = await self._read(body, staging, texts=("config",))
            upload = required_file(form)
            config = parse_config(form.texts.get("config"))
            keyed = None
            if key is not None:
                normalized = None if config is None else config_bytes(config)
                digest = idempotency.request_digest(upload.sha256, upload.filename, normalized)
                keyed = idempotency.record(key, digest)
                if replay := await self._replay(name, keyed):  # a retry: nothing to convert
                    return replay
            converted = await self._convert(upload, staging)
            staged = staging / "version"
            record = await asyncio.to_thread(stage_version, staged, upload, converted, keyed)
            async with self.lock(name):
                if keyed is not None:  # the key is looked for and published under one lock
                    async with self._file_lock(name):
                        if replay := await self._replay(name, keyed):
                            return replay  # a concurrent attempt with the key published first
                        loaded = await self._loads(name, staged, config)
                        answer = await self._publish(name, staged, config, record, loaded)
                else:  # a refused upload leaves not even a lock file behind
                    loaded = await self._loads(name, staged, config)
                    async with self._file_lock(name):
                        answer = await self._publish(name, staged, config, record, loaded)
            await self.cluster.converge_siblings(name, trusted=(answer["version"],))
            self.look_again_once_settled(name)
            return Uploaded(answer)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _replay(self, name: str, keyed: dict[str, str]) -> Uploaded | None:
        """The answer of the version created with ``keyed``'s key, if there is one."""
        found = await asyncio.to_thread(
            idempotency.find, self.root / name, keyed["key"], keyed["request_sha256"], UPLOAD_RECORD
        )
        if found is None:
            return None
        version, record = found
        try:
            model = self.plane.model(name, version)
        except ModelNotFound:  # published by another process, or unloaded here
            config = await asyncio.to_thread(read_config, self.root / name)
            path = self.root / name / version / MODEL_FILE
            resolved = config.resolved(self.settings)
            try:
                model = await self._in_pool(LoadedModel.load, name, version, path, resolved)
            except ModelLoadError as exc:
                raise ModelNotFound(
                    f"model {name!r} version {version}, which {idempotency.HEADER} "
                    f"{keyed['key']!r} created, does not load now: {exc}"
                ) from exc
        return Uploaded(describe(model, record), replayed=True)

    @contextlib.asynccontextmanager
    async def changing(self, name: str) -> AsyncIterator[None]:
        """Held while this server deletes, loads or unloads model ``name``: the model's
        lock in this process, then its lock file (uploads take the two themselves), so
        that the workers and replicas sharing the repository change a model one at a
        time (two deletes of one version, an upload's undo beside another's publish, a
        keyed upload looking for its key). The file lock is polled, so that a cancelled
        request leaves no lock taken; a read-only server changes nothing and takes no
        file lock, nor does a change to a model that is not on disk."""
        async with self.lock(name):
            on_disk = await asyncio.to_thread((self.root / name).is_dir)
            if self.read_only or not on_disk:  # not on disk: nothing there to change
                yield
                return
            async with self._file_lock(name):
                yield

    @contextlib.asynccontextmanager
    async def _file_lock(self, name: str) -> AsyncIterator[None]:
        descriptor = await asyncio.to_thread(storage.open_model_lock, self.root, name)
        try:
            while not storage.try_lock(descriptor):
                await asyncio.sleep(LOCK_POLL_SECONDS)
            yield
        finally:
            os.close(descriptor)

    async def _loads(self, name: str, staged: Path, config: ModelConfig | None) -> LoadedModel:
        """The staged version loaded before it is published: a version that cannot serve
        never appears."""
        model_dir = self.root / name
        if config is not None:
            effective = await asyncio.to_thread(merge_config, model_dir, config)
        else:
            effective = await asyncio.to_thread(read_config, model_dir)
        try:
            return await self._in_pool(
                LoadedModel.load,
                name,
                "new",
                staged / MODEL_FILE,
                effective.resolved(self.settings),
            )
        except ModelLoadError as exc:
            cause = str(exc).replace(str(staged / MODEL_FILE), "model.onnx")
            raise ModelRejected(
                f"the uploaded model does not load in onnxruntime; nothing was stored: {cause}"
            ) from exc

    # ---- export --------------------------------------------------------------------
    async def export(self, body: Body) -> Exported:
        """Convert a Keras-family file to ONNX in a temporary directory; nothing stays."""
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="layerserve-export-"))
        try:
            form = await self._read(body, workdir, texts=("opset",))
            upload = required_file(form)
            opset = parse_opset(form.texts.get("opset"))
            source = await self._in_pool(detect_format, upload.path, upload.filename)
            if source == "onnx":
                raise ModelRejected(
                    f"'{upload.filename or 'file'}' is ONNX, or not a Keras file (it is no "
                    "HDF5 file, zip archive or JSON text): nothing to export. Upload an ONNX "
                    "model with POST /v1/models/{name}, which checks it and serves it"
                )
            converted = await self._convert(upload, workdir, opset=opset)
            data = await asyncio.to_thread(converted.onnx_path.read_bytes)
            filename = f"{safe_stem(upload.filename)}.onnx"
            return Exported(data, converted.source_format, converted.parity, filename)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    # ---- delete and download -------------------------------------------------------
    async def delete(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Stop serving the version (or every version) after the requests already
        queued or running on it, then remove its files."""
        if not MODEL_NAME.match(name):
            raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
        self._check_writable("delete a model")
        try:
            return await self._delete(name, version)
        finally:  # whatever happened on disk, every worker serves it
            await self.cluster.converge_siblings(name, settle_seconds=0.0)

    async def _delete(self, name: str, version: str | None) -> dict[str, Any]:
        async with self.changing(name):
            model_dir = self.root / name
            served = {m.version for m in self.plane.loaded_models() if m.name == name}
            known = name in {s.name for s in self.plane.repository.states()}
            if version is None:
                on_disk = await asyncio.to_thread(model_dir.is_dir)
                if not known and not on_disk:
                    raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
                await self.plane.forget(name)
                if on_disk:
                    await asyncio.to_thread(storage.remove_dir, self.root, model_dir)
            else:
                version_dir = model_dir / version
                on_disk = storage.is_version_name(version) and (
                    await asyncio.to_thread(version_dir.is_dir)
                )
                if version not in served and not on_disk:
                    raise ModelNotFound(
                        f"Request for unknown model: '{name}' version {version} is not "
                        f"found; available versions: {sorted(served, key=int)}"
                    )
                if version in served:
                    await self.plane.unload_version(name, version)
                if on_disk:
                    await asyncio.to_thread(storage.remove_dir, self.root, version_dir)
            left = await asyncio.to_thread(storage.numeric_entries, model_dir)
            if version is None or not left:
                await asyncio.to_thread(storage.clear_unloaded, self.root, name)
            else:  # the version policy may now select a version the delete left
                await self.plane.converge(name)
        return {"name": name, "version": version, "deleted": True}

    async def open_onnx(self, name: str, version: str | None = None) -> OnnxFile:
        model = self.plane.model(name, version)
        try:
            handle = await asyncio.to_thread(open, model.path, "rb")
        except FileNotFoundError as exc:
            raise ModelNotFound(
                f"model '{name}' version {model.version} was deleted meanwhile"
            ) from exc
        size = os.fstat(handle.fileno()).st_size
        return OnnxFile(f"{name}-{model.version}.onnx", handle, size)

    # ---- helpers -------------------------------------------------------------------
    async def _read(self, body: Body, directory: Path, texts: tuple[str, ...]) -> Form:
        spec = FormSpec(
            files=frozenset({"file"}),
            texts=frozenset(texts),
            max_file_bytes=self.settings.max_upload_bytes,
        )
        return await read_form(body.chunks, body.content_type, body.content_length, directory, spec)

    # ---- repository extension ---------------------------------------------------------
    async def load(self, name: str) -> None:
        """(Re)load a model from disk, in turn with uploads and deletes of the same name,
        so that a load cannot bring back a version a delete is removing. A read-only
        server reloads too: that writes nothing."""
        check_known_name(name)
        try:
            await self._load(name)
        finally:  # also after a failed load: what loaded here loads everywhere
            await self.cluster.converge_siblings(name, force=True, settle_seconds=0.0)

    async def _load(self, name: str) -> None:
        async with self.changing(name):
            mark = self.root / storage.UNLOADED_DIR / name
            if not self.read_only:
                await asyncio.to_thread(storage.clear_unloaded, self.root, name)
            elif await asyncio.to_thread(mark.exists):
                raise ReadOnlyRepository(
                    f"cannot load model '{name}': it was unloaded through a server that can "
                    f"write the model repository (the mark {str(mark)!r}); load it there, "
                    "or remove that file"
                )
            await self.plane.load(name)

    async def unload(self, name: str) -> None:
        """Stop serving a model, on every worker and replica sharing the repository: the
        mark is on disk first."""
        check_known_name(name)
        self._check_writable("unload a model")
        marked = False
        try:
            async with self.changing(name):
                if name not in {s.name for s in self.plane.repository.states()}:
                    raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
                marked = True
                await asyncio.to_thread(storage.mark_unloaded, self.root, name)
                await self.plane.unload(name)
        finally:
            # Once the locks are released, as every change does: a sibling converging
            # waits for them, and would wait out the request's own wait for it.
            if marked:
                await self.cluster.converge_siblings(name)

    async def converge(
        self,
        name: str,
        settle_seconds: float = SETTLE_SECONDS,
        force: bool = False,
        trusted: frozenset[str] = frozenset(),
    ) -> None:
        """Serve what the repository holds for ``name`` now, in turn with this server's
        own changes to it."""
        async with self.lock(name):
            await self.plane.converge(name, settle_seconds, force, trusted)
        self.look_again_once_settled(name)

    def look_again_once_settled(self, name: str) -> None:
        """Converge ``name`` again once the versions its latest convergence left to
        settle may have (a copy in progress, or a version published by an upload a moment
        before): whether the repository is polled or not, so that a worker never keeps
        serving less than a worker that reads the repository later."""
        if self._closed or name in self._second_looks:
            return
        if not self.plane.repository.settling(name):
            return

        def look() -> None:
            del self._second_looks[name]
            task = asyncio.create_task(self._second_look(name), name=f"second-look-{name}")
            self._looking.add(task)
            task.add_done_callback(self._looking.discard)

        self._second_looks[name] = asyncio.get_running_loop().call_later(SETTLE_SECONDS, look)

    async def _second_look(self, name: str) -> None:
        try:
            await self.converge(name)
        except Exception:  # as a poll: logged, and the next change or poll tries again
            log.exception("reading model %s in the repository failed", name)

    def _check_writable(self, action: str) -> None:
        if self.read_only:
            why = "--read-only is set" if self.settings.read_only else "it cannot be written"
            raise ReadOnlyRepository(
                f"cannot {action}: this server serves the model repository "
                f"{str(self.root)!r} read-only ({why}); models come from that directory: "
                "change them there (publish a version by renaming its folder into "
                "<model>/<n>) and every server picks them up"
            )

    async def _convert(
        self, upload: UploadedFile, output_dir: Path, opset: int | None = None
    ) -> ConvertedFile:
        """The upload converted in a child process; its graph lands in ``output_dir``."""
        convert = functools.partial(convert_in_child, opset=opset)
        return await self._in_pool(
            convert, upload.path, upload.filename, self.limits, self.process, output_dir
        )

    async def _in_pool(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    def lock(self, name: str) -> asyncio.Lock:
        """The lock that serialises changes to one model within this process (kept while
        someone holds or awaits it, so that unknown names do not pile up)."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock
