"""Build oracle cases in real Keras and save every file format the flavour writes.

Run by the test suite in a subprocess per flavour (Keras 3 on JAX, or tf_keras), never
in the test process:

    python keras_oracle_writer.py FLAVOUR CASES_MODULE=OUT_DIR [...]

For each case of each module it writes ``OUT_DIR/<case id>/`` with the model files
(``model.keras``, ``model.h5``, ``model.json`` with ``model.weights.h5`` or
``weights.h5``), ``data.npz`` (inputs ``x<i>``, outputs ``y<i>``, masks ``m<i>``) and
``meta.json``; ``OUT_DIR/manifest.json`` is written last, when the module is complete.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from oracle_case import BATCH, VARIABLE_LENGTH, Case, floats  # noqa: E402

# Keras 3 on JAX runs each layer's ops eagerly, and XLA compiles every op once per shape:
# LLVM's costly optimisations take most of that time and buy nothing for code that runs
# once. Without them the Keras 3 files are written in about two thirds of the time; the
# numbers differ from the optimised build's by float rounding only.
XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def load_keras(flavour: str) -> Any:
    if flavour == "keras3":
        os.environ.setdefault("XLA_FLAGS", XLA_FLAGS)
        import keras

        return keras
    if flavour == "tf_keras":
        import tf_keras

        return tf_keras
    raise SystemExit(f"unknown flavour {flavour!r}")


def load_cases(path: Path) -> list[Case]:
    name = "oracle_cases_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CASES)


def seed_of(case_id: str) -> int:
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:4], "little")


# Statistics some Keras layers cache when adapted or loaded (Normalization's): the
# values Keras computes with, so they keep what the case gave them.
_CACHED_STATISTICS = ("mean", "variance", "count")


def randomize_weights(model: Any, rng: np.random.Generator) -> None:
    """Every weight drawn, so each one matters: kernels scaled by their fan-in, as trained
    networks keep activations near 1 (so float32 rounding stays below the tolerance);
    other weights N(0, 0.5); variances positive; integers and cached statistics kept."""
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        path = str(getattr(variable, "path", None) or variable.name)
        leaf = path.split("/")[-1].split(":")[0]
        if value.dtype.kind in "iub" or leaf in _CACHED_STATISTICS:
            continue
        if "variance" in path:
            new = rng.uniform(0.5, 2.0, value.shape)
        elif value.ndim >= 2:
            fan_in = int(np.prod(value.shape[:-1]))
            new = rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), value.shape)
        else:
            new = rng.normal(0.0, 0.5, value.shape)
        variable.assign(new.astype(value.dtype))


def keras_mask(keras: Any, tensor: Any) -> np.ndarray | None:
    mask = getattr(tensor, "_keras_mask", None)
    if mask is None and hasattr(keras, "src"):
        try:
            from keras.src.backend import get_keras_mask

            mask = get_keras_mask(tensor)
        except (ImportError, AttributeError):
            mask = None
    return None if mask is None else np.asarray(mask, dtype=bool)


def feed_of(model: Any, arrays: list[np.ndarray]) -> Any:
    """The arrays (in ``model.inputs``' order) as the model takes them: a dict for a
    model built on a dict of inputs (Keras 3's ``_inputs_struct``, tf.keras's
    ``_nested_inputs``), whose flat order is its sorted keys."""
    struct = getattr(model, "_inputs_struct", None)  # a KerasTensor has no truth value
    if struct is None:
        struct = getattr(model, "_nested_inputs", None)
    if isinstance(struct, dict):
        return dict(zip(sorted(struct), arrays, strict=True))
    return arrays if len(arrays) > 1 else arrays[0]


def make_inputs(model: Any, case: Case, rng: np.random.Generator) -> list[np.ndarray]:
    makers = list(case.inputs or [])
    arrays = []
    for index, tensor in enumerate(model.inputs):
        shape = (BATCH, *(VARIABLE_LENGTH if d is None else int(d) for d in tensor.shape[1:]))
        dtype = str(getattr(tensor.dtype, "name", tensor.dtype))
        maker = (makers[index] if index < len(makers) else None) or floats()
        arrays.append(maker(rng, shape, dtype))
    return arrays


def save_formats(flavour: str, model: Any, directory: Path, formats: tuple[str, ...]) -> dict:
    errors = {}
    for fmt in formats:
        try:
            if fmt == "keras":
                model.save(directory / "model.keras")
            elif fmt == "h5":
                model.save(directory / "model.h5")
            elif fmt == "json+weights":
                (directory / "model.json").write_text(model.to_json())
                weights = "model.weights.h5" if flavour == "keras3" else "weights.h5"
                model.save_weights(directory / weights)
        except Exception as exc:  # noqa: BLE001 - recorded, and the test shows it
            errors[fmt] = f"{type(exc).__name__}: {exc}"
    return errors


def flat_outputs(result: Any) -> list[Any]:
    """A model's outputs in order, nested ones (a stack of cells' states) flattened, a
    dict of them by its sorted keys (as keras.tree and tf.nest flatten it)."""
    if isinstance(result, dict):
        return [leaf for key in sorted(result) for leaf in flat_outputs(result[key])]
    if isinstance(result, (list, tuple)):
        return [leaf for item in result for leaf in flat_outputs(item)]
    return [result]


def write_case(flavour: str, keras: Any, case: Case, directory: Path) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    seed = seed_of(case.id)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = case.build(keras, keras.layers)
    if case.weights == "random":
        randomize_weights(model, rng)
    arrays = make_inputs(model, case, rng)
    refused = None
    try:
        result = model(feed_of(model, arrays), training=False)
    except Exception as exc:  # noqa: BLE001 - a case may expect Keras to refuse its inputs
        if case.input_refused is None:
            raise
        refused, result = f"{type(exc).__name__}: {str(exc).strip()[:300]}", []
    outputs = flat_outputs(result)
    data = {f"x{i}": a for i, a in enumerate(arrays)}
    has_mask = []
    for i, output in enumerate(outputs):
        data[f"y{i}"] = np.asarray(output)
        mask = keras_mask(keras, output)
        has_mask.append(mask is not None)
        if mask is not None:
            data[f"m{i}"] = mask
    np.savez(directory / "data.npz", **data)
    format_errors = save_formats(flavour, model, directory, case.formats_for(flavour))
    meta = {
        "flavour": flavour,
        "keras_version": keras.__version__,
        "inputs": len(arrays),
        "outputs": len(outputs),
        "masks": has_mask,
        "format_errors": format_errors,
        "keras_refused": refused,
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def clear_session(keras: Any) -> None:
    """Keras's global state reset between cases, without Keras 3's garbage collection
    at each (a third of the writer's time; what it frees is freed all the same)."""
    try:
        keras.backend.clear_session(free_memory=False)
    except TypeError:  # tf_keras: no such argument
        keras.backend.clear_session()


def write_module(flavour: str, keras: Any, module: Path, out: Path) -> None:
    manifest: dict[str, Any] = {"flavour": flavour, "cases": {}}
    for case in load_cases(module):
        if flavour not in case.flavours:
            continue
        try:
            write_case(flavour, keras, case, out / case.id)
            manifest["cases"][case.id] = "ok"
        except Exception:  # noqa: BLE001 - the test for this case reports it
            manifest["cases"][case.id] = traceback.format_exc(limit=6)
        clear_session(keras)
    temporary = out / "manifest.json.tmp"
    temporary.write_text(json.dumps(manifest, indent=1))
    temporary.replace(out / "manifest.json")


def main(argv: list[str]) -> None:
    flavour, pairs = argv[0], argv[1:]
    keras = load_keras(flavour)
    for pair in pairs:
        module, out = pair.split("=", 1)
        Path(out).mkdir(parents=True, exist_ok=True)
        write_module(flavour, keras, Path(module), Path(out))


if __name__ == "__main__":
    main(sys.argv[1:])
