"""A request with more rows than the model's max_batch_size is refused with a 400 that
says where the limit comes from and how to raise it: the model's config.json when it
sets max_batch_size, else LAYERSERVE_MAX_BATCH_SIZE (the server's default). Following
the hint works: the raised limit serves the request after a load."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from live_server import running_server, write_model

from layerserve import examples
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

SERVER_DEFAULT = 3


def from_config(name: str, limit: int) -> str:
    return (
        f"inference request batch-size must be <= {limit} for '{name}', got 5: send at most "
        f"{limit} rows per request, or raise max_batch_size in the config.json of model "
        f"'{name}' in the model repository and load the model again"
    )


def from_server(name: str) -> str:
    return (
        f"inference request batch-size must be <= {SERVER_DEFAULT} for '{name}', got 5: send "
        f"at most {SERVER_DEFAULT} rows per request, or raise LAYERSERVE_MAX_BATCH_SIZE (the "
        f"server's default; model '{name}' has no max_batch_size in a config.json) or set "
        "max_batch_size in its config.json"
    )


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch_repository")
    write_model(root, "configured", examples.mlp(), config={"max_batch_size": 4})
    write_model(root, "defaulted", examples.mlp())
    write_model(root, "other_settings", examples.mlp(), config={"instances": 1})
    return root


@pytest.fixture(scope="module")
def url(repository):
    settings = Settings(model_repository=repository, max_batch_size=SERVER_DEFAULT)
    with running_server(settings) as base:
        yield base


def v2(rows: int) -> dict:
    data = np.full((rows, 784), 0.5, np.float32)
    entry = {"name": "hidden_1_input", "shape": [rows, 784], "datatype": "FP32"}
    return {"inputs": [{**entry, "data": data.tolist()}]}


def tfs(rows: int) -> dict:
    return {"instances": np.full((rows, 784), 0.5).tolist()}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("configured", from_config("configured", 4)),
        ("defaulted", from_server("defaulted")),
        ("other_settings", from_server("other_settings")),
    ],
)
@pytest.mark.parametrize("protocol", ["v2", "tfs"])
def test_too_many_rows_say_how_to_raise_the_limit(url, name, message, protocol):
    if protocol == "v2":
        response = httpx.post(f"{url}/v2/models/{name}/infer", json=v2(5))
    else:
        response = httpx.post(f"{url}/v1/models/{name}:predict", json=tfs(5))
    assert response.status_code == 400, response.text
    assert response.json() == {"error": message}


@pytest.mark.parametrize(("name", "limit"), [("configured", 4), ("defaulted", SERVER_DEFAULT)])
def test_exactly_the_limit_serves(url, name, limit):
    response = httpx.post(f"{url}/v2/models/{name}/infer", json=v2(limit))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [limit, 10]


def test_following_the_hint_serves_the_request(url, repository):
    path = repository / "configured" / "config.json"
    original = path.read_text()
    try:
        path.write_text(json.dumps({"max_batch_size": 8}))
        assert httpx.post(f"{url}/v2/repository/models/configured/load").status_code == 200
        response = httpx.post(f"{url}/v2/models/configured/infer", json=v2(5))
        assert response.status_code == 200, response.text
    finally:
        path.write_text(original)
        httpx.post(f"{url}/v2/repository/models/configured/load")
