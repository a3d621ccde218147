"""POST /v1/models/{m}[/versions/{v}]:benchmark on a real uvicorn: results that agree
with their definitions and with a run timed here, every refusal with its message, one
benchmark at a time, inference served meanwhile, and the admin access level."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from live_server import running_server, write_model
from onnx import TensorProto, helper

from layerserve import examples
from layerserve.service import benchmarking
from layerserve.service.errors import Conflict
from layerserve.service.model_config import ModelConfig
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings

MAX_REQUEST_BYTES = 1 << 20
ATOL = 1e-5


def hand_made(inputs, outputs, nodes) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def tensor(name: str, dtype: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


HAND_MADE = {
    # A variable dimension beyond the batch: needs "shapes".
    "seq": hand_made(
        [tensor("x", TensorProto.FLOAT, ["N", "T", 4])],
        [tensor("y", TensorProto.FLOAT, ["N", "T", 4])],
        [helper.make_node("Relu", ["x"], ["y"])],
    ),
    "fixed": hand_made(
        [tensor("x", TensorProto.FLOAT, [1, 4])],
        [tensor("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_node("Relu", ["x"], ["y"])],
    ),
    "mixed": hand_made(
        [
            tensor("a", TensorProto.FLOAT, ["N", 3]),
            tensor("b", TensorProto.INT64, ["N", 3]),
            tensor("c", TensorProto.BOOL, ["N", 3]),
        ],
        [
            tensor("a_out", TensorProto.FLOAT, ["N", 3]),
            tensor("b_out", TensorProto.INT64, ["N", 3]),
            tensor("c_out", TensorProto.BOOL, ["N", 3]),
        ],
        [
            helper.make_node("Relu", ["a"], ["a_out"]),
            helper.make_node("Abs", ["b"], ["b_out"]),
            helper.make_node("Not", ["c"], ["c_out"]),
        ],
    ),
    "text": hand_made(
        [tensor("x", TensorProto.STRING, ["N"])],
        [tensor("y", TensorProto.STRING, ["N"])],
        [helper.make_node("Identity", ["x"], ["y"])],
    ),
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark_repository")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    write_model(root, "mlp", examples.mlp(), "2")
    write_model(root, "unbatched", examples.mlp(), "1", {"max_batch_size": 0})
    for name, model in HAND_MADE.items():
        (root / name / "1").mkdir(parents=True)
        onnx.save(model, root / name / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def http(repository):
    settings = Settings(model_repository=repository, max_request_bytes=MAX_REQUEST_BYTES)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def benchmark(http: httpx.Client, model: str, body, **kwargs) -> httpx.Response:
    return http.post(f"/v1/models/{model}:benchmark", json=body, **kwargs)


# ---- results ---------------------------------------------------------------------------
def test_results_agree_with_their_definitions(http):
    body = {"batch_sizes": [1, 8, 64], "duration_s": 0.3, "warmup_runs": 3}
    started = time.perf_counter()
    response = benchmark(http, "mlp", body)
    wall = time.perf_counter() - started
    assert response.status_code == 200, response.text
    report = response.json()

    config = http.get("/v2/models/mlp/config").json()["parameters"]
    assert report["model_name"] == "mlp"
    assert report["model_version"] == "2"  # the latest
    assert report["providers"] == config["execution_providers"]["string_value"].split(",")
    assert report["intra_op_threads"] == int(config["intra_op_thread_count"]["string_value"])
    assert report["shapes"] == {"hidden_1_input": [784]}
    assert [r["batch_size"] for r in report["results"]] == [1, 8, 64]
    assert sum(r["duration_s"] for r in report["results"]) <= wall
    for r in report["results"]:
        batch, runs, seconds = r["batch_size"], r["runs"], r["duration_s"]
        assert runs >= 1
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert seconds >= body["duration_s"]
        assert r["samples_per_s"] == pytest.approx(batch * runs / seconds, rel=1e-9)
        assert batch * runs / wall <= r["samples_per_s"] <= batch * runs / body["duration_s"]
        # The runs take ``seconds`` in all, and a median is at most twice the mean.
        assert r["p50_ms"] <= 2 * 1000 * seconds / runs


def test_median_latency_is_that_of_a_run_timed_here(http, repository):
    """Order of magnitude only: the same graph, threads and batch, timed in this process."""
    report = benchmark(http, "mlp", {"batch_sizes": [1], "duration_s": 0.2}).json()
    options = ort.SessionOptions()
    options.intra_op_num_threads = report["intra_op_threads"]
    session = ort.InferenceSession(
        str(repository / "mlp" / "2" / "model.onnx"), options, providers=report["providers"]
    )
    feeds = {"hidden_1_input": np.random.default_rng(1).standard_normal((1, 784), np.float32)}
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        session.run(None, feeds)
        timings.append(time.perf_counter() - started)
    local_ms = 1000 * float(np.median(timings[20:]))
    assert local_ms / 20 <= report["results"][0]["p50_ms"] <= local_ms * 20


def test_a_version_is_benchmarked_through_its_route(http):
    body = {"batch_sizes": [2], "duration_s": 0.05}
    response = http.post("/v1/models/mlp/versions/1:benchmark", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"
    assert response.json()["results"][0]["batch_size"] == 2


INPUT_KINDS = [
    ("seq", {"batch_sizes": [1, 3], "shapes": {"x": [5, 4]}}, {"x": [5, 4]}),
    ("fixed", {"batch_sizes": [1]}, {"x": [4]}),
    ("mixed", {"batch_sizes": [1, 16]}, {"a": [3], "b": [3], "c": [3]}),
    ("unbatched", {"batch_sizes": [1, 300]}, {"hidden_1_input": [784]}),
]


@pytest.mark.parametrize(("model", "body", "shapes"), INPUT_KINDS)
def test_input_kinds(http, model, body, shapes):
    response = benchmark(http, model, {**body, "duration_s": 0.05, "warmup_runs": 1})
    assert response.status_code == 200, response.text
    assert response.json()["shapes"] == shapes
    assert [r["batch_size"] for r in response.json()["results"]] == body["batch_sizes"]


# ---- refusals ----------------------------------------------------------------------------
REFUSALS = [
    ("mlp", {"batch_sizes": [65]}, "batch size 65 is out of range: model 'mlp' takes 1 to 64"),
    ("unbatched", {"batch_sizes": [1025]}, "takes 1 to 1024 (the limit for a model served"),
    # 1024 rows of 784 float32 values: 3211264 bytes.
    ("unbatched", {"batch_sizes": [1024]}, "needs 3211264 bytes of input, over the limit of"),
    ("fixed", {"batch_sizes": [1, 2]}, "fixed shape [1, 4]: the only batch size it takes is 1"),
    ("mlp", {"batch_sizes": [1, 1]}, "batch sizes must be distinct, received [1, 1]"),
    (
        "mlp",
        {"batch_sizes": [1, 2, 3], "duration_s": 4},
        "duration_s 4 x 3 batch sizes = 12 s exceeds the cap of 10 s per benchmark "
        "(LAYERSERVE_BENCHMARK_MAX_SECONDS)",
    ),
    ("mlp", {"duration_s": 10.5}, "10.5 s exceeds the cap of 10 s"),
    ("mlp", {"batch_sizes": []}, "batch_sizes: List should have at least 1 item"),
    ("mlp", {"batch_sizes": list(range(1, 10))}, "batch_sizes: List should have at most 8"),
    ("mlp", {"batch_sizes": [0]}, "batch_sizes.0: Input should be greater than or equal to 1"),
    ("mlp", {"duration_s": 0}, "duration_s: Input should be greater than 0"),
    ("mlp", {"duration_s": -1}, "duration_s: Input should be greater than 0"),
    ("mlp", {"duration_s": "long"}, "duration_s: Input should be a valid number"),
    ("mlp", {"warmup_runs": 101}, "warmup_runs: Input should be less than or equal to 100"),
    ("mlp", {"batch_size": 1}, "batch_size: Extra inputs are not permitted"),
    ("mlp", {"shapes": {"x": [3]}}, "'shapes' names an unknown input 'x'"),
    (
        "seq",
        {},
        "input 'x' has variable dimensions beyond the batch (sample shape [-1, 4]); "
        """give its sample shape in 'shapes', e.g. {"x": [8, 4]}""",
    ),
    ("seq", {"shapes": {"x": [5]}}, "shapes['x'] must fit the sample shape [-1, 4]"),
    ("seq", {"shapes": {"x": [5, 3]}}, "shapes['x'] must fit the sample shape [-1, 4]"),
    ("seq", {"shapes": {"x": [0, 4]}}, "Input should be greater than or equal to 1"),
    ("text", {}, "input 'x' has datatype BYTES, which the benchmark cannot generate"),
]


@pytest.mark.parametrize(("model", "body", "fragment"), REFUSALS)
def test_refusals(http, model, body, fragment):
    response = benchmark(http, model, body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_every_problem_is_listed(http):
    response = benchmark(http, "mlp", {"batch_sizes": [1, 99, 99], "duration_s": 5})
    assert response.status_code == 400
    assert response.json()["problems"] == [
        "batch sizes must be distinct, received [1, 99, 99]",
        "duration_s 5 x 3 batch sizes = 15 s exceeds the cap of 10 s per benchmark "
        "(LAYERSERVE_BENCHMARK_MAX_SECONDS); lower duration_s or the number of batch sizes",
        "batch size 99 is out of range: model 'mlp' takes 1 to 64 (its max_batch_size)",
    ]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{", "failed to parse the request JSON buffer"),
        (b"", "failed to parse the request JSON buffer"),
        (b"[1]", "Input should be a valid dictionary or instance of BenchmarkRequest"),
        (b"\xef\xbb\xbf{}", "failed to parse the request JSON buffer"),  # a BOM, as elsewhere
        (b'{"batch_sizes": ["1"]}', "body.batch_sizes.0: Input should be a valid integer"),
        (b'{"batch_sizes": [true]}', "body.batch_sizes.0: Input should be a valid integer"),
        (b'{"duration_s": "1"}', "body.duration_s: Input should be a valid number"),
    ],
)
def test_bodies_are_read_as_every_json_endpoint_reads_them(http, content, fragment):
    """Strictly (JSON numbers for numbers), by the parser the other endpoints use."""
    response = http.post(
        "/v1/models/mlp:benchmark", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert fragment in response.json()["error"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_is_read_whatever_its_content_type(http, content_type):
    """As infer, :validate and the repository extension read it (curl -d sends a form's)."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"batch_sizes": [1], "duration_s": 0.05}'
    response = http.post("/v1/models/mlp:benchmark", content=body, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v1/models/absent:benchmark", "'absent'"),
        ("/v1/models/mlp/versions/9:benchmark", "9"),
    ],
)
def test_unknown_model_or_version(http, path, fragment):
    response = http.post(path, json={"duration_s": 0.05})
    assert response.status_code == 404
    assert fragment in response.json()["error"]


