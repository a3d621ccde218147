"""POST /v1/models/{m} end to end: each accepted format is served and answers like its
reference; versions count up, also for concurrent uploads; every refused upload answers
4xx ``{"error"}`` and leaves the repository byte for byte as it was."""

from __future__ import annotations

import gzip
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conversion_files import (
    entries_of,
    keras_lambda,
    keras_masked_lstm,
    keras_mlp,
    save_keras,
    zip_bytes,
)
from live_server import running_server
from model_uploads import (
    batch_of_two_onnx,
    custom_domain_onnx,
    external_data_onnx,
    hand_onnx,
    hand_reference,
    infer,
    listing,
    staging_entries,
    upload,
)

from layerserve import examples
from layerserve.export import to_onnx
from layerserve.saving import save_model
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

MAX_UPLOAD = 4 * 1024 * 1024
MAX_UNPACKED = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("upload_repository")


@pytest.fixture(scope="module")
def url(repo):
    settings = Settings(
        model_repository=repo, max_upload_bytes=MAX_UPLOAD, max_unpacked_bytes=MAX_UNPACKED
    )
    with running_server(settings, wait_ready=False) as base:
        yield base


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """name -> (path, reference function of the inputs dict, input name, feature shape)."""
    d = tmp_path_factory.mktemp("upload_files")
    layer_mlp = examples.mlp()
    to_onnx(layer_mlp, d / "exported.onnx")
    layer_conv = examples.conv_flatten()
    save_model(layer_conv, d / "conv.zip")
    k_mlp, k_lstm = keras_mlp(), keras_masked_lstm()
    save_keras(k_mlp, d / "mlp.keras")
    save_keras(k_lstm, d / "lstm.h5")
    hand_onnx(d / "hand.onnx")

    def keras_ref(model):
        return lambda x: model.predict(x, verbose=0)

    return {
        "exported_onnx": (d / "exported.onnx", layer_mlp.predict, "onnx"),
        "hand_onnx": (d / "hand.onnx", hand_reference, "onnx"),
        "keras": (d / "mlp.keras", keras_ref(k_mlp), "keras"),
        "h5": (d / "lstm.h5", keras_ref(k_lstm), "h5"),
        "layerserve": (d / "conv.zip", layer_conv.predict, "layerserve"),
    }


def _inputs(metadata: dict, rows: int) -> np.ndarray:
    (spec,) = metadata["inputs"]
    shape = [rows, *spec["shape"][1:]]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    if len(shape) == 3:
        x[:, 2, :] = 0.0  # a masked timestep
    return x


@pytest.mark.parametrize("kind", ["exported_onnx", "hand_onnx", "keras", "h5", "layerserve"])
def test_each_format_is_served_like_its_reference(url, repo, files, kind):
    path, reference, source = files[kind]
    response = upload(url, f"fmt_{kind}", path)
    assert response.status_code == 201, response.text
    meta = response.json()
    assert (meta["name"], meta["version"], meta["source_format"]) == (f"fmt_{kind}", "1", source)
    assert meta["original_filename"] == path.name
    assert meta["providers"] == ["CPUExecutionProvider"]
    assert all(-1 == o["shape"][0] for o in meta["outputs"])
    if source == "onnx":
        assert meta["parity"] is None
        assert meta["onnx_sha256"] == meta["sha256"]
    else:
        assert 0 <= meta["parity"]["max_abs_error"] < 1e-4
    version_dir = repo / f"fmt_{kind}" / "1"
    record = json.loads((version_dir / "upload.json").read_text())
    assert record["source_format"] == source and record["sha256"] == meta["sha256"]
    original = version_dir / record["original_file"]
    assert original.read_bytes() == path.read_bytes()

    x = _inputs(meta, rows=3)
    answer, outputs = infer(url, f"fmt_{kind}", {meta["inputs"][0]["name"]: x})
    assert answer.status_code == 200, answer.text
    main_output = next(
        o["name"] for o in meta["outputs"] if o["name"] not in meta["mask_outputs"].values()
    )
    np.testing.assert_allclose(outputs[main_output], reference(x), rtol=1e-4, atol=1e-5)


def test_keras_masks_are_outputs_of_the_served_model(url, files):
    path, reference, _ = files["h5"]
    meta = upload(url, "masked", path).json()
    (main,) = [o["name"] for o in meta["outputs"] if not o["name"].endswith("_mask")]
    assert meta["mask_outputs"] == {main: f"{main}_mask"}
    x = _inputs(meta, rows=2)
    x[1, 4:, :] = 0.0
    _, outputs = infer(url, "masked", {meta["inputs"][0]["name"]: x}, None, [main, f"{main}_mask"])
    # Masking(mask_value=0): a timestep is kept when any of its features is not 0.
    kept = np.array([[any(v != 0 for v in step) for step in row] for row in x])
    assert kept.sum() == 2 * 6 - 2 - 2
    np.testing.assert_array_equal(outputs[f"{main}_mask"], kept)
    np.testing.assert_allclose(outputs[main], reference(x), rtol=1e-4, atol=1e-5)


