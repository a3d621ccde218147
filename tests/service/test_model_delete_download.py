"""Downloading the served graph, deleting versions and models (also under load), and
POST /v1/export, which converts without storing anything."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conversion_files import keras_mlp, save_keras
from live_server import running_server
from model_uploads import (
    hand_onnx,
    hand_reference,
    infer,
    listing,
    staging_entries,
    upload,
)
from slow_model import FEATURES, slow_reference, write_slow_model
from workers import eventually

from layerserve.service.dataplane import DataPlane
from layerserve.service.errors import ModelNotFound
from layerserve.service.model_admin import ModelAdmin
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, 0.0, 0.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("admin_repository")


@pytest.fixture(scope="module")
def url(repo):
    with running_server(Settings(model_repository=repo), wait_ready=False) as base:
        yield base


@pytest.fixture(scope="module")
def hand(tmp_path_factory) -> Path:
    return hand_onnx(tmp_path_factory.mktemp("hand") / "hand.onnx")


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    model = keras_mlp()
    return save_keras(model, tmp_path_factory.mktemp("keras") / "mlp.keras"), model


def _run(onnx_bytes: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# ---- download ------------------------------------------------------------------------
def test_download_is_the_served_file_and_runs(url, repo, hand, keras_file):
    assert upload(url, "dl", hand).status_code == 201
    assert upload(url, "dl", keras_file[0]).status_code == 201
    latest = httpx.get(f"{url}/v1/models/dl/onnx")
    assert latest.status_code == 200
    assert latest.headers["content-type"] == "application/octet-stream"
    assert latest.headers["content-disposition"] == 'attachment; filename="dl-2.onnx"'
    assert latest.content == (repo / "dl" / "2" / "model.onnx").read_bytes()
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    graph = onnx.load_from_string(latest.content).graph
    (y,) = _run(latest.content, {graph.input[0].name: x})
    np.testing.assert_allclose(y, keras_file[1].predict(x, verbose=0), rtol=1e-4, atol=1e-5)

    first = httpx.get(f"{url}/v1/models/dl/versions/1/onnx")
    assert first.headers["content-disposition"] == 'attachment; filename="dl-1.onnx"'
    assert first.content == hand.read_bytes()  # an uploaded .onnx is served as it came
    np.testing.assert_allclose(_run(first.content, {"x": X})[0], hand_reference(X), rtol=1e-6)


def test_head_of_a_download_answers_what_get_does_without_the_content(url, repo, hand):
    assert upload(url, "probe", hand).status_code == 201
    size = (repo / "probe" / "1" / "model.onnx").stat().st_size
    for route in ("/v1/models/probe/onnx", "/v1/models/probe/versions/1/onnx"):
        head = httpx.head(url + route)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(size)
        assert head.headers["content-disposition"] == 'attachment; filename="probe-1.onnx"'
        assert head.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "route",
    ["/v1/models/nope/onnx", "/v1/models/dl/versions/9/onnx", "/v1/models/dl/versions/x/onnx"],
)
def test_download_of_unknown_model_or_version_is_404(url, route, hand):
    upload(url, "dl", hand)
    response = httpx.get(url + route)
    assert response.status_code == 404
    assert "error" in response.json()


# ---- delete --------------------------------------------------------------------------
def test_delete_a_version_then_the_model(url, repo, hand):
    for _ in range(2):
        assert upload(url, "gone", hand).status_code == 201
    response = httpx.delete(f"{url}/v1/models/gone/versions/1")
    assert response.status_code == 200
    assert response.json() == {"name": "gone", "version": "1", "deleted": True}
    assert not (repo / "gone" / "1").exists()
    assert httpx.get(f"{url}/v2/models/gone/versions/1").status_code == 404
    answer, outputs = infer(url, "gone", {"x": X})
    assert answer.json()["model_version"] == "2"
    np.testing.assert_allclose(outputs["y"], hand_reference(X), rtol=1e-6)

    response = httpx.delete(f"{url}/v1/models/gone")
    assert response.json() == {"name": "gone", "version": None, "deleted": True}
    assert not (repo / "gone").exists()
    assert httpx.get(f"{url}/v2/models/gone").status_code == 404
    assert infer(url, "gone", {"x": X})[0].status_code == 404
    assert staging_entries(repo) == []


def test_a_deleted_version_number_is_never_given_again(url, repo, hand):
    """Clients and caches key on (model, version): after deleting the newest version, or
    the whole model, the next upload gets a number above every one published."""
    versions = [upload(url, "renumbered", hand).json()["version"] for _ in range(2)]
    assert versions == ["1", "2"]
    assert httpx.delete(f"{url}/v1/models/renumbered/versions/2").status_code == 200
    assert upload(url, "renumbered", hand).json()["version"] == "3"
    assert httpx.delete(f"{url}/v1/models/renumbered").status_code == 200
    assert upload(url, "renumbered", hand).json()["version"] == "4"
    assert sorted(p.name for p in (repo / "renumbered").iterdir() if p.is_dir()) == ["4"]


@pytest.mark.parametrize(
    "route",
    ["/v1/models/never", "/v1/models/never/versions/1", "/v1/models/kept/versions/7",
     "/v1/models/kept/versions/one", "/v1/models/.staging"],
)  # fmt: skip
def test_delete_of_unknown_model_or_version_is_404_and_changes_nothing(url, repo, hand, route):
    upload(url, "kept", hand)
    before = listing(repo)
    response = httpx.delete(url + route)
    assert response.status_code == 404
    assert "error" in response.json()
    assert listing(repo) == before


def test_deleting_the_last_version_stops_serving_the_model(url, repo, hand):
    upload(url, "single", hand)
    assert httpx.delete(f"{url}/v1/models/single/versions/1").status_code == 200
    assert httpx.get(f"{url}/v2/models/single").status_code == 404
    assert upload(url, "single", hand).json()["version"] == "2"  # 1 is never given again


ONE_AT_A_TIME = {"instances": 1, "max_batch_size": 0, "intra_op_threads": 1}


def test_requests_queued_before_a_delete_finish_and_later_ones_get_404(tmp_path):
    """Each infer task runs up to its queued future before it yields, so all four are
    submitted when the delete begins (the model's one executor thread may have taken the
    first already, but its result reaches the caller only through the event loop); they
    all finish with their own rows, and a request arriving after it is not found."""
    # runs of tens of milliseconds: the delete's disk and lock work takes less
    write_slow_model(tmp_path, "busy", ONE_AT_A_TIME)
    rng = np.random.default_rng(0)
    rows = [rng.random((256, FEATURES), dtype=np.float32) for _ in range(4)]

    async def scenario():
        settings = Settings(model_repository=tmp_path)
        plane = DataPlane(settings)
        await plane.start()
        admin = ModelAdmin(plane, settings)
        model = plane.model("busy", "1")
        sent = [asyncio.create_task(plane.infer(model, {"x": x})) for x in rows]
        await asyncio.sleep(0)  # each ran up to its queued future
        queued = plane.pending_requests(model)
        submitted = sum(not task.done() for task in sent)
        deleting = asyncio.create_task(admin.delete("busy", "1"))
        while plane.repository.serves(model):  # until the delete has stopped serving it
            await asyncio.sleep(0)
        unfinished = sum(not task.done() for task in sent)
        with pytest.raises(ModelNotFound):  # a request arriving now (404 over HTTP)
            plane.model("busy", "1")
        outputs = await asyncio.wait_for(asyncio.gather(*sent), timeout=60)
        answer = await deleting
        await plane.stop()
        return queued, submitted, unfinished, outputs, answer

    queued, submitted, unfinished, outputs, answer = asyncio.run(scenario())
    assert queued >= len(rows) - 1  # one instance: at most one is running
    assert submitted == len(rows)  # the delete began with all four waiting ...
    assert unfinished >= 1  # ... and at least one still waited when it stopped serving
    for x, out in zip(rows, outputs, strict=True):  # ... and each finished with its own rows
        np.testing.assert_allclose(out["y"], slow_reference(x), rtol=1e-4, atol=1e-5)
    assert answer == {"name": "busy", "version": "1", "deleted": True}
    assert not (tmp_path / "busy" / "1").exists()


def test_a_request_that_found_the_version_before_its_delete_runs_and_leaves_no_batcher(
    tmp_path,
):
    (tmp_path / "m" / "1").mkdir(parents=True)
    hand_onnx(tmp_path / "m" / "1" / "model.onnx")

    async def scenario():
        plane = DataPlane(Settings(model_repository=tmp_path))
        await plane.start()
        model = plane.model("m", "1")  # the request found its model ...
        await plane.unload_version("m", "1")  # ... then the delete retired it
        outputs = await plane.infer(model, {"x": X})
        batchers = plane.batchers()
        await plane.stop()
        return outputs, batchers

    outputs, batchers = asyncio.run(scenario())
    np.testing.assert_allclose(outputs["y"], hand_reference(X), rtol=1e-6)
    assert batchers == []  # its batcher closed after it; the old session is not kept


# ---- export --------------------------------------------------------------------------
def _temp_leftovers() -> set[str]:
    return {
        p.name
        for p in Path(tempfile.gettempdir()).iterdir()
        if p.name.startswith(("layerserve-export-", "layerserve-convert-"))
    }


def _assert_no_scratch_left(before: set[str]) -> None:
    """No conversion scratch beyond ``before``. /tmp is shared with the other pytest
    workers, whose conversions' scratch comes and goes: what this one left would stay."""
    eventually(lambda: _temp_leftovers() <= before, "no conversion scratch left")


