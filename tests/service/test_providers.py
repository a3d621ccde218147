"""Execution providers on this CPU-only onnxruntime build: asking for CUDA fails the load
with a clear reason unless CPU fallback is allowed; a fallback is served, reported in the
log, the metrics (``layerserve_model_provider_fallback``) and the model configuration.

Two ways to ask: per model (config.json) and for the whole server (settings), each with
the same three models: ``strict`` (CUDA, no fallback), ``fallback`` (CUDA, fallback
allowed) and ``cpu``."""

from __future__ import annotations

import logging
import re

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from live_server import running_server, write_model

from layerserve import examples
from layerserve.service.settings import Settings

# onnxruntime warns that it has no CUDA provider: that is the situation under test
pytestmark = pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
SCENARIOS = {
    "per-model": (
        {},
        {
            "strict": {"providers": ["cuda"]},
            "fallback": {"providers": ["cuda"], "allow_cpu_fallback": True},
            "cpu": {},
        },
    ),
    "server-wide": (
        {"providers": ["cuda"], "allow_cpu_fallback": True},
        {
            "strict": {"allow_cpu_fallback": False},
            "fallback": {},
            "cpu": {"providers": ["cpu"]},
        },
    ),
}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module", params=list(SCENARIOS))
def server(request, tmp_path_factory):
    # these expectations are those of the CPU build this project tests with
    assert "CUDAExecutionProvider" not in ort.get_available_providers()
    settings, configs = SCENARIOS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    for name, config in configs.items():
        write_model(root, name, examples.mlp(), "1", config)
    records = Records()
    logger = logging.getLogger("layerserve.service")
    logger.addHandler(records)
    try:
        # a model failed to load, so the server never turns ready: wait for live only
        # (uvicorn answers once the lifespan start-up, which loads every model, is done)
        server_settings = Settings(model_repository=root, **settings)
        with running_server(server_settings, wait_ready=False) as url:
            yield url, records.records
    finally:
        logger.removeHandler(records)


def test_the_repository_index_explains_why_cuda_without_fallback_did_not_load(server):
    url, _ = server
    index = httpx.post(url + "/v2/repository/index").json()
    assert [e for e in index if e["name"] != "strict"] == [
        {"name": "cpu", "version": "1", "state": "READY"},
        {"name": "fallback", "version": "1", "state": "READY"},
    ]
    (strict,) = [e for e in index if e["name"] == "strict"]
    assert strict["state"] == "UNAVAILABLE"
    assert "CUDA" in strict["reason"] and "allow_cpu_fallback" in strict["reason"]
    assert "CPUExecutionProvider" in strict["reason"]  # what onnxruntime actually offered


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v2/health/ready", 503, "not all loaded"),
        ("/v2/models/strict/ready", 503, "allow_cpu_fallback"),
        ("/v2/models/strict", 503, "allow_cpu_fallback"),
    ],
)
def test_a_model_that_did_not_load_is_not_ready_and_neither_is_the_server(
    server, path, status, message
):
    url, _ = server
    response = httpx.get(url + path)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert response.headers["Retry-After"] == "1"
    assert httpx.get(url + "/v2/health/live").json() == {"live": True}


@pytest.mark.parametrize(
    ("model", "fell_back"), [("fallback", 1), ("cpu", 0)], ids=["fallback", "cpu"]
)
def test_served_models_report_their_actual_provider(server, model, fell_back):
    url, records = server
    gauge = re.search(
        rf'^layerserve_model_provider_fallback\{{model="{model}",version="1"\}} (\d+)$',
        httpx.get(url + "/metrics").text,
        re.M,
    )
    assert gauge and int(gauge.group(1)) == fell_back
    config = httpx.get(url + f"/v2/models/{model}/config").json()
    assert config["parameters"]["execution_providers"] == {"string_value": "CPUExecutionProvider"}
    assert config["instance_group"][0]["kind"] == "KIND_CPU"

    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    body = {
        "inputs": [
            {"name": "hidden_1_input", "shape": [3, 784], "datatype": "FP32", "data": x.tolist()}
        ]
    }
    response = httpx.post(url + f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    got = np.array(response.json()["outputs"][0]["data"], np.float32).reshape(3, 10)
    np.testing.assert_allclose(got, examples.mlp().predict(x), rtol=1e-5, atol=1e-6)

    warnings = [
        r.getMessage()
        for r in records
        if r.levelno == logging.WARNING and f"model '{model}'" in r.getMessage()
    ]
    if fell_back:
        (warning,) = warnings
        assert "CUDA" in warning and "serving on CPU" in warning
    else:
        assert warnings == []


def test_no_fallback_gauge_for_a_model_that_is_not_loaded(server):
    url, _ = server
    assert 'model="strict"' not in httpx.get(url + "/metrics").text
