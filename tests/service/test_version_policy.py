"""The version policy of config.json, in Triton's form: ``{"latest": {"num_versions":
N}}``, ``{"all": {}}`` (the default) or ``{"specific": {"versions": [...]}}``. On
versions 1 to 3 each policy serves what a hand-written table says, a request without a
version gets the highest version served, and a request for a version the policy leaves
out is a 404 naming the versions served. A policy that is not exactly one of the three,
or is empty, is refused in an upload's config field (400) and, on disk, makes the model
unavailable with the reason in the repository index. Under ``latest`` a new version
retires the old one only once it serves.

Each version has its own weights, so an answer shows which version computed it."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import running_server, write_model
from model_uploads import upload
from published import BOUND, POLL, eventually, publish, tiny

from layerserve.export import to_onnx
from layerserve.service.settings import Settings

ATOL = 1e-5
X = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
LATEST_1 = {"latest": {"num_versions": 1}}
POLICIES = {
    "latest1": LATEST_1,
    "latest2": {"latest": {"num_versions": 2}},
    "latest9": {"latest": {"num_versions": 9}},
    "specific": {"specific": {"versions": [1, 3, 8]}},
    "every": {"all": {}},
    "default": None,
}
# What each policy serves of versions 1, 2 and 3, by hand.
SERVED = {
    "latest1": ["3"],
    "latest2": ["2", "3"],
    "latest9": ["1", "2", "3"],
    "specific": ["1", "3"],
    "every": ["1", "2", "3"],
    "default": ["1", "2", "3"],
}
BAD_POLICIES = {
    "two_keys": ({"latest": {"num_versions": 1}, "all": {}}, "exactly one of"),
    "no_key": ({}, "exactly one of"),
    "zero_versions": ({"latest": {"num_versions": 0}}, "num_versions"),
    "empty_specific": ({"specific": {"versions": []}}, "versions"),
    "unknown_key": ({"newest": {}}, "newest"),
}


def infer(http: httpx.Client, name: str, version: str | None = None) -> httpx.Response:
    route = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    entry = {"name": "dense_input", "shape": list(X.shape), "datatype": "FP32"}
    return http.post(route, json={"inputs": [{**entry, "data": X.reshape(-1).tolist()}]})


def assert_serves(http: httpx.Client, name: str, version: str | None, expected: str) -> None:
    response = infer(http, name, version)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == expected
    values = np.asarray(response.json()["outputs"][0]["data"], np.float32).reshape(2, 3)
    np.testing.assert_allclose(values, tiny(int(expected)).predict(X), rtol=0, atol=ATOL)


def versions(http: httpx.Client, name: str) -> list[str] | int:
    response = http.get(f"/v2/models/{name}")
    return response.json()["versions"] if response.status_code == 200 else response.status_code


def index_of(http: httpx.Client, name: str) -> list[dict]:
    return [e for e in http.post("/v2/repository/index").json() if e["name"] == name]


def tried(http: httpx.Client, name: str) -> bool:
    """The server has read ``name`` (the index no longer says it is merely on disk)."""
    return [e.get("reason") for e in index_of(http, name)] not in ([], ["not loaded"])


def onnx_file(folder: Path, version: int) -> Path:
    path = folder / f"tiny{version}.onnx"
    if not path.exists():
        to_onnx(tiny(version), path)
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("policies")
    for name, policy in POLICIES.items():
        config = None if policy is None else {"version_policy": policy}
        for version in ("1", "2", "3"):
            write_model(root, name, tiny(int(version)), version, config)
    return root


@pytest.fixture(scope="module")
def url(repo) -> Iterator[str]:
    with running_server(Settings(model_repository=repo, repository_poll_seconds=POLL)) as base:
        yield base


@pytest.fixture
def http(url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


# ---- what each policy serves ---------------------------------------------------------
@pytest.mark.parametrize("name", list(SERVED))
def test_each_policy_serves_its_versions_and_refuses_the_others(http, name):
    served = SERVED[name]
    assert versions(http, name) == served
    assert index_of(http, name) == [{"name": name, "version": v, "state": "READY"} for v in served]
    assert_serves(http, name, None, expected=served[-1])  # the highest served
    for version in ("1", "2", "3"):
        if version in served:
            assert_serves(http, name, version, expected=version)
            continue
        for response in (infer(http, name, version), http.get(f"/v2/models/{name}/{version}")):
            assert response.status_code == 404
        error = infer(http, name, version).json()["error"]
        assert f"'{name}' version {version} is not found" in error
        assert f"available versions: {served}" in error


# ---- refused policies ----------------------------------------------------------------
@pytest.mark.parametrize("case", list(BAD_POLICIES))
def test_a_bad_policy_in_an_upload_is_a_400_and_stores_nothing(url, repo, tmp_path, case):
    policy, words = BAD_POLICIES[case]
    response = upload(url, f"up_{case}", onnx_file(tmp_path, 1), config={"version_policy": policy})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("invalid 'config' field: version_policy")
    assert words in error
    assert not (repo / f"up_{case}").exists()


@pytest.mark.parametrize("case", list(BAD_POLICIES))
def test_a_bad_policy_on_disk_makes_the_model_unavailable_saying_why(http, repo, case):
    policy, words = BAD_POLICIES[case]
    name = f"disk_{case}"
    (repo / ".incoming-config").write_text(json.dumps({"version_policy": policy}))
    publish(repo, name, "1", to_bytes(1))
    os.rename(repo / ".incoming-config", repo / name / "config.json")
    eventually(lambda: tried(http, name), True)
    (entry,) = index_of(http, name)
    assert entry["state"] == "UNAVAILABLE"
    assert "config.json" in entry["reason"] and words in entry["reason"], entry
    response = infer(http, name)
    assert response.status_code == 503
    assert words in response.json()["error"]
    # A model found by polling does not make a serving server unready.
    assert http.get("/v2/health/ready").status_code == 200


def test_a_policy_that_selects_no_version_on_disk_says_so(http, repo):
    (repo / ".incoming-config").write_text(
        json.dumps({"version_policy": {"specific": {"versions": [7]}}})
    )
    publish(repo, "nothing_selected", "1", to_bytes(1))
    os.rename(repo / ".incoming-config", repo / "nothing_selected" / "config.json")
    eventually(lambda: tried(http, "nothing_selected"), True)
    (entry,) = index_of(http, "nothing_selected")
    assert entry["state"] == "UNAVAILABLE"
    assert "selects none of the versions ['1']" in entry["reason"]


def to_bytes(version: int) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return onnx_file(Path(folder), version).read_bytes()


# ---- a new version under "latest" ----------------------------------------------------
@contextlib.contextmanager
def serving(root: Path) -> Iterator[tuple[str, httpx.Client]]:
    """A server of its own on ``root`` (as it is now), polling."""
    root.mkdir(exist_ok=True)
    settings = Settings(model_repository=root, repository_poll_seconds=POLL)
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=60) as client:
        yield base, client


def test_an_uploaded_version_under_latest_1_retires_the_old_one(tmp_path):
    root = tmp_path / "repository"
    with serving(root) as (url, http):
        first = upload(url, "up", onnx_file(tmp_path, 1), config={"version_policy": LATEST_1})
        assert first.status_code == 201, first.text
        assert first.json()["version"] == "1"
        second = upload(url, "up", onnx_file(tmp_path, 2))
        assert second.status_code == 201, second.text
        assert second.json()["version"] == "2"
        assert versions(http, "up") == ["2"]
        assert_serves(http, "up", None, expected="2")
        refused = infer(http, "up", "1")
        assert refused.status_code == 404
        assert "available versions: ['2']" in refused.json()["error"]
        assert (root / "up" / "1" / "model.onnx").is_file()  # the policy chooses; files stay


def test_deleting_the_served_version_under_latest_1_serves_the_one_before(tmp_path):
    """The repository holds version 1 and the policy selects it: after the delete of
    version 2 the server converges to that, with or without polling."""
    root = tmp_path / "repository"
    for version in ("1", "2"):
        write_model(root, "m", tiny(int(version)), version, {"version_policy": LATEST_1})
    settings = Settings(model_repository=root, repository_poll_seconds=0)
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=30) as http:
        assert versions(http, "m") == ["2"]
        assert http.delete("/v1/models/m/versions/2").status_code == 200
        assert versions(http, "m") == ["1"]
        assert_serves(http, "m", None, expected="1")


def test_a_new_version_under_latest_1_replaces_the_old_without_a_gap(tmp_path):
    root = tmp_path / "repository"
    for version in ("1", "2"):
        write_model(root, "m", tiny(int(version)), version, {"version_policy": LATEST_1})
    with serving(root) as (_, http):
        assert versions(http, "m") == ["2"]
        answered: list[tuple[int, str]] = []
        publish(root, "m", "3", to_bytes(3))
        deadline = time.monotonic() + BOUND
        while not answered or answered[-1] != (200, "3"):
            assert time.monotonic() < deadline, answered[-5:]
            response = infer(http, "m")
            answered.append((response.status_code, response.json().get("model_version", "")))
        assert set(answered) <= {(200, "2"), (200, "3")}, sorted(set(answered))
        assert versions(http, "m") == ["3"]


def test_a_broken_new_version_under_latest_1_keeps_the_old_one_serving(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="layerserve.service")
    root = tmp_path / "repository"
    write_model(root, "m", tiny(1), "1", {"version_policy": LATEST_1})
    with serving(root) as (_, http):
        publish(root, "m", "2", b"not an ONNX model\n" * 8)
        failed = "model m version 2 did not load"
        eventually(lambda: any(failed in r.getMessage() for r in caplog.records), True)
        assert versions(http, "m") == ["1"]
        assert_serves(http, "m", None, expected="1")


@pytest.mark.parametrize("with_config", [False, True], ids=["policy_on_disk", "policy_in_form"])
def test_an_upload_the_policy_does_not_select_is_served_or_refused_whole(tmp_path, with_config):
    """Under ``specific: [1]`` a new version 2 is not served: the upload must not answer
    201 for a version nobody can reach, nor an error after storing it."""
    root = tmp_path / "repository"
    only_1 = {"version_policy": {"specific": {"versions": [1]}}}
    write_model(root, "s", tiny(1), "1", only_1)
    with serving(root) as (url, http):
        config = only_1 if with_config else None
        response = upload(url, "s", onnx_file(tmp_path, 2), config=config)
        stored = sorted(p.name for p in (root / "s").iterdir() if p.name.isdigit())
        if response.status_code == 201:
            version = response.json()["version"]
            assert version in versions(http, "s"), (version, versions(http, "s"))
        else:
            assert response.status_code in (400, 409), response.text
            assert stored == ["1"], response.text
        assert_serves(http, "s", None, expected="1")


def test_an_upload_the_policy_refuses_is_never_served_meanwhile(tmp_path):
    """The refusal is decided before anything is written: clients asking while such
    uploads come in get version 2 alone, never version 1 (which the refused policy
    selects), the refused version, or the refused config's batch limit (1, for requests
    of 2 rows)."""
    root = tmp_path / "repository"
    write_model(root, "r", tiny(1), "1")
    write_model(root, "r", tiny(2), "2")
    refused = {"max_batch_size": 1, "version_policy": {"specific": {"versions": [1]}}}
    answers: collections.Counter = collections.Counter()
    stop = threading.Event()
    with serving(root) as (url, http):

        def ask() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                while not stop.is_set():
                    response = infer(client, "r")
                    answers[response.status_code, response.json().get("model_version")] += 1

        askers = [threading.Thread(target=ask) for _ in range(3)]
        for asker in askers:
            asker.start()
        try:
            for _ in range(15):
                response = upload(url, "r", onnx_file(tmp_path, 3), config=refused)
                assert response.status_code == 409, response.text
            upload_operation = httpx.get(f"{url}/openapi.json").json()["paths"]["/v1/models/{name}"]
            documented = upload_operation["post"]["responses"]["409"]["content"]
            assert "version policy" in documented["application/json"]["example"]["error"]
        finally:
            stop.set()
            for asker in askers:
                asker.join()
        assert set(answers) == {(200, "2")}, answers
        assert sorted(p.name for p in (root / "r").iterdir()) == ["1", "2"]


def test_an_uploads_config_keeps_the_fields_it_does_not_give(tmp_path):
    """A batch size sent alone with an upload keeps the version policy (else the
    versions ``latest: 1`` retired would serve again); ``null`` removes a field."""
    root = tmp_path / "repository"
    write_model(root, "k", tiny(1), "1", {"version_policy": LATEST_1, "max_batch_size": 4})
    with serving(root) as (url, http):
        response = upload(url, "k", onnx_file(tmp_path, 2), config={"max_queue_delay_us": 50})
        assert response.status_code == 201, response.text
        on_disk = json.loads((root / "k" / "config.json").read_text())
        assert on_disk == {
            "version_policy": LATEST_1,
            "max_batch_size": 4,
            "max_queue_delay_us": 50,
        }
        assert versions(http, "k") == ["2"]
        response = upload(url, "k", onnx_file(tmp_path, 3), config={"max_batch_size": None})
        assert response.status_code == 201, response.text
        on_disk = json.loads((root / "k" / "config.json").read_text())
        assert on_disk == {"version_policy": LATEST_1, "max_queue_delay_us": 50}
        assert versions(http, "k") == ["3"]
        assert_serves(http, "k", None, expected="3")
