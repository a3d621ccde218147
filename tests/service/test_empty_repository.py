"""A server started on an empty repository is ready (as Triton is) and serves what is
uploaded to it, the usual first step before ``layerserve upload``."""

from __future__ import annotations

import httpx
import numpy as np
from live_server import running_server
from model_uploads import hand_onnx, hand_reference, infer, upload

from layerserve.service.settings import Settings


def test_an_empty_repository_is_ready_and_serves_an_upload(tmp_path):
    repository = tmp_path / "models"
    repository.mkdir()
    with running_server(Settings(model_repository=repository)) as url:
        ready = httpx.get(f"{url}/v2/health/ready")
        assert (ready.status_code, ready.json()) == (200, {"ready": True})
        assert httpx.post(f"{url}/v2/repository/index").json() == []

        created = upload(url, "first", hand_onnx(tmp_path / "first.onnx"))
        assert created.status_code == 201, created.text
        x = np.arange(9, dtype=np.float32).reshape(3, 3) / 7 - 0.5
        response, outputs = infer(url, "first", {created.json()["inputs"][0]["name"]: x})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(next(iter(outputs.values())), hand_reference(x), rtol=1e-6)
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