def test_each_upload_is_the_next_version(url, repo, files):
    path = files["hand_onnx"][0]
    versions = [upload(url, "counted", path).json()["version"] for _ in range(3)]
    assert versions == ["1", "2", "3"]
    meta = httpx.get(f"{url}/v2/models/counted").json()
    assert meta["versions"] == ["1", "2", "3"]
    assert sorted(p.name for p in (repo / "counted").iterdir()) == ["1", "2", "3"]


def test_concurrent_uploads_get_distinct_versions_and_all_serve(url, repo, files):
    path = files["hand_onnx"][0]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: upload(url, "crowd", path), range(6)))
    assert [r.status_code for r in responses] == [201] * 6
    assert sorted(int(r.json()["version"]) for r in responses) == [1, 2, 3, 4, 5, 6]
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], dtype=np.float32)
    for version in map(str, range(1, 7)):
        answer, outputs = infer(url, "crowd", {"x": x}, version)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(outputs["y"], hand_reference(x), rtol=1e-6)
    assert staging_entries(repo) == []


def test_config_is_stored_and_applies_to_the_model(url, repo, files):
    config = {"max_batch_size": 2, "instances": 1}
    response = upload(url, "configured", files["hand_onnx"][0], config=config)
    assert response.status_code == 201, response.text
    assert response.json()["config"]["max_batch_size"] == 2
    assert json.loads((repo / "configured" / "config.json").read_text()) == config
    x = np.ones((3, 3), dtype=np.float32)
    answer, _ = infer(url, "configured", {"x": x})
    assert answer.status_code == 400
    assert "batch-size must be <= 2" in answer.json()["error"]


def test_a_new_config_applies_to_the_other_versions_too(url, repo, files):
    path = files["hand_onnx"][0]
    assert upload(url, "reconfigured", path).json()["config"]["max_batch_size"] == 64
    answer = upload(url, "reconfigured", path, config={"max_batch_size": 2})
    assert answer.json()["version"] == "2"
    x = np.ones((3, 3), dtype=np.float32)
    for version in ("1", "2"):
        response, _ = infer(url, "reconfigured", {"x": x}, version)
        assert response.status_code == 400
        assert "batch-size must be <= 2" in response.json()["error"]
    response, outputs = infer(url, "reconfigured", {"x": x[:2]}, "1")
    np.testing.assert_allclose(outputs["y"], hand_reference(x[:2]), rtol=1e-6)


# ---- refusals ------------------------------------------------------------------------
def _zip_slip(d: Path, files: dict) -> Path:
    entries = entries_of(files["keras"][0]) + [("../../escaped.txt", b"outside")]
    path = d / "slip.keras"
    path.write_bytes(zip_bytes(entries))
    return path


def _zip_bomb(d: Path, files: dict) -> Path:
    entries = entries_of(files["keras"][0]) + [("padding.bin", bytes(2 * MAX_UNPACKED))]
    path = d / "bomb.keras"
    path.write_bytes(zip_bytes(entries))
    return path


def _write(name: str, data: bytes):
    def make(d: Path, files: dict) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return make


def _lambda_keras(d: Path, files: dict) -> Path:
    return save_keras(keras_lambda(), d / "lambda.keras")


