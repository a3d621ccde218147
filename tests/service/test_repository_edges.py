"""Repository edge cases: folder names that look like numbers only to Unicode, names that
are paths, and readiness as a worker restarted into a serving server sees it."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from live_server import running_server, write_model

from layerserve import examples
from layerserve.service.dataplane import DataPlane
from layerserve.service.errors import ModelLoadError
from layerserve.service.model_config import ModelConfig
from layerserve.service.repository import ModelRepository
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings


def test_a_folder_named_with_a_unicode_digit_is_not_a_version(tmp_path):
    write_model(tmp_path, "m", examples.mlp(), "1")
    write_model(tmp_path, "m", examples.mlp(), "²")  # "²".isdigit() is True, int("²") fails
    repository = ModelRepository(tmp_path, Settings(model_repository=tmp_path))
    repository.load_all()
    assert list(repository.served_versions("m")) == ["1"]
    assert repository.all_ready


def test_a_folder_named_with_leading_zeros_is_not_a_version(tmp_path):
    """A folder "07" beside "7" would be a second one for version 7 (Triton and TF Serving read
    both as 7): only "7" serves, whichever a client names."""
    write_model(tmp_path, "m", examples.mlp(), "7")
    write_model(tmp_path, "m", examples.mlp(), "07")
    write_model(tmp_path, "n", examples.mlp(), "010")
    repository = ModelRepository(tmp_path, Settings(model_repository=tmp_path))
    repository.load_all()
    assert list(repository.served_versions("m")) == ["7"]
    assert "n" not in {s.name for s in repository.states()}
    assert repository.all_ready


def test_paths_as_model_names_are_not_found_and_change_nothing(tmp_path):
    write_model(tmp_path, "m", examples.mlp(), "1")
    (tmp_path / ".unloaded").mkdir()
    settings = Settings(model_repository=tmp_path, repository_poll_seconds=0)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        for name in ("%2E%2E", "%2E", ".unloaded"):
            for action in ("load", "unload"):
                answer = http.post(f"/v2/repository/models/{name}/{action}")
                assert answer.status_code == 404, (name, action, answer.text)
                assert "error" in answer.json()
        assert (tmp_path / ".unloaded").is_dir()
        x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
        body = {"inputs": [{"name": "hidden_1_input", "shape": [1, 784], "datatype": "FP32",
                            "data": x.ravel().tolist()}]}  # fmt: skip
        assert http.post("/v2/models/m/infer", json=body).status_code == 200


def test_a_restarted_worker_is_ready_beside_a_model_that_does_not_load(tmp_path):
    """The workers already serving found the broken model after their start, so it does
    not make them unready; a worker restarted among them must answer the same."""
    write_model(tmp_path, "good", examples.mlp(), "1")
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    settings = Settings(model_repository=tmp_path)
    first = ModelRepository(tmp_path, settings)  # a server's first start: strict
    first.load_all()
    assert not first.all_ready
    joining = ModelRepository(tmp_path, settings, joining=True)
    joining.load_all()
    assert joining.all_ready
    assert list(joining.served_versions("good")) == ["1"]


def test_a_load_that_fails_for_one_version_retires_the_batchers_it_replaced(tmp_path):
    """Version 1 reloads, version 2 (now corrupt) keeps its old session: the load fails,
    and no batcher is left on a session that no longer serves."""
    write_model(tmp_path, "m", examples.mlp(), "1")
    write_model(tmp_path, "m", examples.mlp(), "2")
    x = np.random.default_rng(1).random((1, 784), dtype=np.float32)

    async def scenario():
        plane = DataPlane(Settings(model_repository=tmp_path))
        await plane.start()
        try:
            for version in ("1", "2"):
                await plane.infer(plane.model("m", version), {"hidden_1_input": x})
            (tmp_path / "m" / "2" / "model.onnx").write_bytes(b"not a model")
            with pytest.raises(ModelLoadError, match="version 2"):
                await plane.load("m")
            return [plane.repository.serves(b.model) for b in plane.batchers()]
        finally:
            await plane.stop()

    assert asyncio.run(scenario()) == [True]  # version 2's batcher; version 1's old one went


def test_a_version_loaded_with_a_config_replaced_since_is_reloaded_with_the_files(tmp_path):
    """An upload loads its version with the config.json it read before it took the
    model's file lock; should the file be replaced meanwhile, the next convergence
    reloads that version with the file's config, as every other worker loads it."""
    write_model(tmp_path, "m", examples.mlp(), "1", {"max_batch_size": 64})
    settings = Settings(model_repository=tmp_path)
    repository = ModelRepository(tmp_path, settings)
    repository.load_all()
    write_model(tmp_path, "m", examples.mlp(), "2")
    read_first = ModelConfig.read(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"max_batch_size": 2}))
    path = tmp_path / "m" / "2" / "model.onnx"
    repository.add_version(LoadedModel.load("m", "2", path, read_first.resolved(settings)))
    assert repository.get("m", "2").config.max_batch_size == 64
    repository.converge("m", settle_seconds=0)
    assert repository.get("m", "2").config.max_batch_size == 2
    assert repository.get("m", "1").config.max_batch_size == 2


@pytest.mark.parametrize("then", ["unloaded", "config broken"])
def test_a_version_left_to_settle_is_forgotten_once_nothing_would_load_it(tmp_path, then):
    """A version written a moment ago waits for a second look; once the model is
    unloaded, or its config.json cannot be read, none is due (else a look every second
    for as long as the model stays so)."""
    write_model(tmp_path, "m", examples.mlp(), "1")
    repository = ModelRepository(tmp_path, Settings(model_repository=tmp_path))
    repository.load_all()
    write_model(tmp_path, "m", examples.mlp(), "2")  # its files changed just now
    repository.converge("m", settle_seconds=60.0)
    assert repository.settling("m") and list(repository.served_versions("m")) == ["1"]
    if then == "unloaded":
        (tmp_path / ".unloaded").mkdir()
        (tmp_path / ".unloaded" / "m").touch()
    else:
        (tmp_path / "m" / "config.json").write_text("{not json")
    repository.converge("m", settle_seconds=60.0)
    assert not repository.settling("m")
