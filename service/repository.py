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
from layerserve.service.model_config import ModelConfig
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings

log = logging.getLogger("layerserve.service")
# \Z, not $: "$" also matches before a trailing newline ("abc\n").
MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")  # never "." or ".."
MODEL_FILE = "model.onnx"
UNLOADED = "unloaded"  # the reason of a model unloaded on request


@dataclass
class ModelState:
    """What the repository knows of one model: its loaded versions and its state."""

    name: str
    versions: dict[str, LoadedModel] = field(default_factory=dict)
    state: str = "UNAVAILABLE"
    reason: str = ""

    def latest(self) -> LoadedModel:
        return self.versions[max(self.versions, key=int)]


class ModelRepository:
    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = Path(root)
        self.settings = settings
        self._models: dict[str, ModelState] = {}
        self._lock = threading.Lock()

    # ---- discovery and loading ---------------------------------------------------
    def model_names_on_disk(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and MODEL_NAME.match(p.name) and _versions(p)
        )

    def load_all(self) -> None:
        names = self.model_names_on_disk()
        with self._lock:  # known at once, so that requests meanwhile get 503, not 404
            for name in names:
                self._models.setdefault(name, ModelState(name, state="LOADING"))
        for name in names:
            try:
                self.load(name)
            except ModelLoadError as exc:
                log.error("model %s did not load: %s", name, exc)

    def load(self, name: str) -> ModelState:
        """(Re)load every version of ``name``; the old versions serve until it is done."""
        model_dir = self.root / name
        if not MODEL_NAME.match(name) or not model_dir.is_dir() or not _versions(model_dir):
            raise ModelNotFound(
                f"Request for unknown model: '{name}' is not found in the model repository"
            )
        with self._lock:
            state = self._models.setdefault(name, ModelState(name))
            if not state.versions:
                state.state, state.reason = "LOADING", ""
        try:
            config = ModelConfig.read(model_dir).resolved(self.settings)
            loaded = {
                v: LoadedModel.load(name, v, model_dir / v / MODEL_FILE, config)
                for v in _versions(model_dir)
            }
        except ModelLoadError as exc:
            with self._lock:
                if not state.versions:
                    state.state, state.reason = "UNAVAILABLE", str(exc)
            raise
        with self._lock:
            state.versions, state.state, state.reason = loaded, "READY", ""
        log.info(
            "model %s ready: versions %s on %s",
            name,
            sorted(loaded, key=int),
            state.latest().providers,
        )
        return state

    def unload(self, name: str) -> None:
        with self._lock:
            state = self._models.get(name)
            if state is None:
                raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
            state.versions, state.state, state.reason = {}, "UNAVAILABLE", UNLOADED

    def add_version(self, model: LoadedModel) -> None:
        """Serve ``model``, loaded from its published directory, beside the model's other
        versions, which serve on untouched."""
        with self._lock:
            state = self._models.setdefault(model.name, ModelState(model.name))
            # A new dict, not an update: readers iterate over the one they took.
            state.versions = {**state.versions, model.version: model}
            state.state, state.reason = "READY", ""
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
        """Every model found on disk is loaded. An empty repository is ready (as in Triton):
        the server answers, and models arrive by upload or load."""
        states = {s.name: s for s in self.states()}
        names = set(self.model_names_on_disk()) | set(states)
        if not names:
            return True
        settled = all(
            n in states and (states[n].state == "READY" or states[n].reason == UNLOADED)
            for n in names
        )
        return settled and any(s.versions for s in states.values())


def _versions(model_dir: Path) -> list[str]:
    return sorted(
        (
            p.name
            for p in model_dir.iterdir()
            if p.is_dir() and p.name.isdigit() and (p / MODEL_FILE).is_file()
        ),
        key=int,
    )


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
