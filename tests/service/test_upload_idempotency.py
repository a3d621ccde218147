"""Idempotent uploads: a retry with the same ``Idempotency-Key`` and the same request is
answered with the version the first attempt created (201, the same body) and stores
nothing, also after a restart and from another server sharing the repository, and also
when the attempts run at the same time; the same key with another request is a 422, and
a key that is not a sane token a 400."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conversion_files import keras_mlp, save_keras
from live_server import running_server
from model_uploads import hand_onnx, hand_reference, infer, listing

from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

HEADER = "Idempotency-Key"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("idempotency_repository")


@pytest.fixture(scope="module")
def url(repo):
    with running_server(Settings(model_repository=repo), wait_ready=False) as base:
        yield base


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("idempotency_files")
    save_keras(keras_mlp(), folder / "mlp.keras")
    hand_onnx(folder / "hand.onnx")
    return folder


def post(
    url: str,
    name: str,
    path: Path,
    key: str | bytes | None,
    *,
    config: dict | None = None,
    filename: str | None = None,
) -> httpx.Response:
    headers = {} if key is None else {HEADER: key}
    data = {} if config is None else {"config": json.dumps(config)}
    files = {"file": (filename or path.name, path.read_bytes(), "application/octet-stream")}
    return httpx.post(
        f"{url}/v1/models/{name}", files=files, data=data, headers=headers, timeout=120
    )


def versions(repo: Path, name: str) -> list[str]:
    return sorted(p.name for p in (repo / name).iterdir() if p.name.isdigit())


def stored(repo: Path) -> dict[str, str]:
    """Every file of the repository but the empty staging and lock folders' contents."""
    return {
        path: digest
        for path, digest in listing(repo).items()
        if not path.startswith((".staging", ".locks"))
    }


def test_a_retry_answers_the_first_version_and_stores_nothing(url, repo, files):
    first = post(url, "retried", files / "mlp.keras", "upload-0001")
    assert first.status_code == 201, first.text
    assert first.json()["version"] == "1" and "idempotent-replayed" not in first.headers
    before = stored(repo)

    retry = post(url, "retried", files / "mlp.keras", "upload-0001")
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert stored(repo) == before  # no version, no file
    record = json.loads((repo / "retried" / "1" / "upload.json").read_text())
    assert record["idempotency"]["key"] == "upload-0001"

    # The same file under a new key, or under none, is a new upload.
    assert post(url, "retried", files / "mlp.keras", "upload-0002").json()["version"] == "2"
    assert post(url, "retried", files / "mlp.keras", None).json()["version"] == "3"
    # A key is remembered per model: another model's version is another upload.
    other = post(url, "retried_elsewhere", files / "mlp.keras", "upload-0001")
    assert (other.status_code, other.json()["version"]) == (201, "1")


def test_a_quoted_key_is_the_same_key(url, repo, files):
    """The IETF draft writes the key as a structured-field string, in double quotes."""
    first = post(url, "quoted", files / "hand.onnx", '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    retry = post(url, "quoted", files / "hand.onnx", "8e03978e-40d5-43e8-bc93-6894a57f9324")
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json() == first.json() and versions(repo, "quoted") == ["1"]


def test_the_key_survives_a_restart_and_is_seen_by_another_server(url, repo, files):
    first = post(url, "shared", files / "hand.onnx", "shared-key")
    assert first.status_code == 201, first.text
    before = stored(repo)
    # A second server on the same repository: a restart, or another replica.
    with running_server(Settings(model_repository=repo), wait_ready=False) as other:
        retry = post(other, "shared", files / "hand.onnx", "shared-key")
        assert retry.status_code == 201, retry.text
        assert retry.json() == first.json()
        assert retry.headers["idempotent-replayed"] == "true"
    assert stored(repo) == before and versions(repo, "shared") == ["1"]


@pytest.mark.parametrize(
    ("change", "changed"),
    [
        ("file", {"path": "hand.onnx"}),
        ("file name", {"filename": "renamed.keras"}),
        ("config", {"config": {"max_batch_size": 4}}),
    ],
)
def test_the_same_key_with_another_request_is_a_422(url, repo, files, change, changed):
    name = f"reused_{change.replace(' ', '_')}"
    first = post(url, name, files / "mlp.keras", "reused-key")
    assert first.status_code == 201, first.text
    before = stored(repo)
    path = files / changed.get("path", "mlp.keras")
    response = post(
        url,
        name,
        path,
        "reused-key",
        config=changed.get("config"),
        filename=changed.get("filename"),
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "error": f"Expected Idempotency-Key 'reused-key' to come with the request it was "
        f"first used for, which created version 1 of model '{name}'. Received: a different "
        "request (another file, file name or config). Use a new key for a new upload; a "
        "retry must resend the same request."
    }
    assert stored(repo) == before


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("", "''"),
        ("has space", "'has space'"),
        ("x" * 256, repr("x" * 64 + "...")),
        (b"caf\xc3\xa9", repr("caf\xc3\xa9")),
        ('"unterminated', repr('"unterminated')),
        ('""', repr('""')),
    ],
)
def test_a_key_that_is_not_a_sane_token_is_a_400(url, repo, files, key, shown):
    before = stored(repo)
    response = post(url, "bad_key", files / "hand.onnx", key)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(
        "Expected an Idempotency-Key header of 1 to 255 visible ASCII characters"
    )
    assert f"Received: {shown} (" in error
    assert stored(repo) == before and not (repo / "bad_key").exists()


def test_two_key_headers_are_a_400(url, files):
    response = httpx.post(
        f"{url}/v1/models/two_keys",
        files={"file": ("hand.onnx", (files / "hand.onnx").read_bytes())},
        headers=[(HEADER, "one"), (HEADER, "two")],
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("Expected one Idempotency-Key header.")


def test_concurrent_attempts_with_one_key_publish_once(url, repo, files):
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: post(url, "concurrent", files / "mlp.keras", "race"), range(4))
        )
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert sum("idempotent-replayed" in a.headers for a in answers) == 3
    assert versions(repo, "concurrent") == ["1"]


def test_the_header_is_documented(url):
    operation = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]["/v1/models/{name}"][
        "post"
    ]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == HEADER]
    assert parameter["in"] == "header" and parameter["required"] is False
    assert "422" in parameter["description"] and "201" in parameter["description"]


def test_a_replay_serves_the_same_model(url, files):
    first = post(url, "replayed_model", files / "hand.onnx", "serve-me")
    retry = post(url, "replayed_model", files / "hand.onnx", "serve-me")
    assert retry.json()["version"] == first.json()["version"] == "1"
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    answer, outputs = infer(url, "replayed_model", {"x": x}, version="1")
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(outputs["y"], hand_reference(x), rtol=1e-6)


def test_concurrent_attempts_on_two_servers_sharing_the_repository_publish_once(url, repo, files):
    """Each server has its own in-process lock; the repository's lock file orders them."""
    with running_server(Settings(model_repository=repo), wait_ready=False) as other:
        targets = [url, other] * 2
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda base: post(base, "two_servers", files / "mlp.keras", "k"), targets)
            )
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert versions(repo, "two_servers") == ["1"]
