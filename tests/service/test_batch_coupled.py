"""A model whose rows depend on one another is never merged with other requests.

tf.keras's GroupNormalization weights its moments by the mask, broadcast onto the input from
the right: the (N, T) mask of an (N, T, C) input lies along (T, C), so one row's moments are
weighted by the other rows' masks (it only broadcasts when N is 1 or T, and T is C). The
exporter records such layers. Any other graph (here a Lambda that centres its batch) is
probed at load: random rows run together and alone must agree. The service then runs each
request of a coupled model as it came, so each client gets the numbers Keras gives for the
batch it sent, whatever else is queued beside it."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import onnx
import pytest
from live_server import running_server, write_model

from layerserve import backend as K
from layerserve.layers import Dense, GroupNormalization, Input, Lambda, Masking
from layerserve.models import Model
from layerserve.serialization import keras_semantics
from layerserve.service.settings import Settings

STEPS = CHANNELS = 4
# Long enough for requests sent together to be queued together.
QUEUE_DELAY_US = 300_000


def group_normalized(version: str, masked: bool = True) -> Model:
    with keras_semantics(version):
        steps = Input((STEPS, CHANNELS), name="steps")
        x = Masking(name="masking")(steps) if masked else steps
        x = GroupNormalization(groups=2, name="group_norm")(x)
        model = Model(steps, Dense(3, name="head")(x))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def batch_centred() -> Model:
    """Each row less the batch's mean: the exporter cannot tell, the probe finds it."""
    steps = Input((STEPS, CHANNELS), name="steps")
    centred = Lambda(lambda t: t - K.mean(t, axis=0, keepdims=True), name="centre")(steps)
    return Model(steps, Dense(3, name="head")(centred))


def rows(count: int) -> np.ndarray:
    """Sequences whose masks differ row to row: some timesteps are all zeros."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(count, STEPS, CHANNELS)).astype(np.float32)
    for row in range(count):
        x[row, row % STEPS] = 0.0
    return x


MODELS = {"tf_keras": ("2.15.0", True), "keras3": ("3.15.1", True), "unmasked": ("2.15.0", False)}


@pytest.mark.parametrize(
    ("name", "recorded"), [("tf_keras", ["group_norm"]), ("keras3", []), ("unmasked", [])]
)
def test_the_exporter_records_the_layers_that_couple_rows(tmp_path, name, recorded):
    version, masked = MODELS[name]
    path = write_model(tmp_path, name, group_normalized(version, masked))
    metadata = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(metadata["batch_coupled_layers"]) == recorded


@pytest.mark.parametrize("name", ["tf_keras", "centred"])
def test_the_reference_couples_the_rows_of_these_inputs(name):
    """The premise: run together, the rows get other numbers than run one by one."""
    model = group_normalized("2.15.0") if name == "tf_keras" else batch_centred()
    x = rows(STEPS)
    alone = np.concatenate([model.predict(x[i : i + 1]) for i in range(STEPS)])
    assert not np.allclose(model.predict(x), alone, atol=1e-3)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("coupled-repository")
    config = {"max_batch_size": 8, "max_queue_delay_us": QUEUE_DELAY_US}
    for name, (version, masked) in MODELS.items():
        write_model(root, name, group_normalized(version, masked), config=config)
    write_model(root, "centred", batch_centred(), config=config)
    with running_server(Settings(model_repository=root)) as base:
        yield base


async def send_together(base: str, model: str, x: np.ndarray) -> list[np.ndarray]:
    """One request per row, all at once; each answer's output."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        def body(row: np.ndarray) -> dict:
            entry = {"name": "steps", "shape": [1, STEPS, CHANNELS], "datatype": "FP32"}
            return {"inputs": [{**entry, "data": row.ravel().tolist()}]}

        responses = await asyncio.gather(
            *(client.post(f"/v2/models/{model}/infer", json=body(row)) for row in x)
        )
    answers = []
    for response in responses:
        assert response.status_code == 200, response.text
        output = response.json()["outputs"][0]
        answers.append(np.asarray(output["data"], np.float32).reshape(output["shape"]))
    return answers


@pytest.mark.parametrize("name", ["tf_keras", "centred"])
def test_requests_for_a_coupled_model_each_run_as_sent(server, name):
    model = group_normalized("2.15.0") if name == "tf_keras" else batch_centred()
    x = rows(STEPS)
    answers = asyncio.run(send_together(server, name, x))
    for row, answer in enumerate(answers):
        np.testing.assert_allclose(
            answer, model.predict(x[row : row + 1]), rtol=1e-5, atol=1e-5, err_msg=f"row {row}"
        )
    statistics = httpx.get(f"{server}/v2/models/{name}/stats", timeout=10).json()
    executions = statistics["model_stats"][0]["batch_stats"]
    assert {entry["batch_size"] for entry in executions} == {1}


@pytest.mark.parametrize("name", ["keras3", "unmasked"])
def test_requests_for_other_models_are_still_merged(server, name):
    version, masked = MODELS[name]
    model, x = group_normalized(version, masked), rows(STEPS)
    answers = asyncio.run(send_together(server, name, x))
    np.testing.assert_allclose(np.concatenate(answers), model.predict(x), rtol=1e-5, atol=1e-5)
    statistics = httpx.get(f"{server}/v2/models/{name}/stats", timeout=10).json()
    sizes = {entry["batch_size"] for entry in statistics["model_stats"][0]["batch_stats"]}
    assert max(sizes) > 1, sizes


@pytest.mark.parametrize(
    ("name", "merges"), [("tf_keras", False), ("centred", False), ("keras3", True)]
)
def test_the_model_configuration_says_whether_requests_merge(server, name, merges):
    config = httpx.get(f"{server}/v2/models/{name}/config", timeout=10).json()
    assert config["max_batch_size"] == 8
    assert (config["dynamic_batching"] is not None) is merges
