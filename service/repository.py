"""The model repository on disk, Triton's layout: ``<repo>/<model>/<version>/model.onnx``
with an optional ``<repo>/<model>/config.json``. Every version on disk is loaded and
addressable; requests without a version get the highest."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from layerserve.service.errors import ModelLoadError, ModelNotFound, ModelNotReady
from layerserve.service.repository_scan import MODEL_FILE, Fingerprint, scan_model
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings
from layerserve.service.storage import is_version_name

log = logging.getLogger("layerserve.service")
# \Z, not $: "$" also matches before a trailing newline ("abc\n").
# Never "." or "..", nor "stats": GET /v2/models/stats is the statistics of every model.
MODEL_NAME = re.compile(r"^(?!stats\Z)[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
NAME_RULE = (
    "1 to 64 characters among letters, digits, '_', '.' and '-', not starting with "
    "'.' or '-', and not 'stats', the path of every model's statistics "
    f"(pattern {MODEL_NAME.pattern})"
)
UNLOADED = "unloaded"  # the reason of a model unloaded on request


@dataclass
class ModelState:
    """What the repository knows of one model: its loaded versions and its state, and
    what they were loaded from (to see what changed on disk since)."""

    name: str
    versions: dict[str, LoadedModel] = field(default_factory=dict)
    state: str = "UNAVAILABLE"
    reason: str = ""
    # version -> (its files' fingerprint, the config.json digest it was loaded with)
    fingerprints: dict[str, tuple[Fingerprint, str]] = field(default_factory=dict)
    # version -> ((fingerprint, config digest), why) of a load that failed: not retried by
    # a poll until the fingerprint or the digest changes (an explicit load retries it).
    failed: dict[str, tuple[tuple[Fingerprint, str], str]] = field(default_factory=dict)
    optional: bool = False  # not needed for readiness until it served once
    errors: list[str] = field(default_factory=list)  # of the latest convergence
    # Versions the latest convergence left for a later one: their files changed within
    # the settle time (a copy may be in progress).
    settling: frozenset[str] = frozenset()

    @property
    def settled(self) -> bool:
        return self.state == "READY" or self.reason == UNLOADED or self.optional

    def latest(self) -> LoadedModel:
        return self.versions[max(self.versions, key=int)]


class ModelRepository:
    """The models served, converging to the repository on disk: :meth:`converge` loads
    what appeared or changed there and unloads what went away or the version policy no
    longer selects. Versions that still serve are never reloaded needlessly, and a
    version that fails to reload keeps serving its old files."""

    def __init__(self, root: Path, settings: Settings, joining: bool = False) -> None:
        """``joining``: this is a worker restarted into a serving server, for which every
        model is found after the server's start."""
        self.root = Path(root)
        self.settings = settings
        self._models: dict[str, ModelState] = {}
        self._lock = threading.Lock()
        # Models found from now on are optional for readiness: load_all is done (or the
        # server had started before this worker). Then a model that arrives broken never
        # makes a serving server unready, in any worker.
        self._started = joining

    # ---- discovery and loading ---------------------------------------------------
    def model_names_on_disk(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and MODEL_NAME.match(p.name) and _versions(p)
        )

    def names(self) -> list[str]:
        """Every model folder on disk, and every model served: what a poll converges.
        Folders are not searched for versions here; converging each one reads it once."""
        with self._lock:
            known = set(self._models)
        try:
            folders = {p.name for p in self.root.iterdir() if MODEL_NAME.match(p.name)}
        except OSError:  # missing or unreadable: converge what is known
            folders = set()
        return sorted(known | folders)

    def load_all(self) -> None:
        names = self.model_names_on_disk()
        if not self._started:
            _warn_of_what_serves_nothing(self.root, names)
        with self._lock:  # known at once, so that requests meanwhile get 503, not 404
            for name in names:
                self._models.setdefault(
                    name, ModelState(name, state="LOADING", optional=self._started)
                )
        for name in names:
            self.converge(name)
        self._started = True

    def load(self, name: str) -> ModelState:
        """(Re)load every version of ``name`` its policy selects; the old versions serve
        until it is done. ModelLoadError when none loads."""
        if not MODEL_NAME.match(name) or not _versions(self.root / name):
            raise ModelNotFound(
                f"Request for unknown model: '{name}' is not found in the model repository"
            )
        state = self.converge(name, force=True)
        if state is None:
            raise ModelNotFound(f"Request for unknown model: '{name}' went away")
        if state.errors:  # what loaded serves, the failed versions keep their old files
            raise ModelLoadError("; ".join(state.errors))
        return state

    def converge(
        self,
        name: str,
        force: bool = False,
        settle_seconds: float = 0.0,
        trusted: frozenset[str] = frozenset(),
    ) -> ModelState | None:
        """Serve what ``<repo>/<name>`` holds now. ``force``: reload every selected
        version (an explicit load); ``settle_seconds``: leave new or changed versions
        whose files changed more recently than that for a later call (a copy may be in
        progress), except the ``trusted`` ones (published by a layerserve server).

        The version policy chooses among the versions that can serve: a version still
        being copied, or one that fails to load, never retires the version it would
        replace, and under ``latest`` the next lower version that loads takes its place
        (so that every worker, restarted or not, serves the same versions)."""
        try:
            disk = scan_model(self.root, name) if MODEL_NAME.match(name) else None
        except OSError as exc:  # unreadable is not deleted: what serves serves on
            log.warning("cannot read model %s in the repository: %s", name, exc)
            with self._lock:
                state = self._models.get(name)
                if state is not None:  # the next poll or change reads it again
                    state.settling = frozenset()
            return state
        with self._lock:
            state = self._models.get(name)
            if disk is None:  # deleted, or never had a version
                if state is not None:
                    del self._models[name]
                    log.info("model %s is gone from the repository", name)
                return None
            if state is None:
                # Found after the start (not asked for): it must not make a serving
                # replica unready while it loads, or if it never does.
                state = ModelState(name, state="LOADING", optional=self._started and not force)
                self._models[name] = state
            if disk.unloaded:
                if state.versions or state.reason != UNLOADED:
                    log.info("model %s is unloaded", name)
                state.versions, state.fingerprints, state.errors = {}, {}, []
                state.state, state.reason, state.settling = "UNAVAILABLE", UNLOADED, frozenset()
                return state
            current, fingerprints = dict(state.versions), dict(state.fingerprints)
        if disk.config is None:
            return self._failed(state, disk.config_error, set(disk.versions))
        policy, resolved = disk.config.policy(), disk.config.resolved(self.settings)
        loaded: dict[str, LoadedModel] = {}
        errors: list[str] = []
        unusable: set[str] = set()  # cannot serve now and nothing old serves in its place
        tried: set[str] = set()
        settling: set[str] = set()
        while True:
            selected = policy.select([v for v in disk.versions if v not in unusable])
            waiting = [v for v in selected if v not in tried]
            if not waiting:
                break
            for version in waiting:
                tried.add(version)
                found = disk.versions[version]
                memo = (found.fingerprint, disk.config_digest)
                if version in current and fingerprints.get(version) == memo and not force:
                    continue  # its files and the config are those it serves with
                settled = force or version in trusted or found.quiet_for(settle_seconds)
                failed_as_is = state.failed.get(version, (None, ""))[0] == memo
                if not settled:
                    settling.add(version)
                if (not force and failed_as_is) or not settled:
                    if version not in current:
                        unusable.add(version)
                    continue
                try:
                    path = found.path / MODEL_FILE
                    loaded[version] = LoadedModel.load(name, version, path, resolved)
                except ModelLoadError as exc:
                    state.failed[version] = (memo, str(exc))
                    errors.append(f"version {version}: {exc}")
                    log.error("model %s version %s did not load: %s", name, version, exc)
                    if version not in current:
                        unusable.add(version)
        with self._lock:
            # A new dict: readers keep the one they took.
            state.versions = {v: loaded.get(v) or current[v] for v in selected}
            state.errors, state.settling = errors, frozenset(settling)
            now = {v: (disk.versions[v].fingerprint, disk.config_digest) for v in state.versions}
            state.fingerprints = {
                v: stamp if v in loaded else fingerprints.get(v, stamp) for v, stamp in now.items()
            }
            state.failed = {v: f for v, f in state.failed.items() if v in disk.versions}
            if state.versions:
                state.state, state.reason, state.optional = "READY", "", False
            elif errors:
                state.state, state.reason = "UNAVAILABLE", "; ".join(errors)
            elif not disk.versions or not policy.select(list(disk.versions)):
                state.state = "UNAVAILABLE"
                state.reason = (
                    f"its version policy {policy.describe()} selects none of the versions "
                    f"{sorted(disk.versions, key=int)}"
                )
        if loaded or set(current) != set(state.versions):
            log.info(
                "model %s serves versions %s on %s",
                name,
                sorted(state.versions, key=int),
                state.latest().providers if state.versions else "-",
            )
        return state

    def _failed(self, state: ModelState, reason: str, on_disk: set[str]) -> ModelState:
        """The model's config is unusable: what serves keeps serving (a bad edit must not
        take a model down), but for versions whose folders were removed (``on_disk``: the
        versions still there); with nothing loaded it is unavailable, saying why."""
        with self._lock:
            if state.reason != reason:
                log.error("model %s: %s", state.name, reason)
            # nothing is loaded until the config is fixed: no version waits to settle
            state.reason, state.errors, state.settling = reason, [reason], frozenset()
            gone = sorted(set(state.versions) - on_disk, key=int)
            if gone:
                log.info("model %s: versions %s are gone from the repository", state.name, gone)
                # New dicts: readers keep the ones they took.
                state.versions = {v: m for v, m in state.versions.items() if v in on_disk}
                state.fingerprints = {v: f for v, f in state.fingerprints.items() if v in on_disk}
            if not state.versions:
                state.state = "UNAVAILABLE"
        return state

    def unload(self, name: str) -> None:
        with self._lock:
            state = self._models.get(name)
            if state is None:
                raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
            state.versions, state.state, state.reason = {}, "UNAVAILABLE", UNLOADED
            state.settling = frozenset()

    def add_version(self, model: LoadedModel) -> None:
        """Serve ``model``, loaded from its published directory, beside the model's other
        versions, which serve on untouched."""
        disk = scan_model(self.root, model.name)
        found = disk.versions.get(model.version) if disk else None
        with self._lock:
            state = self._models.setdefault(model.name, ModelState(model.name))
            # A new dict, not an update: readers iterate over the one they took.
            state.versions = {**state.versions, model.version: model}
            state.state, state.reason = "READY", ""
            if found is not None and disk is not None:
                # The config it was loaded with may be older than the config.json now
                # there (an upload reads it before it takes the model's file lock): then
                # no digest is recorded, and the next convergence loads it with the file's.
                current = (
                    disk.config is not None and disk.config.resolved(self.settings) == model.config
                )
                digest = disk.config_digest if current else ""
                state.fingerprints[model.version] = (found.fingerprint, digest)
        log.info("model %s version %s ready on %s", model.name, model.version, model.providers)

    def unload_version(self, name: str, version: str) -> None:
        """Stop serving one version; the model is forgotten with its last version."""
        with self._lock:
            state = self._models.get(name)
            if state is None or version not in state.versions:
                raise ModelNotFound(
                    f"Request for unknown model: '{name}' version {version} is not found"
                )
            state.versions = {v: m for v, m in state.versions.items() if v != version}
            if not state.versions:
                del self._models[name]

    def forget(self, name: str) -> None:
        """Stop serving every version of ``name`` and drop its state (404 afterwards)."""
        with self._lock:
            self._models.pop(name, None)

    def settling(self, name: str) -> bool:
        """Whether the latest convergence of ``name`` left versions to settle."""
        state = self._models.get(name)
        return state is not None and bool(state.settling)

    def serves(self, model: LoadedModel) -> bool:
        """Whether ``model`` is still the loaded object for its name and version."""
        state = self._models.get(model.name)
        return state is not None and state.versions.get(model.version) is model

    # ---- lookup ------------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> LoadedModel:
        with self._lock:
            state = self._models.get(name)
        if state is None:
            raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
        if not state.versions:
            raise ModelNotReady(_not_ready_message(state))
        if version is None or version == "":
            return state.latest()
        if version not in state.versions:
            raise ModelNotFound(
                f"Request for unknown model: '{name}' version {version} is "
                f"not found; available versions: "
                f"{sorted(state.versions, key=int)}"
            )
        return state.versions[version]

    def served_versions(self, name: str) -> dict[str, LoadedModel]:
        with self._lock:
            state = self._models.get(name)
            return dict(state.versions) if state else {}

    def states(self) -> list[ModelState]:
        with self._lock:
            return [self._models[n] for n in sorted(self._models)]

    def index(self) -> list[dict[str, str]]:
        """The repository extension's index: one entry per model version (or model)."""
        entries = []
        known = {s.name: s for s in self.states()}
        for name in sorted(set(known) | set(self.model_names_on_disk())):
            state = known.get(name)
            if state is None or not state.versions:
                entry = {"name": name, "state": state.state if state else "UNAVAILABLE"}
                reason = state.reason if state else "not loaded"
                if reason:
                    entry["reason"] = reason
                entries.append(entry)
                continue
            for version in sorted(state.versions, key=int):
                entries.append({"name": name, "version": version, "state": "READY"})
        return entries

    @property
    def all_ready(self) -> bool:
        """Every model found on disk at start-up, and every one known since, is loaded
        (or unloaded on request). An empty repository is ready (as in Triton): the server
        answers, and models arrive by upload, load or polling. A model copied into the
        repository does not make a serving replica unready while it loads."""
        states = self.states()
        if not states:
            return True
        return all(s.settled for s in states)