# ---- one at a time, beside inference ---------------------------------------------------
class Background(threading.Thread):
    """A benchmark request running in a thread; ``response`` once it has answered."""

    def __init__(self, http: httpx.Client, seconds: float) -> None:
        super().__init__(daemon=True)
        self.http, self.seconds, self.response = http, seconds, None

    def run(self) -> None:
        self.response = benchmark(
            self.http, "mlp", {"batch_sizes": [1], "duration_s": self.seconds}
        )


def test_a_second_benchmark_is_refused_while_one_runs(http):
    """Short probes while a 2 s benchmark runs: whichever holds the slot, the others are
    refused with 409 until it is free again."""
    first = Background(http, 2.0)
    first.start()
    probes = []
    while first.is_alive() and not any(p.status_code == 409 for p in probes):
        probes.append(benchmark(http, "mlp", {"batch_sizes": [1], "duration_s": 0.01}))
    first.join(timeout=30)
    answers = [first.response, *probes]
    assert {a.status_code for a in answers} == {200, 409}, [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 409):
        assert "a benchmark is already running" in refused.json()["error"]
    after = benchmark(http, "mlp", {"batch_sizes": [1], "duration_s": 0.05})
    assert after.status_code == 200, after.text


def test_the_slot_is_taken_before_the_first_await(tmp_path):
    """In-process, ordered by the event loop: a run started in the same loop step as
    another is refused, and the slot is free once the first finishes."""
    path = write_model(tmp_path, "mlp", examples.mlp())
    model = LoadedModel.load("mlp", "1", path, ModelConfig().resolved(Settings()))
    long, short = (benchmarking.BenchmarkSpec(duration_s=s) for s in (1.0, 0.05))
    shapes = benchmarking.plan(model, long, 10.0, 1 << 26)

    async def scenario():
        first = asyncio.create_task(benchmarking.run(model, long, shapes))
        await asyncio.sleep(0)  # the first took the slot and is measuring
        with pytest.raises(Conflict, match="a benchmark is already running"):
            await benchmarking.run(model, short, shapes)
        finished = await first
        after = await benchmarking.run(model, short, shapes)  # the slot is free again
        return finished, after

    finished, after = asyncio.run(scenario())
    assert finished.results[0].duration_s >= 1.0
    assert after.results[0].runs >= 1