def test_export_answers_the_graph_and_stores_nothing(url, repo, keras_file):
    path, model = keras_file
    before, temp_before = listing(repo), _temp_leftovers()
    response = httpx.post(
        f"{url}/v1/export",
        files={"file": (path.name, path.read_bytes())},
        data={"opset": "13"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-source-format"] == "keras"
    assert 0 <= float(response.headers["x-parity-max-abs-error"]) < 1e-4
    assert response.headers["content-disposition"] == 'attachment; filename="mlp.onnx"'
    graph = onnx.load_from_string(response.content)
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [13]
    x = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
    (y,) = _run(response.content, {graph.graph.input[0].name: x})
    np.testing.assert_allclose(y, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    assert listing(repo) == before
    _assert_no_scratch_left(temp_before)


@pytest.mark.parametrize(
    ("make", "data", "status", "words"),
    [
        pytest.param(lambda d, hand, k: hand, {}, 400, "is ONNX, or not a Keras file", id="onnx"),
        pytest.param(lambda d, hand, k: k[0], {"opset": "x"}, 400, "opset", id="opset_text"),
        pytest.param(lambda d, hand, k: k[0], {"opset": "3"}, 400, "opset", id="opset_old"),
        pytest.param(lambda d, hand, k: k[0], {"config": "{}"}, 400, "'config'", id="field"),
    ],
)
def test_refused_exports_store_nothing(
    url, repo, hand, keras_file, tmp_path, make, data, status, words
):
    path = make(tmp_path, hand, keras_file)
    before, temp_before = listing(repo), _temp_leftovers()
    response = httpx.post(
        f"{url}/v1/export", files={"file": (path.name, path.read_bytes())}, data=data, timeout=60
    )
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert listing(repo) == before
    _assert_no_scratch_left(temp_before)