def _warn_of_what_serves_nothing(root: Path, names: list[str]) -> None:
    """At the start, name what the repository's top level holds that serves no model: a
    model file copied to the root, or a folder whose layout is not
    ``<model>/<version>/model.onnx`` (a mount laid out for another server would otherwise
    give a ready server serving nothing, and no word of why)."""
    layout = (
        f"a model is served from <repository>/<model>/<version>/{MODEL_FILE}, "
        f"<model> of {NAME_RULE}"
    )
    try:
        # lost+found: an ext4 volume's own, on every such mount
        entries = sorted(
            p for p in root.iterdir() if not p.name.startswith(".") and p.name != "lost+found"
        )
    except OSError:
        entries = []
    served = set(names)
    # quoted: a name on disk is never a log line of its own
    unserved = [
        repr(f"{p.name}/" if p.is_dir() else p.name) for p in entries if p.name not in served
    ]
    if unserved:
        shown = ", ".join(unserved[:10]) + (
            f" and {len(unserved) - 10} more" if unserved[10:] else ""
        )
        log.warning("model repository %s: %s serve no model; %s", root, shown, layout)
    if not names:
        log.warning("model repository %s holds no model to serve; %s", root, layout)


def _versions(model_dir: Path) -> list[str]:
    try:
        folders = [p for p in model_dir.iterdir() if p.is_dir() and is_version_name(p.name)]
    except OSError as exc:  # unreadable: not a model this server can serve now
        log.warning("cannot read %s: %s", model_dir, exc)
        return []
    return sorted((p.name for p in folders if (p / MODEL_FILE).is_file()), key=int)


def _not_ready_message(state: ModelState) -> str:
    """Why a known model serves no version, and what brings it back."""
    load = f"POST /v2/repository/models/{state.name}/load"
    if state.reason == UNLOADED:
        return (
            f"model '{state.name}' has no available versions: it is unloaded; load it "
            f"again with {load}"
        )
    if state.state == "LOADING":
        return f"model '{state.name}' has no available versions yet: it is loading; retry"
    if not state.reason:
        return f"model '{state.name}' has no available versions; load it ({load})"
    return (
        f"model '{state.name}' has no available versions: it failed to load: "
        f"{state.reason}; fix the model in the repository and load it ({load})"
    )
