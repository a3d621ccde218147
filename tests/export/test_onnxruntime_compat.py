"""Graphs exported at the default opset load and run on the lowest onnxruntime
pyproject.toml allows, with the installed onnxruntime's numbers, and lose nothing against
the newest opset the installed onnxruntime runs.

The models are the documentation's examples (the service's demo repository among them)
and the Keras zoo (tests/zoo), built here by layerserve's own Keras-compatible API: what
matters is the graph the exporter writes, not Keras's weights.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from keras_oracle import load_cases
from lowest_onnxruntime import lowest_allowed, run_onnx_files
from packaging.version import Version

from layerserve import examples, layers
from layerserve.export import max_runtime_opset, to_onnx
from layerserve.export.parity import sample_inputs, session
from layerserve.models import Model, Sequential

ZOO = load_cases(Path(__file__).parents[1] / "zoo" / "keras_cases.py")
# Its Normalization layer is adapted to data, which only Keras does; keras.ops calls are
# recorded only by Keras.
NOT_BUILT_HERE = {"structured_data", "mask_through_same_dtype_operations"}
NAMES = [*examples.EXAMPLES, *(case for case in ZOO if case not in NOT_BUILT_HERE)]
KERAS_API = types.SimpleNamespace(Sequential=Sequential, Model=Model, Input=layers.Input)
BATCH = 7
TOLERANCE = 1e-5


def build(name: str) -> Any:
    if name in examples.EXAMPLES:
        return examples.EXAMPLES[name]()
    model = ZOO[name].build(KERAS_API, layers)
    randomize_weights(model, np.random.default_rng(0))
    return model


def sample(name: str, model: Any) -> list[np.ndarray]:
    """Inputs of batch size 7: a zoo case's own makers where it has them (its value
    ranges), else :func:`sample_inputs`."""
    arrays = sample_inputs(model, BATCH, seed=1)
    makers = ZOO[name].inputs if name in ZOO else None
    if not makers:
        return arrays
    rng = np.random.default_rng(1)
    return [
        a if make is None else make(rng, a.shape, a.dtype.name)
        for make, a in zip(makers, arrays, strict=True)
    ]


def randomize_weights(model: Any, rng: np.random.Generator) -> None:
    """Every weight drawn, so that each one matters (zero biases and unit gammas hide
    differences): kernels N(0, 1/fan-in), variances in [0.5, 2], others N(0, 0.5). The
    rule of ``keras_oracle_writer.randomize_weights``, which is not imported here: it
    assigns Keras variables, and the module sets Keras's environment on import."""
    weights = []
    for variable in model.weights:
        value = variable.numpy()
        if value.dtype.kind in "iub":
            weights.append(value)
            continue
        if "variance" in variable.name:
            new = rng.uniform(0.5, 2.0, value.shape)
        elif value.ndim >= 2:
            new = rng.normal(
                0.0, 1.0 / np.sqrt(max(int(np.prod(value.shape[:-1])), 1)), value.shape
            )
        else:
            new = rng.normal(0.0, 0.5, value.shape)
        weights.append(new.astype(value.dtype))
    model.set_weights(weights)


@pytest.fixture(scope="module")
def lowest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Every model exported at the default opset with inputs, run on the lowest
    onnxruntime in one subprocess: the folder of files, and the versions it ran."""
    directory = tmp_path_factory.mktemp("lowest-onnxruntime")
    for name in NAMES:
        model = build(name)
        to_onnx(model, directory / f"{name}.onnx")
        names = [layer.name for layer in model.input_layers]
        feeds = dict(zip(names, sample(name, model), strict=True))
        np.savez(directory / f"{name}.inputs.npz", **feeds)
    return directory, run_onnx_files(directory)


def test_the_onnxruntime_run_is_the_lowest_pyproject_allows(lowest):
    _, versions = lowest
    assert Version(versions["onnxruntime"]) == Version(lowest_allowed("onnxruntime"))
    assert Version(versions["numpy"]) >= Version(lowest_allowed("numpy"))


@pytest.mark.parametrize("name", NAMES)
def test_default_export_runs_on_the_lowest_onnxruntime_with_the_same_numbers(lowest, name):
    directory, versions = lowest
    error = directory / f"{name}.error.txt"
    assert not error.exists(), f"onnxruntime {versions['onnxruntime']}: {error.read_text()}"
    onnx_model = onnx.load(directory / f"{name}.onnx")
    with np.load(directory / f"{name}.inputs.npz") as inputs:
        feeds = {key: inputs[key] for key in inputs.files}
    runner = session(onnx_model)
    expected = dict(
        zip([o.name for o in runner.get_outputs()], runner.run(None, feeds), strict=True)
    )
    with np.load(directory / f"{name}.outputs.npz") as outputs:
        got = {key: outputs[key] for key in outputs.files}
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        if value.dtype.kind in "biu":  # masks and indices: exactly
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], value, rtol=TOLERANCE, atol=TOLERANCE, err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_the_default_opset_gives_the_graph_of_the_newest(name):
    """No converter has a faster or more exact form above the default opset: the graphs
    are the same, node for node and weight for weight."""
    model = build(name)
    assert to_onnx(model).graph == to_onnx(model, opset=max_runtime_opset()).graph
