"""Inputs read as indices (Embedding): the exporter records the values each accepts and the
service refuses others with a 400 naming the input and the range, before onnxruntime runs.
Keras 2 files accept [0, input_dim); Keras 3 files also count negative indices from the end."""

from __future__ import annotations

import json

import httpx
import numpy as np
import onnx
import pytest
from live_server import running_server, write_model

from layerserve.export.api import input_value_ranges
from layerserve.layers import Dense, Embedding, Flatten, Input
from layerserve.models import Model
from layerserve.serialization import keras_semantics
from layerserve.service.settings import Settings


def embedding_model(version: str, dtype: str, nested: bool = False) -> Model:
    """``nested``: the Embedding sits in a model of its own, used as a layer."""
    with keras_semantics(version):
        tokens = Input((4,), dtype=dtype, name="tokens")
        embedding = Embedding(6, 3, name="embedding")
        if nested:
            ids = Input((4,), dtype=dtype)
            embedding = Model(ids, embedding(ids), name="embedder")
        embedded = embedding(tokens)
        model = Model(tokens, Dense(2, name="head")(Flatten(name="flatten")(embedded)))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


MODELS = {
    "k2_int": ("2.15.0", "int32", (0, 6)),
    "k3_int": ("3.15.1", "int32", (-6, 6)),
    "k2_float": ("2.15.0", "float32", (0, 6)),
    "k3_nested": ("3.15.1", "int32", (-6, 6)),
}


def built(model: str) -> Model:
    version, dtype, _ = MODELS[model]
    return embedding_model(version, dtype, nested=model.endswith("nested"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("index-repository")
    for name in MODELS:
        write_model(root, name, built(name))
    with running_server(Settings(model_repository=root)) as base:
        yield base


def infer(base: str, model: str, values: list, dtype: str) -> httpx.Response:
    datatype = "INT32" if dtype == "int32" else "FP32"
    body = {"inputs": [{"name": "tokens", "shape": [1, 4], "datatype": datatype, "data": values}]}
    return httpx.post(f"{base}/v2/models/{model}/infer", json=body, timeout=10)


@pytest.mark.parametrize("model", list(MODELS))
def test_the_exported_graph_records_the_accepted_range(tmp_path, model):
    expected = MODELS[model][2]
    onnx_model = write_model(tmp_path, model, built(model))
    metadata = {p.key: p.value for p in onnx.load(onnx_model).metadata_props}
    assert json.loads(metadata["input_value_ranges"]) == {"tokens": list(expected)}
    assert input_value_ranges(built(model)) == {"tokens": list(expected)}


@pytest.mark.parametrize(
    ("model", "values", "ok"),
    [
        ("k2_int", [0, 1, 5, 2], True),
        ("k2_int", [0, 1, 6, 2], False),
        ("k2_int", [0, -1, 5, 2], False),  # Keras 2 refuses negative indices
        ("k3_int", [0, -1, -6, 5], True),  # Keras 3 counts them from the end
        ("k3_int", [0, -7, 5, 2], False),
        ("k2_float", [0.0, 5.9, -0.5, 2.2], True),  # truncated toward zero, as Keras casts
        ("k2_float", [0.0, 6.0, 1.0, 2.0], False),
        ("k3_nested", [0, -1, -6, 5], True),  # an Embedding in a nested model
        ("k3_nested", [0, 6, 5, 2], False),
    ],
)
def test_indices_are_checked_before_running(server, model, values, ok):
    _, dtype, (low, high) = MODELS[model]
    response = infer(server, model, values, dtype)
    if ok:
        assert response.status_code == 200, response.text
        expected = built(model).predict(np.asarray([values], dtype=dtype))
        got = np.asarray(response.json()["outputs"][0]["data"], "float32").reshape(1, 2)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    else:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "'tokens'" in error and f"[{low}, {high})" in error


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_indices_are_refused(bad):
    from layerserve.service.errors import InvalidInput
    from layerserve.service.runtime import _check_indices

    with pytest.raises(InvalidInput, match="expected finite values"):
        _check_indices("m", "tokens", np.asarray([[0.0, bad]], "float32"), 0, 6)
