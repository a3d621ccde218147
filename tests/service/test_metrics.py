"""Observability end to end: /metrics (Triton's names, exact exposition), batching proven by
the counters, failure counters per reason, the V2 statistics extension agreeing with the
metrics, and request ids in headers and logs."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
from live_server import running_server, write_model
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from layerserve import examples
from layerserve.service.settings import Settings

DELAY_US = 20_000
TABLE = np.arange(8, dtype=np.float32).reshape(4, 2)  # the lookup model's rows
MAX_BODY = 1024 * 1024
TRITON_COUNTERS = {
    "nv_inference_request_success": "Number of successful inference requests, all batch sizes",
    "nv_inference_request_failure": "Number of failed inference requests, all batch sizes",
    "nv_inference_count": "Number of inferences performed (does not include cached requests)",
    "nv_inference_exec_count": "Number of model executions performed (does not include cached "
    "requests)",
    "nv_inference_request_duration_us": "Cumulative inference request duration in microseconds "
    "(includes cached requests)",
    "nv_inference_queue_duration_us": "Cumulative inference queuing duration in microseconds "
    "(includes cached requests)",
    "nv_inference_compute_input_duration_us": "Cumulative compute input duration in "
    "microseconds (does not include cached requests)",
    "nv_inference_compute_infer_duration_us": "Cumulative compute inference duration in "
    "microseconds (does not include cached requests)",
    "nv_inference_compute_output_duration_us": "Cumulative inference compute output duration "
    "in microseconds (does not include cached requests)",
}
REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


def write_lookup_model(root, name: str) -> None:
    """Gather rows of TABLE by an INT64 index: an index past the table fails in onnxruntime."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "index"], ["rows"], axis=0)],
        name,
        [helper.make_tensor_value_info("index", TensorProto.INT64, ["batch", 1])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 1, 2])],
        [numpy_helper.from_array(TABLE, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    (root / name / "1").mkdir(parents=True)
    onnx.save(model, root / name / "1" / "model.onnx")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    config = {"max_batch_size": 64, "max_queue_delay_us": DELAY_US}
    write_model(root, "mlp", examples.mlp(), "1", config)
    write_model(root, "mlp", examples.mlp(), "2")
    write_lookup_model(root, "lookup")
    settings = Settings(model_repository=root, max_request_bytes=MAX_BODY, access_log=True)
    with running_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def mlp():
    return examples.mlp()


# ---- reading the exposition ---------------------------------------------------------------
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample as exposed (names untouched): {(name, labels): value}. The text must
    also parse with prometheus_client's own parser."""
    text = httpx.get(url + "/metrics").text
    assert list(text_string_to_metric_families(text))
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, labels, number = SAMPLE.match(line).groups()
        samples[(name, frozenset(LABEL.findall(labels or "")))] = float(number)
    return samples


def value(samples: dict, name: str, model: str = "mlp", version: str = "1", **labels) -> float:
    return samples[(name, frozenset({"model": model, "version": version, **labels}.items()))]


def delta(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def v2_body(x: np.ndarray, datatype: str = "FP32", name: str = "hidden_1_input") -> dict:
    return {
        "inputs": [
            {"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}
        ]
    }


async def infer_concurrently(url: str, xs: list[np.ndarray]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(xs), max_keepalive_connections=len(xs))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return await asyncio.gather(
            *(client.post(url + "/v2/models/mlp/versions/1/infer", json=v2_body(x)) for x in xs)
        )


# ---- batching, proven by the metrics ------------------------------------------------------
@pytest.mark.parametrize(
    "rows", [[1] * 64, [1, 2, 3, 4] * 10], ids=["64-requests-of-1-row", "40-requests-of-1-4-rows"]
)
def test_concurrent_requests_are_merged_and_each_client_gets_its_own_rows(server, mlp, rows):
    rng = np.random.default_rng(len(rows))
    xs = [rng.random((n, 784), dtype=np.float32) for n in rows]
    before = scrape(server)
    responses = asyncio.run(infer_concurrently(server, xs))
    after = scrape(server)

    for x, response in zip(xs, responses, strict=True):
        assert response.status_code == 200, response.text
        output = response.json()["outputs"][0]
        assert output["shape"] == [len(x), 10]
        got = np.array(output["data"], np.float32).reshape(len(x), 10)
        np.testing.assert_allclose(got, mlp.predict(x), rtol=1e-5, atol=1e-6)

    change = delta(after, before)

    def grew(name: str, **labels) -> float:
        return change.get((name, _key(**labels)), 0)

    assert grew("nv_inference_request_success") == len(rows)
    assert grew("nv_inference_count") == sum(rows)
    executions = grew("nv_inference_exec_count")
    assert 1 <= executions < len(rows)  # merged: fewer executions than requests
    assert grew("layerserve_batch_size_count") == executions
    assert grew("layerserve_batch_size_sum") == sum(rows)
    assert grew("layerserve_request_duration_seconds_count") == len(rows)
    assert all(grew("nv_inference_request_failure", reason=r) == 0 for r in REASONS)
    assert value(after, "nv_inference_pending_request_count") == 0


def _key(model: str = "mlp", version: str = "1", **labels) -> frozenset:
    return frozenset({"model": model, "version": version, **labels}.items())


# ---- exposition text ---------------------------------------------------------------------
def test_exposition_uses_tritons_names_types_and_labels(server):
    response = httpx.get(server + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    assert "_total" not in text and "_created" not in text
    versions = [("lookup", "1"), ("mlp", "1"), ("mlp", "2")]
    for name, documentation in TRITON_COUNTERS.items():
        assert f"# HELP {name} {documentation}\n# TYPE {name} counter\n" in text
        for model, version in versions:
            if name == "nv_inference_request_failure":
                for reason in REASONS:
                    pattern = (
                        rf'^{name}\{{model="{model}",reason="{reason}",version="{version}"\}} \d+$'
                    )
                    assert re.search(pattern, text, re.M), (name, model, reason)
            else:
                pattern = rf'^{name}\{{model="{model}",version="{version}"\}} \d+$'
                assert re.search(pattern, text, re.M), (name, model, version)
    gauges = {
        "nv_inference_pending_request_count": (
            "Instantaneous number of pending requests awaiting execution per-model."
        ),
        "layerserve_model_provider_fallback": (
            "1 when the model version asked for CUDA but runs on the CPU provider"
        ),
    }
    for name, documentation in gauges.items():
        assert f"# HELP {name} {documentation}\n# TYPE {name} gauge\n" in text
        for model, version in versions:
            assert f'\n{name}{{model="{model}",version="{version}"}} 0\n' in text
    for name in ("layerserve_request_duration_seconds", "layerserve_batch_size"):
        assert f"# TYPE {name} histogram\n" in text
        for model, version in versions:
            labels = f'model="{model}",version="{version}"'
            assert re.search(rf'^{name}_bucket\{{le="\+Inf",{labels}\}} \d+$', text, re.M)
            assert re.search(rf"^{name}_count\{{{labels}\}} \d+$", text, re.M)
            assert re.search(rf"^{name}_sum\{{{labels}\}} [0-9.e+-]+$", text, re.M)
    # the server's own series: one process, never restarted
    assert (
        "# HELP layerserve_worker_restarts Worker processes restarted after they died\n"
        "# TYPE layerserve_worker_restarts counter\nlayerserve_worker_restarts 0\n"
        "# HELP layerserve_workers Worker processes serving this port\n"
        "# TYPE layerserve_workers gauge\nlayerserve_workers 1\n"
    ) in text
    # every other sample is labelled with exactly model and version (plus reason or le)
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} >= set(TRITON_COUNTERS)
    for family in families:
        if family.name in ("layerserve_worker_restarts", "layerserve_workers"):
            continue
        for sample in family.samples:
            extra = set(sample.labels) - {"model", "version"}
            assert {"model", "version"} <= set(sample.labels)
            assert extra <= {"reason", "le"}, sample


# ---- failure counters per reason -------------------------------------------------------------
X1 = np.full((1, 784), 0.5, np.float32)
FAILURES = [
    # (case, method+path, body or raw bytes, status, counted as (model, version, reason))
    ("bad-shape", "/v2/models/mlp/versions/1/infer", v2_body(X1[0]), 400, ("mlp", "1", "OTHER")),
    (
        "bad-datatype",
        "/v2/models/mlp/infer",
        v2_body(X1.astype(np.float64), "FP64"),
        400,
        ("mlp", "2", "OTHER"),
    ),
    ("bad-json", "/v2/models/mlp/versions/1/infer", b"{not json", 400, ("mlp", "1", "OTHER")),
    (
        "missing-input",
        "/v2/models/lookup/infer",
        {"inputs": []},
        400,
        ("lookup", "1", "OTHER"),
    ),
    (
        "body-too-large",
        "/v2/models/mlp/versions/1/infer",
        b" " * (MAX_BODY + 1),
        413,
        ("mlp", "1", "OTHER"),
    ),
    (
        "tf-serving-bad-instance",
        "/v1/models/mlp/versions/1:predict",
        {"instances": [[0.5] * 783]},
        400,
        ("mlp", "1", "OTHER"),
    ),
    (
        "queue-timeout",  # 1 ms allowed, while the batcher waits 20 ms for more requests
        "/v2/models/mlp/versions/1/infer",
        {**v2_body(X1), "parameters": {"timeout": 1000}},
        504,
        ("mlp", "1", "REJECTED"),
    ),
    (
        "model-error",  # index 7 is past the 4-row table: onnxruntime refuses the run,
        "/v2/models/lookup/infer",  # the client's error (400), counted as the backend's
        v2_body(np.array([[7]], np.int64), "INT64", "index"),
        400,
        ("lookup", "1", "BACKEND"),
    ),
    ("unknown-model", "/v2/models/nope/infer", v2_body(X1), 404, None),
    ("unknown-version", "/v2/models/mlp/versions/9/infer", v2_body(X1), 404, None),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "counted"),
    [row[1:] for row in FAILURES],
    ids=[row[0] for row in FAILURES],
)
def test_each_failure_counts_once_under_its_reason(server, path, body, status, counted):
    before = scrape(server)
    stats_before = fail_stats(server)
    sent = time.perf_counter()
    if isinstance(body, bytes):
        response = httpx.post(server + path, content=body)
    else:
        response = httpx.post(server + path, json=body)
    waited_ns = (time.perf_counter() - sent) * 1e9
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    change = delta(scrape(server), before)
    if counted is None:
        assert change == {}
        return
    model, version, reason = counted
    failure = ("nv_inference_request_failure", _key(model, version, reason=reason))
    if reason == "BACKEND":  # the model ran once (and failed): one execution of one row
        assert {(dict(k[1])["model"], dict(k[1])["version"]) for k in change} == {(model, version)}
        assert change[failure] == 1
        assert change[("nv_inference_exec_count", _key(model))] == 1
        assert change[("layerserve_batch_size_sum", _key(model))] == 1
        assert not any(k[0] in OUTCOMES and k != failure for k in change)
    else:  # never executed: nothing but the one failure counter moved
        assert change == {failure: 1}
    after = fail_stats(server)
    moved = {k: (c - stats_before[k][0], n - stats_before[k][1]) for k, (c, n) in after.items()}
    moved = {k: v for k, v in moved.items() if v != (0, 0)}
    assert list(moved) == [(model, version)]
    count, ns = moved[(model, version)]
    assert count == 1
    # the time from the request's start to its failure, within what the client waited
    assert 0 < ns < waited_ns


OUTCOMES = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count")


def fail_stats(url: str) -> dict:
    stats = httpx.get(url + "/v2/models/stats").json()["model_stats"]
    return {
        (s["name"], s["version"]): (
            s["inference_stats"]["fail"]["count"],
            s["inference_stats"]["fail"]["ns"],
        )
        for s in stats
    }


def test_a_good_lookup_succeeds_and_counts_once(server):
    before = scrape(server)
    response = httpx.post(
        server + "/v2/models/lookup/infer",
        json=v2_body(np.array([[3], [1]], np.int64), "INT64", "index"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [6.0, 7.0, 2.0, 3.0]
    change = delta(scrape(server), before)
    assert {(dict(k[1])["model"], dict(k[1])["version"]) for k in change} == {("lookup", "1")}
    counts = {k[0]: v for k, v in change.items() if "le" not in dict(k[1])}
    durations = {k: counts.pop(k) for k in list(counts) if k.endswith("_duration_us")}
    assert set(durations) <= set(TRITON_COUNTERS)
    assert durations["nv_inference_request_duration_us"] >= durations.get(
        "nv_inference_compute_infer_duration_us", 0
    )
    assert counts == {
        "nv_inference_request_success": 1,
        "nv_inference_count": 2,
        "nv_inference_exec_count": 1,
        "layerserve_request_duration_seconds_count": 1,
        "layerserve_request_duration_seconds_sum": pytest.approx(
            durations["nv_inference_request_duration_us"] / 1e6, abs=1e-6
        ),
        "layerserve_batch_size_count": 1,
        "layerserve_batch_size_sum": 2,
    }
    batch_buckets = {dict(k[1])["le"] for k in change if k[0] == "layerserve_batch_size_bucket"}
    # a batch of 2 rows: every bucket from le=2 up
    assert batch_buckets == {"2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "256.0"} | {
        "512.0",
        "1024.0",
        "+Inf",
    }
    latency_buckets = sorted(
        float(dict(k[1])["le"])
        for k in change
        if k[0] == "layerserve_request_duration_seconds_bucket"
    )
    bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    bounds += [10.0, 30.0, float("inf")]
    assert latency_buckets == bounds[bounds.index(latency_buckets[0]) :]  # an upper set


# ---- the statistics extension ------------------------------------------------------------------
STAT_FIELDS = {
    "name",
    "version",
    "last_inference",
    "inference_count",
    "execution_count",
    "inference_stats",
    "response_stats",
    "batch_stats",
    "memory_usage",
}
DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def test_statistics_extension_agrees_with_the_metrics(server, mlp):
    started_ms = time.time() * 1000
    xs = [np.random.default_rng(i).random((1 + i % 3, 784), dtype=np.float32) for i in range(24)]
    asyncio.run(infer_concurrently(server, xs))
    httpx.post(server + "/v2/models/mlp/versions/1/infer", json=v2_body(X1[0]))  # one OTHER

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    stats = client.get_inference_statistics("mlp", "1")
    samples = scrape(server)
    assert stats == httpx.get(server + "/v2/models/mlp/versions/1/stats").json()
    (stat,) = stats["model_stats"]
    assert set(stat) == STAT_FIELDS
    assert (stat["name"], stat["version"]) == ("mlp", "1")
    assert started_ms - 1 <= stat["last_inference"] <= time.time() * 1000 + 1
    inference = stat["inference_stats"]
    assert set(inference) == {*DURATIONS, "cache_hit", "cache_miss"}
    assert all(set(d) == {"count", "ns"} for d in inference.values())

    success = value(samples, "nv_inference_request_success")
    assert inference["success"]["count"] == success >= len(xs)
    assert stat["inference_count"] == value(samples, "nv_inference_count")
    assert stat["execution_count"] == value(samples, "nv_inference_exec_count")
    failures = sum(value(samples, "nv_inference_request_failure", reason=r) for r in REASONS)
    assert inference["fail"]["count"] == failures >= 1
    for duration, metric in [
        ("success", "nv_inference_request_duration_us"),
        ("queue", "nv_inference_queue_duration_us"),
        ("compute_input", "nv_inference_compute_input_duration_us"),
        ("compute_infer", "nv_inference_compute_infer_duration_us"),
        ("compute_output", "nv_inference_compute_output_duration_us"),
    ]:
        assert inference[duration]["ns"] // 1000 == value(samples, metric)
        if duration != "success":
            assert inference[duration]["count"] == success
    assert inference["success"]["ns"] > inference["queue"]["ns"] > 0
    histogram_sum = value(samples, "layerserve_request_duration_seconds_sum")
    assert histogram_sum == pytest.approx(inference["success"]["ns"] / 1e9, rel=1e-6)

    batches = stat["batch_stats"]
    assert [b["batch_size"] for b in batches] == sorted({b["batch_size"] for b in batches})
    assert all(set(b) == {"batch_size", "compute_input", "compute_infer", "compute_output"}
               for b in batches)  # fmt: skip
    assert sum(b["compute_infer"]["count"] for b in batches) == stat["execution_count"]
    assert (
        sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches)
        == stat["inference_count"]
    )
    assert any(b["batch_size"] > 3 for b in batches)  # concurrent requests were merged


def test_statistics_scopes_and_unknown_models(server):
    everything = httpx.get(server + "/v2/models/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in everything] == [
        ("lookup", "1"),
        ("mlp", "1"),
        ("mlp", "2"),
    ]
    mlp = httpx.get(server + "/v2/models/mlp/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in mlp] == [("mlp", "1"), ("mlp", "2")]
    assert set(mlp[0]) == STAT_FIELDS
    for path in ("/v2/models/nope/stats", "/v2/models/mlp/versions/9/stats"):
        response = httpx.get(server + path)
        assert response.status_code == 404
        assert "unknown model" in response.json()["error"]


# ---- request ids and the request log ---------------------------------------------------------
@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("client-id-42", True),
        ("3f2a9c1e-7b6d-4e0f-9a8b-1c2d3e4f5a6b", True),
        ("has spaces", False),
        ("x" * 129, False),
        (None, False),
    ],
    ids=["token", "uuid", "spaces-replaced", "too-long-replaced", "absent-generated"],
)
def test_request_id_is_echoed_or_generated_and_logged(server, caplog, sent, echoed):
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    headers = {"X-Request-ID": sent} if sent is not None else {}
    response = httpx.get(server + "/v2/health/live", headers=headers)
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    if echoed:
        assert request_id == sent
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    lines = logged_lines(caplog, request_id)
    assert len(lines) == 1
    assert re.fullmatch(
        rf"request_id={re.escape(request_id)} method=GET path=/v2/health/live status=200 "
        r"duration_ms=\d+\.\d\d client=127\.0\.0\.1",
        lines[0],
    )


def test_a_head_request_is_logged_as_head_with_the_forwarded_client(server, caplog):
    """HEAD is served as GET inside; the log line names what the client sent, and the
    address a loopback proxy forwards."""
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    headers = {"X-Request-ID": "head-probe-1", "X-Forwarded-For": "203.0.113.9"}
    response = httpx.head(server + "/v2/health/live", headers=headers)
    assert response.status_code == 200
    (line,) = logged_lines(caplog, "head-probe-1")
    assert re.fullmatch(
        r"request_id=head-probe-1 method=HEAD path=/v2/health/live status=200 "
        r"duration_ms=\d+\.\d\d client=203\.0\.113\.9",
        line,
    )


def logged_lines(caplog, request_id: str) -> list[str]:
    """The access-log lines naming ``request_id``: the server writes its line just after
    the response, so the client can get there first; wait for it a little."""
    deadline = time.monotonic() + 2
    while True:
        lines = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/nope", 404),
        ("POST", "/v2/models/mlp/versions/1/infer", 400),
        ("GET", "/no/such/route", 404),
    ],
)
def test_error_responses_carry_a_request_id_and_log_their_status(
    server, caplog, method, path, status
):
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    response = httpx.request(method, server + path, content=b"{" if method == "POST" else None)
    assert response.status_code == status
    request_id = response.headers["X-Request-ID"]
    (line,) = logged_lines(caplog, request_id)
    assert f"method={method} path={path} status={status} " in line