def _truncated_h5(d: Path, files: dict) -> Path:
    data = files["h5"][0].read_bytes()
    return _write("truncated.h5", data[: len(data) // 2])(d, files)


def _existing(kind: str):
    return lambda d, files: files[kind][0]


# (case, model name, file maker, config, status, words in the error)
REFUSALS = [
    ("name_dash", "-dash", _existing("hand_onnx"), None, 400, "invalid model name"),
    ("name_dot", ".staging", _existing("hand_onnx"), None, 400, "invalid model name"),
    ("name_long", "n" * 65, _existing("hand_onnx"), None, 400, "1 to 64 characters"),
    ("name_space", "two words", _existing("hand_onnx"), None, 400, "invalid model name"),
    ("name_newline", "abc%0A", _existing("hand_onnx"), None, 400, "invalid model name"),
    # GET /v2/models/stats is every model's statistics: such a model's metadata is out of reach
    ("name_stats", "stats", _existing("hand_onnx"), None, 400, "not 'stats'"),
    ("threads_bomb", "t", _existing("hand_onnx"), {"intra_op_threads": 3 * 10**9}, 400, "256"),
    ("oversize", "big", _write("big.onnx", os.urandom(MAX_UPLOAD + 1)), None, 413, "exceeds"),
    ("corrupt_onnx", "bad", _write("bad.onnx", b"\x08\x07garbage" * 50), None, 400, "ONNX"),
    ("corrupt_zip", "bad", _write("bad.keras", b"PK\x03\x04" + os.urandom(300)), None, 400, "zip"),
    ("truncated_h5", "bad", _truncated_h5, None, 400, "h5"),
    ("text_file", "bad", _write("notes.onnx", b"hello, I am not a model\n"), None, 400, "text"),
    ("empty_file", "bad", _write("empty.onnx", b""), None, 400, "empty"),
    ("lambda_keras", "lam", _lambda_keras, None, 400, "layerserve export"),
    ("external_data", "ext", lambda d, f: external_data_onnx(d), None, 400, "external data"),
    ("custom_domain", "dom", lambda d, f: custom_domain_onnx(d / "custom.onnx"), None, 400,
     "com.example.custom"),
    ("zip_slip", "slip", _zip_slip, None, 400, "escaped.txt"),
    ("zip_bomb", "bomb", _zip_bomb, None, 400, f"at most {MAX_UNPACKED} bytes"),
    ("fails_warm_up", "two", lambda d, f: batch_of_two_onnx(d / "two.onnx"), None, 400,
     "warm-up"),
    ("config_not_json", "cfg", _existing("hand_onnx"), "{max_batch_size: 2", 400, "config"),
    ("config_unknown_key", "cfg", _existing("hand_onnx"), {"batch": 2}, 400, "batch"),
    ("config_negative", "cfg", _existing("hand_onnx"), {"max_batch_size": -1}, 400,
     "max_batch_size"),
]  # fmt: skip


@pytest.fixture(scope="module")
def populated(url, files):
    """A model already there, so that refusals are checked against a non-empty tree."""
    assert upload(url, "present", files["hand_onnx"][0]).status_code == 201


@pytest.mark.parametrize(
    ("name", "make", "config", "status", "words"),
    [pytest.param(*row[1:], id=row[0]) for row in REFUSALS],
)
def test_refused_uploads_store_nothing(
    url, repo, files, populated, tmp_path, name, make, config, status, words
):
    path = make(tmp_path, files)
    before = listing(repo)
    response = upload(url, name, path, config=config)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["error"].lower()
    assert listing(repo) == before
    assert staging_entries(repo) == []
    assert httpx.get(f"{url}/v2/models/{name}/versions/1").status_code in (400, 404)


def _multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    body = b""
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"' + (
            f'; filename="{filename}"' if filename else ""
        )
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def _post_raw(url: str, body, content_type: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/models/raw", content=body, headers={"content-type": content_type}, timeout=60
    )


FORM = "multipart/form-data; boundary=xyz"
MALFORMED = [
    ("json_body", b'{"file": "x"}', "application/json", 400, "multipart/form-data"),
    ("no_boundary", b"", "multipart/form-data", 400, "boundary"),
    ("no_file_field", _multipart("xyz", [("config", None, b"{}")]), FORM, 400, "'file'"),
    ("unknown_field", _multipart("xyz", [("model", "m.onnx", b"x")]), FORM, 400, "'model'"),
    ("file_twice", _multipart("xyz", [("file", "a.onnx", b"x"), ("file", "b.onnx", b"y")]),
     FORM, 400, "more than once"),
    ("truncated_form", _multipart("xyz", [("file", "a.onnx", b"x")])[:-12], FORM, 400,
     "closing boundary"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [pytest.param(*row[1:], id=row[0]) for row in MALFORMED],
)
def test_malformed_forms_store_nothing(url, repo, populated, body, content_type, status, words):
    before = listing(repo)
    response = _post_raw(url, body, content_type)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert listing(repo) == before


def test_a_compressed_upload_is_refused_naming_the_encoding(url, repo, populated):
    form = gzip.compress(_multipart("xyz", [("file", "a.onnx", b"x")]))
    before = listing(repo)
    response = httpx.post(
        f"{url}/v1/models/raw",
        content=form,
        headers={"content-type": FORM, "content-encoding": "gzip"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert "received 'gzip'" in response.json()["error"]
    assert listing(repo) == before


def test_oversize_body_without_content_length_is_refused_while_streaming(url, repo, populated):
    def body():
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="b.onnx"\r\n\r\n'
        for _ in range(MAX_UPLOAD // (256 * 1024) + 8):
            yield os.urandom(256 * 1024)
        yield b"\r\n--xyz--\r\n"

    before = listing(repo)
    response = _post_raw(url, body(), FORM)
    assert response.status_code == 413, response.text
    assert f"maximum upload size of {MAX_UPLOAD} bytes" in response.json()["error"]
    assert listing(repo) == before
