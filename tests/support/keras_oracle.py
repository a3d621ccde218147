"""Real Keras as the oracle: files written by Keras 3 and tf_keras, read by layerserve.

A family's tests declare ``KERAS_CASES = Path(__file__).with_name("keras_cases.py")``
and parametrize over :func:`oracle_params`. The session fixture ``keras_oracle``
(tests/conftest.py) writes the files of every collected case module once, in writer
subprocesses of one flavour each (``keras_oracle_writer.py``; ``WRITERS`` per flavour),
and caches them by the hash of
the case module, the writer and the Keras version; :meth:`KerasOracle.check` then
loads each file in layerserve and compares predictions, masks and the ONNX export
with what Keras computed.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from oracle_case import BATCH, FLAVOURS, Case, param_id, params

from layerserve.errors import LayerserveError

SUPPORT = Path(__file__).parent
WRITER = SUPPORT / "keras_oracle_writer.py"
PACKAGES = {"keras3": "keras", "tf_keras": "tf_keras"}
RTOL = 1e-5
# Writer processes per flavour: Keras 3 on JAX takes about twice tf_keras's time for the
# same cases, so its modules are shared by two, and a 2-core machine stays busy throughout.
WRITERS = {"keras3": 2, "tf_keras": 1}
WRITER_TIMEOUT_S = 1200


def load_cases(path: Path) -> dict[str, Case]:
    """The ``CASES`` of a case module, by id (loaded by path: test folders are not
    packages)."""
    path = Path(path)
    name = "keras_cases_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        module = sys.modules[name]
    else:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    cases = list(module.CASES)
    ids = [case.id for case in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate case ids {duplicates}")
    return {case.id: case for case in cases}


def oracle_params(path: Path) -> list[Any]:
    return [pytest.param(*p, id=param_id(p)) for p in params(list(load_cases(path).values()))]


def default_cache_root() -> Path:
    configured = os.environ.get("LAYERSERVE_ORACLE_CACHE")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / ".cache" / "keras-oracle"


def _version(flavour: str) -> str:
    try:
        return importlib.metadata.version(PACKAGES[flavour])
    except importlib.metadata.PackageNotFoundError:
        return "missing"


class KerasOracle:
    def __init__(self, root: Path, modules: Iterable[Path]) -> None:
        self.root = root
        self.modules = sorted({Path(m).resolve() for m in modules})
        self._ready: set[tuple[Path, str]] = set()

    def directory(self, module: Path, flavour: str) -> Path:
        digest = hashlib.sha256()
        for part in (module, SUPPORT / "oracle_case.py", WRITER):
            digest.update(Path(part).read_bytes())
        digest.update(f"{flavour}={_version(flavour)}".encode())
        key = module.parent.name + "-" + module.stem
        return self.root / flavour / f"{key}-{digest.hexdigest()[:16]}"

    def ensure(self, module: Path, flavour: str) -> Path:
        module = Path(module).resolve()
        if (module, flavour) not in self._ready:
            self._write_missing({module} | set(self.modules))
        return self.directory(module, flavour)

    def _write_missing(self, modules: set[Path]) -> None:
        # Test processes running side by side (pytest -n) share the cache: one writes
        # what is missing while the others wait, then find it written.
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            self._write_missing_locked(modules)

    def _write_missing_locked(self, modules: set[Path]) -> None:
        jobs: dict[str, list[str]] = {flavour: [] for flavour in FLAVOURS}
        for module in sorted(modules):
            for flavour in FLAVOURS:
                out = self.directory(module, flavour)
                if (out / "manifest.json").exists():
                    self._ready.add((module, flavour))
                else:
                    jobs[flavour].append(f"{module}={out}")
        # each flavour's modules dealt out to its writers
        pending = [
            (flavour, pairs[i :: WRITERS[flavour]])
            for flavour, pairs in jobs.items()
            for i in range(min(WRITERS[flavour], len(pairs)))
        ]
        if not pending:
            return
        with concurrent.futures.ThreadPoolExecutor(len(pending)) as pool:
            results = list(pool.map(self._run_writer, pending))
        for (flavour, _), (code, output) in zip(pending, results, strict=True):
            if code != 0:
                pytest.fail(
                    f"The {flavour} oracle writer failed (exit {code}); is "
                    f"{PACKAGES[flavour]!r} installed (the test extra)?\n{output[-4000:]}"
                )
        for module in modules:
            for flavour in FLAVOURS:
                self._ready.add((module, flavour))

    @staticmethod
    def _run_writer(job: tuple[str, list[str]]) -> tuple[int, str]:
        flavour, pairs = job
        process = subprocess.run(
            [sys.executable, str(WRITER), flavour, *pairs],
            capture_output=True,
            text=True,
            timeout=WRITER_TIMEOUT_S,
            check=False,
        )
        return process.returncode, process.stdout + process.stderr

    # ---- checking one file ------------------------------------------------------------
    def check(self, module: Path, flavour: str, case_id: str, fmt: str) -> Any:
        """Load the file in layerserve; its predictions, masks and ONNX export must equal
        Keras's. Returns the loaded model (None for refused cases)."""
        case = load_cases(module)[case_id]
        directory = self.ensure(module, flavour)
        manifest = json.loads((directory / "manifest.json").read_text())
        status = manifest["cases"].get(case_id)
        if status != "ok":
            pytest.fail(f"{flavour} could not build case {case_id!r}:\n{status}")
        case_dir = directory / case_id
        meta = json.loads((case_dir / "meta.json").read_text())
        if fmt in meta["format_errors"]:
            pytest.fail(
                f"{flavour} could not save {case_id!r} as {fmt}: {meta['format_errors'][fmt]}"
            )
        if case.refused is not None:
            with pytest.raises(LayerserveError) as raised:
                load_file(case_dir, flavour, fmt)
            assert case.refused in str(raised.value), str(raised.value)
            return None
        model = load_file(case_dir, flavour, fmt)
        data = np.load(case_dir / "data.npz")
        inputs = [data[f"x{i}"] for i in range(meta["inputs"])]
        if case.input_refused is not None:
            assert meta["keras_refused"], f"{flavour} answered the inputs of {case_id!r}"
            assert_reference_refuses(model, inputs, case.input_refused)
            if fmt == case.formats_for(flavour)[0]:  # one export per flavour is enough
                assert_export_refuses(model, inputs, case.onnx_input_refused or "")
            return model
        outputs = [data[f"y{i}"] for i in range(meta["outputs"])]
        masks = [data[f"m{i}"] if f"m{i}" in data else None for i in range(meta["outputs"])]
        for rows in (BATCH, 1):
            assert_reference_matches(
                model, inputs, outputs, masks, rows, case.atol, not case.dtype_differs
            )
        if case.export_refused is not None:
            from layerserve.export import to_onnx

            with pytest.raises(LayerserveError) as raised:
                to_onnx(model)
            assert case.export_refused in str(raised.value), str(raised.value)
            return model
        assert_export_matches(model, inputs, outputs, masks, case.atol, not case.dtype_differs)
        return model


