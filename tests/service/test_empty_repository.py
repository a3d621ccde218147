"""A server started on an empty repository is ready (as Triton is) and serves what is
uploaded to it, the usual first step before ``layerserve upload``."""

from __future__ import annotations

import logging

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


def warnings_of(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith("model repository")
    ]


def test_a_repository_laid_out_for_another_server_is_named_at_the_start(tmp_path, caplog):
    """A mount that serves nothing (a model file at the root, a Keras file, a version
    without its folder) is ready as any repository is, and the log says why it is empty."""
    repository = tmp_path / "models"
    repository.mkdir()
    hand_onnx(repository / "model.onnx")  # KServe's single-model layout
    (repository / "keras_model" / "1").mkdir(parents=True)
    (repository / "keras_model" / "1" / "model.keras").write_bytes(b"PK")
    (repository / "flat").mkdir()
    hand_onnx(repository / "flat" / "model.onnx")  # no version folder
    caplog.set_level(logging.WARNING, logger="layerserve.service")
    with running_server(Settings(model_repository=repository)) as url:
        assert httpx.post(f"{url}/v2/repository/index").json() == []
    (unserved, empty) = warnings_of(caplog)
    assert "'flat/', 'keras_model/', 'model.onnx' serve no model" in unserved
    assert "<repository>/<model>/<version>/model.onnx" in unserved
    assert (
        "holds no model to serve; a model is served from <repository>/<model>/<version>/model.onnx"
        in empty
    )


def test_a_served_repository_names_only_what_serves_nothing(tmp_path, caplog):
    repository = tmp_path / "models"
    (repository / "served" / "1").mkdir(parents=True)
    hand_onnx(repository / "served" / "1" / "model.onnx")
    (repository / "notes.txt").write_text("how these models were trained")
    (repository / "lost+found").mkdir()
    (repository / "stats" / "1").mkdir(parents=True)  # a name no model can have
    hand_onnx(repository / "stats" / "1" / "model.onnx")
    caplog.set_level(logging.WARNING, logger="layerserve.service")
    with running_server(Settings(model_repository=repository)) as url:
        assert [m["name"] for m in httpx.post(f"{url}/v2/repository/index").json()] == ["served"]
    (unserved,) = warnings_of(caplog)
    assert ": 'notes.txt', 'stats/' serve no model;" in unserved  # not lost+found
    assert "and not 'stats', the path of every model's statistics" in unserved