class CountedSession:
    """The served session, its runs counted (warm-up and measured alike)."""

    def __init__(self, session) -> None:
        self.session, self.runs = session, 0

    def run(self, *args):
        self.runs += 1
        return self.session.run(*args)


@pytest.mark.parametrize(("cap", "warmups_per_size"), [(0.2, 1), (100.0, 100)])
def test_warm_up_shares_the_cap_with_the_measuring(tmp_path, cap, warmups_per_size):
    """With duration_s x batch sizes filling the cap, each batch size warms up with one run
    (the first run is never measured); with room to spare, with all its warmup_runs
    (an MLP's 100 runs take milliseconds)."""
    path = write_model(tmp_path, "mlp", examples.mlp())
    model = LoadedModel.load("mlp", "1", path, ModelConfig().resolved(Settings()))
    counted = CountedSession(model.session)
    model.session = counted
    spec = benchmarking.BenchmarkSpec(batch_sizes=(1, 8), duration_s=0.1, warmup_runs=100)
    shapes = benchmarking.plan(model, spec, cap, 1 << 26)
    result = asyncio.run(benchmarking.run(model, spec, shapes, max_seconds=cap))
    measured = sum(r.runs for r in result.results)
    assert counted.runs - measured == warmups_per_size * 2


def test_a_benchmark_held_by_another_process_of_the_server_is_refused(tmp_path):
    """Workers of one server are processes: the claim is the server's, not a process's."""
    path = write_model(tmp_path, "mlp", examples.mlp())
    model = LoadedModel.load("mlp", "1", path, ModelConfig().resolved(Settings()))
    spec = benchmarking.BenchmarkSpec(duration_s=0.05)
    shapes = benchmarking.plan(model, spec, 10.0, 1 << 26)
    server = f"test-{time.monotonic_ns()}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from layerserve.service import benchmarking; "
            f"held = benchmarking._hold_server({server!r}); print('held', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Conflict, match="a benchmark is already running"):
            asyncio.run(benchmarking.run(model, spec, shapes, server))
        assert asyncio.run(benchmarking.run(model, spec, shapes, "another-server")).results
    finally:
        holder.communicate("")
    assert asyncio.run(benchmarking.run(model, spec, shapes, server)).results  # free again