def load_file(case_dir: Path, flavour: str, fmt: str) -> Any:
    from layerserve.models import load_model, model_from_json

    if fmt == "keras":
        return load_model(case_dir / "model.keras")
    if fmt == "h5":
        return load_model(case_dir / "model.h5")
    model = model_from_json((case_dir / "model.json").read_text())
    model.load_weights(case_dir / ("model.weights.h5" if flavour == "keras3" else "weights.h5"))
    return model


def _close(got: np.ndarray, want: np.ndarray, atol: float, what: str, dtype: bool) -> None:
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, Keras {want.shape}"
    if dtype:
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, Keras {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=what)


def _as_list(value: Any, count: int) -> list[Any]:
    if count == 1:
        return [value]
    return list(value)


def assert_reference_matches(
    model: Any,
    inputs: list[np.ndarray],
    outputs: list[np.ndarray],
    masks: list[np.ndarray | None],
    rows: int,
    atol: float,
    dtype: bool = True,
) -> None:
    """``dtype``: the outputs' dtypes must be Keras's too."""
    feed = [x[:rows] for x in inputs]
    predicted = _as_list(model.predict(feed if len(feed) > 1 else feed[0]), len(outputs))
    for index, (got, want) in enumerate(zip(predicted, outputs, strict=True)):
        _close(got, want[:rows], atol, f"output {index}, {rows} rows (NumPy reference)", dtype)
    got_masks = _as_list(model.compute_mask(feed if len(feed) > 1 else feed[0]), len(outputs))
    for index, (got, want) in enumerate(zip(got_masks, masks, strict=True)):
        if want is None:
            assert got is None, f"output {index}: layerserve has a mask, Keras none"
        else:
            assert got is not None, f"output {index}: Keras has a mask, layerserve none"
            np.testing.assert_array_equal(np.asarray(got, bool), want[:rows])


