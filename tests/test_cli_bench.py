"""``layerserve bench`` against a real server: every request it counts is one the server
counted (its statistics extension), every failure is reported with the server's message,
and the plot is a real PNG."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import matplotlib.image
import numpy as np
import onnx
import pytest
from live_server import demo_repository, free_port, running_server
from onnx import TensorProto, helper
from typer.testing import CliRunner

from layerserve import plotting
from layerserve.bench import random_inputs
from layerserve.cli import app
from layerserve.loadgen import Run, milliseconds
from layerserve.service.settings import Settings

runner = CliRunner()
QUICK = ["--duration", "0.3", "--warmup", "0.1"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
API_TOKEN = "bench-api-token"


def flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


def save_graph(path, inputs, outputs, nodes) -> None:
    graph = helper.make_graph(nodes, "graph", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path.parent.mkdir(parents=True)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = demo_repository(tmp_path_factory.mktemp("bench-repository"))
    # Variable time steps: bench needs --shape for them.
    save_graph(
        root / "sequence" / "1" / "model.onnx",
        [helper.make_tensor_value_info("steps", TensorProto.FLOAT, ["batch", "time", 4])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_node("ReduceSum", ["steps", "axis"], ["total"], keepdims=0)],
    )
    graph = onnx.load(root / "sequence" / "1" / "model.onnx")
    graph.graph.initializer.append(helper.make_tensor("axis", TensorProto.INT64, [1], [1]))
    onnx.save(graph, root / "sequence" / "1" / "model.onnx")
    save_graph(
        root / "counts" / "1" / "model.onnx",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3])],
        [helper.make_tensor_value_info("same", TensorProto.INT64, ["batch", 3])],
        [helper.make_node("Identity", ["ids"], ["same"])],
    )
    # Rows of a 3-row table by index: bench's random ids (0..9) fail on the server.
    table = helper.make_tensor("table", TensorProto.FLOAT, [3, 2], [0.0, 1, 2, 3, 4, 5])
    save_graph(
        root / "table" / "1" / "model.onnx",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 3, 2])],
        [helper.make_node("Constant", [], ["table"], value=table)]
        + [helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0)],
    )
    return root


@pytest.fixture(scope="module")
def url(repository):
    with running_server(Settings(model_repository=repository, log_level="warning")) as base:
        yield base


@pytest.fixture(scope="module")
def guarded_url(repository):
    settings = Settings(model_repository=repository, log_level="warning", api_token=API_TOKEN)
    with running_server(settings) as base:
        yield base


def server_counts(url: str, model: str, headers: dict | None = None) -> tuple[int, int, int]:
    """(successful requests, failed requests, rows inferred) over every version."""
    stats = httpx.get(f"{url}/v2/models/{model}/stats", headers=headers).json()["model_stats"]
    return (
        sum(s["inference_stats"]["success"]["count"] for s in stats),
        sum(s["inference_stats"]["fail"]["count"] for s in stats),
        sum(s["inference_count"] for s in stats),
    )


def bench_json(url: str, *arguments: str) -> dict:
    result = runner.invoke(app, ["bench", "--url", url, *QUICK, "--json", *arguments])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("model", "arguments", "rows", "levels"),
    [
        ("mlp", ["--protocol", "json", "--concurrency", "1", "4"], 1, [1, 4]),
        ("mlp", ["--protocol", "binary", "--batch", "8", "--version", "1"], 8, [1, 4, 16]),
        ("hadamard", ["--protocol", "binary", "--concurrency", "3"], 1, [3]),
        ("conv_flatten", ["--protocol", "tfserving", "--batch", "2", "--concurrency", "2"], 2, [2]),
        ("sequence", ["--shape", "steps=7,4", "--batch", "3", "--concurrency", "2"], 3, [2]),
        ("counts", ["--concurrency", "2,5"], 1, [2, 5]),
    ],
)
def test_every_request_bench_counts_is_one_the_server_answered(url, model, arguments, rows, levels):
    before = server_counts(url, model)
    report = bench_json(url, "--model", model, *arguments)
    success, failed, inferred = np.subtract(server_counts(url, model), before)

    received = sum(level["received"] for level in report["levels"])
    assert received == sum(level["sent"] for level in report["levels"]) == success > 0
    assert failed == 0 and inferred == received * rows
    assert [level["concurrency"] for level in report["levels"]] == levels
    assert report["batch"] == rows and report["first_error"] is None
    for level in report["levels"]:
        assert level["statuses"] == {"200": level["received"]} and level["errors"] == 0
        assert level["failed_per_s"] == 0
        assert 0 < level["requests"] <= level["received"]
        assert level["requests_per_s"] == pytest.approx(level["requests"] / 0.3)
        assert level["samples_per_s"] == pytest.approx(level["requests_per_s"] * rows)
        assert 0 < level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"]


def test_a_progress_bar_then_a_table_row_per_level(url):
    arguments = ["--model", "mlp", *QUICK, "--concurrency", "1", "2"]
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}  # rich draws bars on terminals
    result = runner.invoke(app, ["bench", "--url", url, *arguments], env=terminal)
    assert result.exit_code == 0, result.output
    assert "concurrency 1" in result.stderr and "concurrency 2" in result.stderr  # the bar
    text = flat(result.stdout)
    for header in ("concurrency", "requests/s", "samples/s", "p50 ms", "p90 ms", "p99 ms"):
        assert header in text
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("│")]
    assert [row[1] for row in rows] == ["1", "2"]
    assert all(row[-2] == "0" for row in rows)  # errors


def test_failed_requests_are_reported_apart_and_never_counted_as_throughput(url):
    # Every request of random ids 0..9 fails on the 3-row table.
    (ids,) = random_inputs(
        [{"name": "ids", "datatype": "INT64", "shape": [-1, 3]}], {"ids": [2, 3]}
    ).values()
    assert ids.max() >= 3
    expected = httpx.post(
        f"{url}/v2/models/table/infer",
        json={
            "inputs": [
                {"name": "ids", "shape": [2, 3], "datatype": "INT64", "data": ids.ravel().tolist()}
            ]
        },
    )
    assert expected.status_code >= 400
    before = server_counts(url, "table")
    arguments = ["--model", "table", "--batch", "2", "--concurrency", "2"]
    result = runner.invoke(app, ["bench", "--url", url, *QUICK, "--json", *arguments])
    success, failed, _ = np.subtract(server_counts(url, "table"), before)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    (level,) = report["levels"]
    assert success == 0 and failed == level["received"] == level["sent"] > 0
    assert level["statuses"] == {str(expected.status_code): failed} and level["errors"] == failed
    assert level["requests"] == 0
    assert level["requests_per_s"] == level["samples_per_s"] == 0
    assert level["p50_ms"] is level["p99_ms"] is None  # no latency of a failure
    assert 0 < level["failed_per_s"] * 0.3 <= failed  # the window's failures, apart
    assert report["first_error"] == {
        "status": expected.status_code,
        "error": expected.json()["error"],
    }
    assert expected.json()["error"] in flat(result.stderr)
    assert "no request succeeded" in result.stderr


def test_the_table_shows_failures_apart_from_throughput(url):
    arguments = ["--model", "table", *QUICK, "--concurrency", "1"]
    result = runner.invoke(app, ["bench", "--url", url, *arguments])
    assert result.exit_code == 1
    (row,) = [line.split() for line in result.stdout.splitlines() if line.startswith("│")]
    cells = [cell for cell in row if cell != "│"]
    assert cells[0] == "1" and cells[1] == cells[2] == "0"  # requests/s, samples/s
    assert int(cells[-1].replace(",", "")) > 0  # errors


def test_a_batch_over_the_models_limit_is_refused_before_any_load(url):
    # Version 1 of mlp takes at most 64 rows a request (its config.json).
    config = httpx.get(f"{url}/v2/models/mlp/versions/1/config").json()
    assert config["max_batch_size"] == 64
    before = server_counts(url, "mlp")
    arguments = ["--model", "mlp", "--version", "1", "--batch", "65", "--concurrency", "2"]
    result = runner.invoke(app, ["bench", "--url", url, *QUICK, *arguments])
    assert result.exit_code == 2, result.output
    assert (
        "--batch 65 is over the max_batch_size of model 'mlp' version 1, 64 rows a request"
        in flat(result.stderr)
    )
    assert "use --batch 64 or less" in flat(result.stderr)
    assert server_counts(url, "mlp") == before
    report = bench_json(
        url, "--model", "mlp", "--version", "1", "--batch", "64", "--concurrency", "1"
    )
    assert report["batch"] == 64 and report["levels"][0]["requests"] > 0


NOTHING = "http://127.0.0.1:{free_port}"  # a port nothing listens on
SERVER_SAYS = "the server answered 404: {GET}"  # the server's own answer to that GET


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        pytest.param(["--model", "nope"], 1, SERVER_SAYS, id="unknown model"),
        pytest.param(["--model", "mlp", "--version", "9"], 1, SERVER_SAYS, id="unknown version"),
        pytest.param(["--model", "mlp", "--url", NOTHING], 1, "cannot reach", id="no server"),
        pytest.param(
            ["--model", "mlp", "--url", "https://127.0.0.1:1"], 2, "plain http:// URL", id="https"
        ),
        pytest.param(
            ["--model", "sequence"], 2, "give them with --shape steps=8,4", id="variable dims"
        ),
        pytest.param(
            ["--model", "sequence", "--shape", "steps=7,5"],
            2,
            "dimension 2 must be 4",
            id="shape against the model",
        ),
        pytest.param(
            ["--model", "mlp", "--concurrency", "0"],
            2,
            "positive integers, received 0",
            id="concurrency 0",
        ),
        pytest.param(
            ["--model", "mlp", "4"], 2, "concurrency levels follow --concurrency", id="stray level"
        ),
    ],
)
def test_refusals_name_the_problem_and_send_no_load(url, arguments, code, message):
    arguments = [a.format(free_port=free_port()) for a in arguments]
    before = server_counts(url, "mlp")
    result = runner.invoke(app, ["bench", "--url", url, *QUICK, *arguments])
    assert result.exit_code == code, result.output
    if message == SERVER_SAYS:
        model = arguments[1] + ("/versions/9" if "--version" in arguments else "")
        answer = httpx.get(f"{url}/v2/models/{model}")
        assert answer.status_code == 404
        message = message.format(GET=answer.json()["error"])
    assert message in flat(result.stderr)
    assert server_counts(url, "mlp") == before


def test_a_token_protected_server_needs_the_token(guarded_url):
    refused = runner.invoke(app, ["bench", "--url", guarded_url, "--model", "mlp", *QUICK])
    assert refused.exit_code == 1
    assert "the server answered 401" in flat(refused.stderr)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    before = server_counts(guarded_url, "mlp", headers)
    report = bench_json(guarded_url, "--model", "mlp", "--concurrency", "2", "--token", API_TOKEN)
    success = server_counts(guarded_url, "mlp", headers)[0] - before[0]
    assert success == report["levels"][0]["received"] > 0
    assert report["levels"][0]["statuses"] == {"200": success}


def test_plot_writes_a_png_of_the_figure_size(url, tmp_path):
    target = tmp_path / "plots" / "bench.png"
    arguments = ["--model", "mlp", "--concurrency", "1", "2", "--plot", str(target)]
    result = runner.invoke(app, ["bench", "--url", url, *QUICK, *arguments])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == PNG_MAGIC
    pixels = matplotlib.image.imread(target)
    width, height = (int(v * plotting.DPI) for v in plotting.FIGURE_INCHES)
    assert pixels.shape == (height, width, 4)
    assert pixels[..., :3].std() > 0.05  # something was drawn


def test_the_figure_plots_each_runs_percentiles_and_throughput():
    latencies = [np.arange(1.0, 101.0), np.arange(1.0, 201.0) * 2]
    runs = [
        Run("json", 8, level, requests=len(ms), errors=0, seconds=2.0, latencies_ms=ms)
        for level, ms in zip([4, 1], latencies, strict=True)
    ]
    figure = plotting.figure(runs, "title")
    latency, throughput, samples = figure.axes
    lines = {line.get_label(): line for axes in figure.axes for line in axes.get_lines()}
    assert list(lines["p50"].get_xdata()) == [1, 4]
    np.testing.assert_allclose(lines["p50"].get_ydata(), [201.0, 50.5])  # hand-computed
    np.testing.assert_allclose(lines["p99"].get_ydata(), [2 * 198.01, 99.01])
    np.testing.assert_allclose(lines["requests/s"].get_ydata(), [100.0, 50.0])
    np.testing.assert_allclose(lines["samples/s"].get_ydata(), [800.0, 400.0])
    assert latency.get_ylabel() == "latency (ms)" and samples.get_ylabel() == "samples/s"
    assert throughput.get_xlabel() == "concurrency"


def test_a_level_where_no_request_succeeded_has_no_latency_point_and_a_dash():
    """No latency is not a latency of 0: the figure leaves the level out of the p50 and
    p99 lines, and tables print "-"."""
    runs = [
        Run("json", 1, 1, requests=3, errors=0, seconds=1.0, latencies_ms=np.array([1.0, 3.0])),
        Run("json", 1, 2, requests=0, errors=5, seconds=1.0, latencies_ms=np.empty(0)),
    ]
    assert runs[1].percentile(50) is None and milliseconds(runs[1].percentile(99)) == "-"
    assert milliseconds(runs[0].percentile(50)) == "2.00"
    lines = {
        line.get_label(): line
        for axes in plotting.figure(runs, "title").axes
        for line in axes.get_lines()
    }
    assert list(lines["p50"].get_xdata()) == list(lines["p99"].get_xdata()) == [1]
    assert list(lines["requests/s"].get_xdata()) == [1, 2]


def test_plot_without_matplotlib_names_the_extra_and_sends_nothing(url, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # an interpreter without it
    before = server_counts(url, "mlp")
    target = tmp_path / "bench.png"
    result = runner.invoke(
        app, ["bench", "--url", url, "--model", "mlp", *QUICK, "--plot", str(target)]
    )
    assert result.exit_code == 2
    assert "pip install 'layerserve[plot]'" in flat(result.stderr)
    assert server_counts(url, "mlp") == before and not target.exists()


def test_the_command_is_a_client_it_never_imports_the_server(url):
    code = (
        "import sys\n"
        "from layerserve.cli import app\n"
        f"app(['bench', '--url', '{url}', '--model', 'mlp', '--duration', '0.2',"
        " '--warmup', '0', '--concurrency', '1', '--json'], standalone_mode=False)\n"
        "server = ('fastapi', 'starlette', 'uvicorn', 'onnxruntime', 'layerserve.service')\n"
        "print('loaded:', sorted(m for m in sys.modules if m.startswith(server)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"received"' in done.stdout
    # Only the settings model (pydantic), for the options of `layerserve serve`.
    assert "loaded: ['layerserve.service', 'layerserve.service.settings']" in done.stdout