def infer_v2(http: httpx.Client, x: np.ndarray) -> np.ndarray:
    document = {
        "inputs": [
            {
                "name": "hidden_1_input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    response = http.post("/v2/models/mlp/infer", json=document)
    assert response.status_code == 200, response.text
    return np.array(response.json()["outputs"][0]["data"], np.float32).reshape(len(x), 10)


def predict_tfs(http: httpx.Client, x: np.ndarray) -> np.ndarray:
    response = http.post("/v1/models/mlp:predict", json={"instances": x.tolist()})
    assert response.status_code == 200, response.text
    return np.array(response.json()["predictions"], np.float32)


def test_inference_is_served_during_a_benchmark(http):
    reference = examples.mlp()
    rng = np.random.default_rng(3)
    running = Background(http, 2.0)
    running.start()
    time.sleep(0.2)
    for rows in (1, 3, 8, 2, 5, 1, 4, 7):
        x = rng.random((rows, 784), dtype=np.float32)
        expected = reference.predict(x)
        np.testing.assert_allclose(infer_v2(http, x), expected, rtol=0, atol=ATOL)
        np.testing.assert_allclose(predict_tfs(http, x), expected, rtol=0, atol=ATOL)
    assert running.is_alive(), "the requests above should have overlapped the benchmark"
    running.join(timeout=30)
    assert running.response.status_code == 200


def test_a_benchmark_whose_client_left_still_frees_its_slot(http):
    with pytest.raises(httpx.ReadTimeout):
        benchmark(http, "mlp", {"batch_sizes": [1], "duration_s": 1.0}, timeout=0.3)
    deadline = time.monotonic() + 30
    while True:
        response = benchmark(http, "mlp", {"batch_sizes": [1], "duration_s": 0.05})
        if response.status_code != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status_code == 200, response.text


# ---- access level and documentation ----------------------------------------------------
@pytest.fixture(scope="module")
def guarded_http(repository):
    settings = Settings(model_repository=repository, admin_token="bench-admin-token")
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


QUICK = {"batch_sizes": [1], "duration_s": 0.05}


def test_needs_the_admin_token_when_one_is_set(guarded_http):
    missing = benchmark(guarded_http, "mlp", QUICK)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="layerserve"'
    wrong = benchmark(guarded_http, "mlp", QUICK, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="layerserve", error="invalid_token"'
    right = benchmark(
        guarded_http, "mlp", QUICK, headers={"Authorization": "Bearer bench-admin-token"}
    )
    assert right.status_code == 200, right.text


def test_answers_loopback_clients_only_without_a_token(http):
    remote = benchmark(http, "mlp", QUICK, headers={"X-Forwarded-For": "203.0.113.7"})
    assert remote.status_code == 403
    assert "LAYERSERVE_ADMIN_TOKEN" in remote.json()["error"]
    assert benchmark(http, "mlp", QUICK).status_code == 200


def test_openapi_documents_both_routes(http):
    document = http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["BenchmarkResponse"]["examples"][0]["results"]
    for path in ("/v1/models/{name}:benchmark", "/v1/models/{name}/versions/{version}:benchmark"):
        operation = document["paths"][path]["post"]
        assert operation["tags"] == ["benchmark"]
        assert operation["description"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["title"] == "BenchmarkRequest"  # inlined: the route reads its own body
        assert body["examples"][0]["batch_sizes"] == [1, 8, 64]
        assert set(body["properties"]) == {"batch_sizes", "duration_s", "warmup_runs", "shapes"}
        assert body["additionalProperties"] is False
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].endswith("/BenchmarkResponse")
        assert {"400", "404", "409", "413"} <= set(operation["responses"])