def assert_export_matches(
    model: Any,
    inputs: list[np.ndarray],
    outputs: list[np.ndarray],
    masks: list[np.ndarray | None],
    atol: float,
    dtype: bool = True,
) -> None:
    import onnx

    from layerserve.export import to_onnx
    from layerserve.export.api import MASK_SUFFIX, exported_mask, output_names
    from layerserve.export.parity import session

    onnx_model = to_onnx(model)
    onnx.checker.check_model(onnx_model, full_check=True)
    runner = session(onnx_model)
    feeds = {i.name: x for i, x in zip(runner.get_inputs(), inputs, strict=True)}
    graph_outputs = [o.name for o in runner.get_outputs()]
    got = dict(zip(graph_outputs, runner.run(None, feeds), strict=True))
    for index, name in enumerate(output_names(model)):
        _close(got[name], outputs[index], atol, f"output {name!r} (onnxruntime)", dtype)
        if masks[index] is None:
            assert name + MASK_SUFFIX not in got
        else:
            want = exported_mask(masks[index], len(outputs[index]))
            np.testing.assert_array_equal(got[name + MASK_SUFFIX], want)


def assert_reference_refuses(model: Any, inputs: list[np.ndarray], says: str) -> None:
    with pytest.raises(LayerserveError) as raised:
        model.predict(inputs if len(inputs) > 1 else inputs[0])
    assert says in str(raised.value), str(raised.value)


def assert_export_refuses(model: Any, inputs: list[np.ndarray], says: str) -> None:
    """The exported graph, run by onnxruntime in a process of its own (an abort there
    ends that process only), fails on ``inputs`` with an error containing ``says``."""
    import tempfile

    from layerserve.export import to_onnx

    onnx_model = to_onnx(model)
    names = [i.name for i in onnx_model.graph.input]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        path.write_bytes(onnx_model.SerializeToString())
        np.savez(path.with_suffix(".inputs.npz"), **dict(zip(names, inputs, strict=True)))
        process = subprocess.run(
            [sys.executable, str(SUPPORT / "onnxruntime_runner.py"), scratch],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert process.returncode == 0, f"onnxruntime exited {process.returncode}: {process.stderr}"
        error = path.with_suffix(".error.txt")
        assert error.exists(), "onnxruntime ran the graph on inputs Keras refuses"
        assert says in error.read_text(), error.read_text()


def collected_case_modules(items: Iterable[Any]) -> set[Path]:
    modules = set()
    for item in items:
        paths = getattr(getattr(item, "module", None), "KERAS_CASES", None)
        if paths is not None:
            modules.update(Path(p) for p in (paths if isinstance(paths, list) else [paths]))
    return modules


__all__ = [
    "KerasOracle",
    "collected_case_modules",
    "default_cache_root",
    "load_cases",
    "oracle_params",
]
