"""``layerserve upload`` against a real server: the printed metadata is the stored version's,
the file is streamed, refusals carry the server's message and store nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import httpx
import numpy as np
import onnx
import pytest
from live_server import free_port, running_server, write_model
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from layerserve import client, examples
from layerserve.cli import app
from layerserve.export import to_onnx
from layerserve.service.settings import Settings

runner = CliRunner()
ADMIN_TOKEN = "upload-admin-token"
BIG_WEIGHTS = 400_000  # float32 values: a 1.6 MB graph, over the progress bar's threshold


def flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads")
    mlp = examples.mlp()
    mlp.save(root / "mlp.layerserve")
    to_onnx(mlp, root / "mlp.onnx")
    weights = np.linspace(-1, 1, BIG_WEIGHTS, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "shift",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", BIG_WEIGHTS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", BIG_WEIGHTS])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, root / "big.onnx")
    (root / "batching.json").write_text('{"max_batch_size": 8}')
    (root / "broken.json").write_text('{"max_batch_size": 8')
    (root / "list.json").write_text("[1, 2]")
    (root / "latin1.json").write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    (root / "corrupt.onnx").write_bytes(b"\x08\x07 certainly not a protobuf graph" * 10)
    return {"model": mlp, "root": root, "weights": weights}


def seeded_repository(tmp_path_factory, name: str):
    """A repository with one model: a server is ready only once it serves something."""
    root = tmp_path_factory.mktemp(name)
    write_model(root, "seed", examples.mlp())
    return root


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    repository = seeded_repository(tmp_path_factory, "repo")
    with running_server(Settings(model_repository=repository, log_level="warning")) as base:
        yield base


@pytest.fixture(scope="module")
def guarded_url(tmp_path_factory):
    repository = seeded_repository(tmp_path_factory, "guarded")
    settings = Settings(model_repository=repository, log_level="warning", admin_token=ADMIN_TOKEN)
    with running_server(settings) as base:
        yield base


def stored_versions(url: str, name: str) -> list[str]:
    index = httpx.post(f"{url}/v2/repository/index", json={}).json()
    return sorted(e["version"] for e in index if e["name"] == name)


def upload(url: str, path, name: str, *options: str, env: dict | None = None):
    arguments = ["upload", str(path), "--url", url, "--name", name, *options]
    return runner.invoke(app, arguments, env={"COLUMNS": "160", **(env or {})})


def infer(url: str, name: str, version: str, x: np.ndarray) -> np.ndarray:
    spec = httpx.get(f"{url}/v2/models/{name}/versions/{version}").json()["inputs"][0]
    tensor = {"name": spec["name"], "shape": list(x.shape), "datatype": "FP32"}
    answer = httpx.post(
        f"{url}/v2/models/{name}/versions/{version}/infer",
        json={"inputs": [{**tensor, "data": x.reshape(-1).tolist()}]},
    )
    assert answer.status_code == 200, answer.text
    output = answer.json()["outputs"][0]
    return np.asarray(output["data"], np.float32).reshape(output["shape"])


@pytest.mark.parametrize(
    ("file", "source_format", "parity"),
    [("mlp.layerserve", "layerserve", True), ("mlp.onnx", "onnx", False)],
)
def test_upload_prints_the_new_versions_metadata_and_the_server_serves_it(
    url, files, file, source_format, parity
):
    name = f"cli-{source_format}"
    path = files["root"] / file
    result = upload(url, path, name)
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    served = httpx.get(f"{url}/v2/models/{name}/versions/1").json()
    assert stored_versions(url, name) == ["1"]
    assert f"name {name}" in text and "version 1" in text
    assert f"source format {source_format}" in text and f"file {file}" in text
    assert f"sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}" in text
    for kind in ("inputs", "outputs"):
        for spec in served[kind]:
            assert f"{kind[:-1]} {spec['name']} {spec['datatype']} {spec['shape']}" in text
    assert ("max abs error" in text) is parity
    assert ("parity not checked" in text) is not parity
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    expected = files["model"].predict(x)  # the NumPy reference
    np.testing.assert_allclose(infer(url, name, "1", x), expected, rtol=1e-5, atol=1e-6)


def test_json_output_is_the_servers_metadata_and_config_is_sent(url, files):
    config = files["root"] / "batching.json"
    result = upload(
        url, files["root"] / "mlp.layerserve", "cli-json", "--config", str(config), "--json"
    )
    assert result.exit_code == 0, result.output
    metadata = json.loads(result.stdout)
    assert (metadata["name"], metadata["version"]) == ("cli-json", "1")
    assert metadata["source_format"] == "layerserve"
    assert metadata["config"]["max_batch_size"] == 8
    assert httpx.get(f"{url}/v2/models/cli-json/config").json()["max_batch_size"] == 8
    x = np.ones((1, 784), np.float32)
    assert metadata["parity"]["max_abs_error"] <= 1e-4
    np.testing.assert_allclose(
        infer(url, "cli-json", "1", x), files["model"].predict(x), rtol=1e-5, atol=1e-6
    )
    again = upload(url, files["root"] / "mlp.onnx", "cli-json", "--json")
    assert json.loads(again.stdout)["version"] == "2"
    assert stored_versions(url, "cli-json") == ["1", "2"]


def test_a_large_file_is_streamed_in_chunks_with_a_progress_bar(url, files):
    path = files["root"] / "big.onnx"
    reads: list[int] = []
    metadata = client.upload(url, "cli-big", path, on_read=reads.append)
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, BIG_WEIGHTS]}]
    assert sum(reads) == path.stat().st_size > 1024 * 1024
    assert max(reads) <= 64 * 1024  # never the whole file at once
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}  # rich draws bars on terminals
    result = upload(url, path, "cli-big", env=terminal)
    assert result.exit_code == 0, result.output
    assert "uploading big.onnx" in result.stderr
    assert "the server is checking the model" in result.stderr  # all bytes sent
    assert stored_versions(url, "cli-big") == ["1", "2"]
    x = np.full((1, BIG_WEIGHTS), 2.0, np.float32)
    np.testing.assert_array_equal(infer(url, "cli-big", "2", x), x + files["weights"])
    small = upload(url, files["root"] / "mlp.onnx", "cli-small", env=terminal)
    assert small.exit_code == 0 and "uploading" not in small.stderr


@pytest.mark.parametrize(
    ("file", "name", "options", "code", "message"),
    [
        pytest.param(
            "mlp.onnx", "a", ["--config", "broken.json"], 2, "is not valid JSON", id="config"
        ),
        pytest.param(
            "mlp.onnx", "a", ["--config", "list.json"], 2, "must hold a JSON object", id="list"
        ),
        pytest.param(
            "mlp.onnx", "a", ["--config", "latin1.json"], 2, "is not UTF-8 text", id="encoding"
        ),
        pytest.param("corrupt.onnx", "a", [], 1, "SERVER", id="corrupt file"),
        pytest.param("mlp.onnx", "bad name!", [], 1, "SERVER", id="model name"),
    ],
)
def test_refusals_carry_the_reason_and_store_nothing(
    url, files, file, name, options, code, message
):
    options = [files["root"] / o if o.endswith(".json") else o for o in options]
    path = files["root"] / file
    result = upload(url, path, name, *map(str, options))
    assert result.exit_code == code, result.output
    if message == "SERVER":  # the server's own answer to the same upload
        answer = httpx.post(f"{url}/v1/models/{name}", files={"file": (file, path.read_bytes())})
        assert 400 <= answer.status_code < 500
        message = f"the server answered {answer.status_code}: {answer.json()['error']}"
    assert message in flat(result.stderr)
    assert stored_versions(url, name) == []


def test_an_unreachable_server_is_named():
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["upload", __file__, "--url", nowhere, "--name", "m"])
    assert result.exit_code == 1
    assert f"cannot reach the server at {nowhere}/v1/models/m" in flat(result.stderr)


def test_the_admin_token_comes_from_the_option_or_the_environment(guarded_url, files):
    path = files["root"] / "mlp.onnx"
    refused = upload(guarded_url, path, "guarded")
    assert refused.exit_code == 1 and "the server answered 401" in flat(refused.stderr)
    wrong = upload(guarded_url, path, "guarded", "--token", "not-it")
    assert wrong.exit_code == 1 and "the server answered 401" in flat(wrong.stderr)
    assert upload(guarded_url, path, "guarded", "--token", ADMIN_TOKEN).exit_code == 0
    from_env = upload(guarded_url, path, "guarded", env={"LAYERSERVE_ADMIN_TOKEN": ADMIN_TOKEN})
    assert from_env.exit_code == 0, from_env.output
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    index = httpx.post(f"{guarded_url}/v2/repository/index", json={}, headers=headers).json()
    assert sorted(e["version"] for e in index if e["name"] == "guarded") == ["1", "2"]


def test_the_command_is_a_client_it_never_imports_the_server(url, files):
    code = (
        "import sys\n"
        "from layerserve.cli import app\n"
        f"app(['upload', {str(files['root'] / 'mlp.onnx')!r}, '--url', '{url}',"
        " '--name', 'cli-client', '--json'], standalone_mode=False)\n"
        "server = ('fastapi', 'starlette', 'uvicorn', 'onnxruntime', 'layerserve.service')\n"
        "print('loaded:', sorted(m for m in sys.modules if m.startswith(server)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"name": "cli-client"' in done.stdout
    # Only the settings model (pydantic), for the options of `layerserve serve`.
    assert "loaded: ['layerserve.service', 'layerserve.service.settings']" in done.stdout
