"""Totals over worker processes: snapshots of one process's counts, their merge, and the
exposition and statistics extension rendered from the totals.

The merge is checked against hand-computed totals and, over random counts, against a
second implementation that flattens snapshots into leaves and adds them up; the snapshot
of a real server against what was sent to it; and a real server asking a sibling worker
(a ``Cluster`` answering a hand-written snapshot over the workers' Unix socket) against
the sibling's numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_server import running_server, write_model
from metrics_text import model_totals, parse, value

from layerserve import examples
from layerserve.service.cluster import Cluster, write_restarts
from layerserve.service.metrics import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS,
    VersionCounts,
    exposition,
    merge_snapshots,
    statistics_json,
    totals,
)
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

LATENCY_SLOTS = len(LATENCY_BUCKETS) + 1
BATCH_SLOTS = len(BATCH_BUCKETS) + 1
NS_FIELDS = (
    "request_ns",
    "fail_ns",
    "queue_ns",
    "compute_input_ns",
    "compute_infer_ns",
    "compute_output_ns",
)


def version(
    name: str,
    number: str,
    *,
    success: int = 0,
    failure: dict[str, int] | None = None,
    inference_count: int = 0,
    execution_count: int = 0,
    last_inference_ms: int = 0,
    batches: tuple[tuple[int, int, int, int, int], ...] = (),
    latency: dict[int, int] | None = None,
    latency_sum: float = 0.0,
    batch_size: dict[int, int] | None = None,
    batch_size_sum: float = 0.0,
    pending: int = 0,
    fell_back_to_cpu: bool = False,
    **ns: int,
) -> dict[str, Any]:
    """One model version of a snapshot, written out: ``batches`` as (rows, count, input ns,
    infer ns, output ns), histograms as {bucket index: count}."""
    return {
        "name": name,
        "version": number,
        "stats": {
            "success": success,
            "failure": failure or {},
            "inference_count": inference_count,
            "execution_count": execution_count,
            **{key: ns.get(key, 0) for key in NS_FIELDS},
            "last_inference_ms": last_inference_ms,
            "batches": [
                {
                    "batch_size": rows,
                    "count": count,
                    "compute_input_ns": inp,
                    "compute_infer_ns": infer,
                    "compute_output_ns": out,
                }
                for rows, count, inp, infer, out in batches
            ],
        },
        "latency": {"counts": _slots(latency, LATENCY_SLOTS), "sum": latency_sum},
        "batch_size": {"counts": _slots(batch_size, BATCH_SLOTS), "sum": batch_size_sum},
        "pending": pending,
        "fell_back_to_cpu": fell_back_to_cpu,
    }


def _slots(counts: dict[int, int] | None, size: int) -> list[int]:
    return [(counts or {}).get(i, 0) for i in range(size)]


# Two workers: mlp 1 in both, mlp 2 in the first only, lookup 1 in the second only.
FIRST = {
    "models": [
        version(
            "mlp", "1", success=3, failure={"OTHER": 1}, inference_count=5, execution_count=2,
            request_ns=3000, fail_ns=70, queue_ns=600, compute_input_ns=30,
            compute_infer_ns=900, compute_output_ns=9, last_inference_ms=1000,
            batches=((1, 1, 10, 20, 30), (4, 1, 1, 2, 3)),
            latency={0: 2, 3: 1}, latency_sum=0.25, batch_size={0: 1, 2: 1}, batch_size_sum=5,
            pending=1,
        ),
        version("mlp", "2", success=1, inference_count=1, execution_count=1, request_ns=5),
    ]
}  # fmt: skip
SECOND = {
    "models": [
        version("lookup", "1", failure={"BACKEND": 4}, fail_ns=8, fell_back_to_cpu=True),
        version(
            "mlp", "1", success=2, failure={"OTHER": 2, "REJECTED": 1}, inference_count=2,
            execution_count=2, request_ns=1000, fail_ns=30, queue_ns=400, compute_input_ns=20,
            compute_infer_ns=100, compute_output_ns=1, last_inference_ms=2000,
            batches=((1, 2, 5, 6, 7),), latency={3: 2}, latency_sum=0.5, batch_size={0: 2},
            batch_size_sum=2, pending=2, fell_back_to_cpu=True,
        ),
    ]
}  # fmt: skip
MERGED = {
    "models": [
        version("lookup", "1", failure={"BACKEND": 4}, fail_ns=8, fell_back_to_cpu=True),
        version(
            "mlp", "1", success=5, failure={"OTHER": 3, "REJECTED": 1}, inference_count=7,
            execution_count=4, request_ns=4000, fail_ns=100, queue_ns=1000,
            compute_input_ns=50, compute_infer_ns=1000, compute_output_ns=10,
            last_inference_ms=2000, batches=((1, 3, 15, 26, 37), (4, 1, 1, 2, 3)),
            latency={0: 2, 3: 3}, latency_sum=0.75, batch_size={0: 3, 2: 1}, batch_size_sum=7,
            pending=3, fell_back_to_cpu=True,
        ),
        version("mlp", "2", success=1, inference_count=1, execution_count=1, request_ns=5),
    ]
}  # fmt: skip


def test_merge_adds_counts_keeps_the_latest_inference_and_every_version():
    assert merge_snapshots([FIRST, SECOND]) == MERGED
    assert merge_snapshots([SECOND, FIRST]) == MERGED
    assert merge_snapshots([FIRST]) == FIRST
    assert merge_snapshots([]) == {"models": []}


def test_the_exposition_and_statistics_render_the_totals():
    samples = parse(exposition(totals([FIRST, SECOND]), workers=2, restarts=1))
    mlp = {"model": "mlp", "version": "1"}
    assert value(samples, "nv_inference_request_success", **mlp) == 5
    assert value(samples, "nv_inference_count", **mlp) == 7
    assert value(samples, "nv_inference_exec_count", **mlp) == 4
    assert value(samples, "nv_inference_request_duration_us", **mlp) == 4
    assert value(samples, "nv_inference_compute_infer_duration_us", **mlp) == 1
    assert model_totals(samples, "nv_inference_request_failure") == {
        ("lookup", "1"): 4,
        ("mlp", "1"): 4,
        ("mlp", "2"): 0,
    }
    assert value(samples, "nv_inference_request_failure", reason="OTHER", **mlp) == 3
    assert value(samples, "nv_inference_pending_request_count", **mlp) == 3
    assert value(samples, "layerserve_model_provider_fallback", **mlp) == 1
    assert value(samples, "layerserve_model_provider_fallback", model="mlp", version="2") == 0
    # cumulative buckets: 2 at the first bound, 5 from the fourth on
    latency = [
        value(samples, "layerserve_request_duration_seconds_bucket", le=le, **mlp)
        for le in ("0.0005", "0.001", "0.0025", "0.005", "+Inf")
    ]
    assert latency == [2, 2, 2, 5, 5]
    assert value(samples, "layerserve_request_duration_seconds_sum", **mlp) == 0.75
    assert value(samples, "layerserve_batch_size_bucket", le="2.0", **mlp) == 3
    assert value(samples, "layerserve_batch_size_bucket", le="4.0", **mlp) == 4
    assert value(samples, "layerserve_batch_size_count", **mlp) == 4
    assert value(samples, "layerserve_worker_restarts") == 1
    assert value(samples, "layerserve_workers") == 2

    stats = statistics_json(totals([FIRST, SECOND]))["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [
        ("lookup", "1"),
        ("mlp", "1"),
        ("mlp", "2"),
    ]
    mlp_stat = stats[1]
    assert mlp_stat["last_inference"] == 2000
    assert mlp_stat["inference_stats"]["success"] == {"count": 5, "ns": 4000}
    assert mlp_stat["inference_stats"]["fail"] == {"count": 4, "ns": 100}
    assert mlp_stat["inference_stats"]["queue"] == {"count": 5, "ns": 1000}
    assert [(b["batch_size"], b["compute_infer"]) for b in mlp_stat["batch_stats"]] == [
        (1, {"count": 3, "ns": 26}),
        (4, {"count": 1, "ns": 2}),
    ]


# ---- random counts against a second implementation ------------------------------------------
VERSIONS = [("a", "1"), ("a", "2"), ("a", "10"), ("b", "3")]
count = st.integers(0, 10**12)
small = st.integers(0, 50)


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(VERSIONS), unique=True))
    models = []
    for name, number in sorted(chosen, key=lambda v: (v[0], int(v[1]))):
        rows = draw(st.lists(st.integers(1, 1024), unique=True, max_size=4))
        models.append(
            version(
                name,
                number,
                success=draw(count),
                failure=draw(
                    st.dictionaries(st.sampled_from(["REJECTED", "CANCELED", "OTHER"]), small)
                ),
                inference_count=draw(count),
                execution_count=draw(count),
                last_inference_ms=draw(count),
                batches=tuple(
                    (r, draw(small), draw(count), draw(count), draw(count)) for r in sorted(rows)
                ),
                latency=draw(st.dictionaries(st.integers(0, LATENCY_SLOTS - 1), small)),
                latency_sum=draw(small) / 1024,  # exact in binary: sums in any order agree
                batch_size=draw(st.dictionaries(st.integers(0, BATCH_SLOTS - 1), small)),
                batch_size_sum=float(draw(small)),
                pending=draw(small),
                fell_back_to_cpu=draw(st.booleans()),
                **{key: draw(count) for key in NS_FIELDS},
            )
        )
    return {"models": models}


def leaves(snapshot: dict[str, Any]) -> dict[tuple, Any]:
    """Every number of a snapshot by its path, batch entries keyed by their batch size,
    histogram buckets by index; zero counts left out (absent and zero are the same)."""
    out: dict[tuple, Any] = {}

    def walk(path: tuple, node: Any) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk((*path, key), child)
        elif isinstance(node, list) and path[-1] == "batches":
            for entry in node:
                walk((*path, entry["batch_size"]), {**entry, "batch_size": 0})
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk((*path, index), child)
        elif node not in (0, False):
            out[path] = node

    for model in snapshot["models"]:
        walk((model["name"], model["version"]), {**model, "name": 0, "version": 0})
    return out


def added_leaves(parts: list[dict[str, Any]]) -> dict[tuple, Any]:
    total: dict[tuple, Any] = {}
    for part in parts:
        for path, number in leaves(part).items():
            if path[-1] == "last_inference_ms":
                total[path] = max(total.get(path, 0), number)
            elif path[-1] == "fell_back_to_cpu":
                total[path] = True
            else:
                total[path] = total.get(path, 0) + number
    return total


@settings(max_examples=60, deadline=None)
@given(st.lists(snapshots(), max_size=5))
def test_merge_agrees_with_adding_up_the_leaves(parts):
    merged = merge_snapshots(parts)
    assert leaves(merged) == added_leaves(parts)
    present = {(m["name"], m["version"]) for part in parts for m in part["models"]}
    # every version once, by name and version number (VERSIONS is in that order)
    assert [(m["name"], m["version"]) for m in merged["models"]] == [
        v for v in VERSIONS if v in present
    ]
    assert orjson.loads(orjson.dumps(merged)) == merged
    if len(parts) > 2:  # adding up in steps gives the same totals
        assert merge_snapshots([merge_snapshots(parts[:2]), *parts[2:]]) == merged


@settings(max_examples=60, deadline=None)
@given(snapshots())
def test_a_snapshot_survives_json_and_the_counts_it_describes(snapshot):
    for data in snapshot["models"]:
        counts = VersionCounts.from_json(orjson.loads(orjson.dumps(data)))
        assert counts.to_json() == data
        assert VersionCounts.from_json(counts.to_json()) == counts


# ---- a real server, alone and with a sibling worker ---------------------------------------------
FEATURES = 784


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rt")  # short: Unix socket paths are limited


@pytest.fixture(scope="module")
def served(tmp_path_factory, runtime_dir):
    """A server that is worker 0 of 2 (its sibling answers only when a test starts it);
    yields the URL and the app."""
    root = tmp_path_factory.mktemp("models")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    apps = []

    def join_the_cluster(app: Any) -> None:
        app.state.cluster = Cluster(index=0, workers=2, runtime_dir=runtime_dir)
        apps.append(app)

    with running_server(Settings(model_repository=root), customize=join_the_cluster) as url:
        yield url, apps[0]


def infer(url: str, rows: int) -> httpx.Response:
    x = np.full((rows, FEATURES), 0.25, np.float32)
    body = {
        "inputs": [
            {"name": "hidden_1_input", "shape": list(x.shape), "datatype": "FP32",
             "data": x.ravel().tolist()}
        ]
    }  # fmt: skip
    return httpx.post(url + "/v2/models/mlp/versions/1/infer", json=body)


def scrape(url: str) -> dict:
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    return parse(response.text)


def mlp_stat(url: str) -> dict[str, Any]:
    (stat,) = httpx.get(url + "/v2/models/mlp/versions/1/stats").json()["model_stats"]
    return stat


def grew(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


MLP = {"model": "mlp", "version": "1"}


def test_a_server_counts_what_it_was_sent(served, runtime_dir):
    url, _ = served
    rows = [1, 2, 3, 1, 4, 2]
    before, stat_before = scrape(url), mlp_stat(url)
    for n in rows:
        assert infer(url, n).status_code == 200
    bad = httpx.post(url + "/v2/models/mlp/versions/1/infer", content=b"{not json")
    assert bad.status_code == 400
    after, stat_after = scrape(url), mlp_stat(url)

    change = grew(after, before)
    assert change[("nv_inference_request_success", frozenset(MLP.items()))] == len(rows)
    assert change[("nv_inference_count", frozenset(MLP.items()))] == sum(rows)
    assert change[("nv_inference_exec_count", frozenset(MLP.items()))] == len(rows)  # one by one
    failure = frozenset({**MLP, "reason": "OTHER"}.items())
    assert change[("nv_inference_request_failure", failure)] == 1
    assert change[("layerserve_request_duration_seconds_count", frozenset(MLP.items()))] == 6
    assert change[("layerserve_batch_size_sum", frozenset(MLP.items()))] == sum(rows)
    assert value(after, "layerserve_workers") == 2
    assert value(after, "layerserve_worker_restarts") == 0

    inference = stat_after["inference_stats"]
    assert inference["success"]["count"] - stat_before["inference_stats"]["success"]["count"] == 6
    assert inference["fail"]["count"] - stat_before["inference_stats"]["fail"]["count"] == 1
    assert stat_after["inference_count"] == value(after, "nv_inference_count", **MLP)
    assert inference["success"]["ns"] // 1000 == value(
        after, "nv_inference_request_duration_us", **MLP
    )
    batches = {b["batch_size"]: b["compute_infer"]["count"] for b in stat_after["batch_stats"]}
    before_batches = {
        b["batch_size"]: b["compute_infer"]["count"] for b in stat_before["batch_stats"]
    }
    assert {r: batches[r] - before_batches.get(r, 0) for r in batches} == {1: 2, 2: 2, 3: 1, 4: 1}

    write_restarts(runtime_dir, 3)
    try:
        assert value(scrape(url), "layerserve_worker_restarts") == 3
    finally:
        (runtime_dir / "restarts").unlink()


def test_the_snapshot_of_a_server_is_json_and_matches_its_statistics(served):
    url, app = served
    assert infer(url, 2).status_code == 200
    snapshot = app.state.metrics.snapshot(app.state.dataplane)  # the server is idle now
    assert orjson.loads(orjson.dumps(snapshot)) == snapshot
    (data,) = snapshot["models"]
    counts = VersionCounts.from_json(data)
    assert counts.to_json() == data
    stat = mlp_stat(url)  # no sibling answers: this server's own counts
    assert statistics_json([counts])["model_stats"] == [stat]
    assert sum(data["latency"]["counts"]) == stat["inference_stats"]["success"]["count"]
    assert sum(data["batch_size"]["counts"]) == stat["execution_count"]


# What the sibling worker counted: mlp 1 (which both serve) and a version only it serves.
SIBLING = {
    "models": [
        version(
            "mlp", "1", success=7, failure={"REJECTED": 2, "CANCELED": 1}, inference_count=30,
            execution_count=3, request_ns=9_000_000, fail_ns=5000, queue_ns=2_000_000,
            compute_input_ns=11_000, compute_infer_ns=4_000_000, compute_output_ns=3000,
            last_inference_ms=4_102_444_800_000, batches=((17, 1, 1000, 2000, 3000),
                                                          (4, 2, 10_000, 20_000, 30_000)),
            latency={4: 7}, latency_sum=0.0625, batch_size={2: 2, 5: 1}, batch_size_sum=25,
            pending=3, fell_back_to_cpu=True,
        ),
        version("other", "5", success=1, inference_count=1, execution_count=1, request_ns=2000),
    ]
}  # fmt: skip


@contextlib.contextmanager
def sibling(runtime_dir, snapshot: dict[str, Any]) -> Iterator[None]:
    """Worker 1 of 2, on its own event loop, answering ``snapshot`` to "snapshot"."""
    cluster = Cluster(index=1, workers=2, runtime_dir=runtime_dir)

    async def answer(_: None) -> dict[str, Any]:
        return snapshot

    cluster.on("snapshot", answer)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(cluster.start(), loop).result(10)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(cluster.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_totals_add_what_the_sibling_counted(served):
    url, _ = served
    alone, stat_alone = scrape(url), mlp_stat(url)
    with sibling(served[1].state.cluster.runtime_dir, SIBLING):
        together, stat_together = scrape(url), mlp_stat(url)
        everything = httpx.get(url + "/v2/models/stats").json()["model_stats"]
        unknown = httpx.get(url + "/v2/models/other/stats")
    assert scrape(url) == alone  # the sibling gone: this worker's counts again

    mlp = frozenset(MLP.items())
    other = frozenset({"model": "other", "version": "5"}.items())
    expected = {
        ("nv_inference_request_success", mlp): 7,
        ("nv_inference_count", mlp): 30,
        ("nv_inference_exec_count", mlp): 3,
        ("nv_inference_request_failure", frozenset({**MLP, "reason": "REJECTED"}.items())): 2,
        ("nv_inference_request_failure", frozenset({**MLP, "reason": "CANCELED"}.items())): 1,
        ("nv_inference_pending_request_count", mlp): 3,
        ("nv_inference_request_duration_us", mlp): 9000,
        ("nv_inference_queue_duration_us", mlp): 2000,
        ("nv_inference_compute_input_duration_us", mlp): 11,
        ("nv_inference_compute_infer_duration_us", mlp): 4000,
        ("nv_inference_compute_output_duration_us", mlp): 3,
        ("layerserve_model_provider_fallback", mlp): 1,
        ("layerserve_request_duration_seconds_count", mlp): 7,
        ("layerserve_request_duration_seconds_sum", mlp): pytest.approx(0.0625),
        ("layerserve_batch_size_count", mlp): 3,
        ("layerserve_batch_size_sum", mlp): 25,
    }
    # cumulative buckets: the sibling's 7 latencies from the fifth bound (0.01 s) on
    for le in ("0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0"):
        expected[("layerserve_request_duration_seconds_bucket", mlp | {("le", le)})] = 7
    for le in ("30.0", "+Inf"):
        expected[("layerserve_request_duration_seconds_bucket", mlp | {("le", le)})] = 7
    for le in ("4.0", "8.0", "16.0"):  # two executions of 4 rows, then one of 17
        expected[("layerserve_batch_size_bucket", mlp | {("le", le)})] = 2
    for le in ("32.0", "64.0", "128.0", "256.0", "512.0", "1024.0", "+Inf"):
        expected[("layerserve_batch_size_bucket", mlp | {("le", le)})] = 3
    change = grew(together, alone)
    sibling_only = {k: change.pop(k) for k in list(change) if k[1] >= other}
    assert change == expected
    assert sibling_only[("nv_inference_request_success", other)] == 1
    assert sibling_only[("nv_inference_request_duration_us", other)] == 2
    assert value(together, "layerserve_workers") == 2

    # the statistics extension: the same totals for what this worker serves
    assert [(s["name"], s["version"]) for s in everything] == [("mlp", "1")]
    assert unknown.status_code == 404  # this worker serves no model "other"
    assert stat_together["last_inference"] == 4_102_444_800_000
    assert stat_together["inference_count"] - stat_alone["inference_count"] == 30
    assert stat_together["execution_count"] - stat_alone["execution_count"] == 3
    for key, (count, ns) in {
        "success": (7, 9_000_000),
        "fail": (3, 5000),
        "queue": (7, 2_000_000),
        "compute_infer": (7, 4_000_000),
    }.items():
        moved = stat_together["inference_stats"][key]
        before = stat_alone["inference_stats"][key]
        assert (moved["count"] - before["count"], moved["ns"] - before["ns"]) == (count, ns)
    by_size = {b["batch_size"]: b for b in stat_together["batch_stats"]}
    assert by_size[17]["compute_output"] == {"count": 1, "ns": 3000}
    alone_4 = next((b for b in stat_alone["batch_stats"] if b["batch_size"] == 4), None)
    count_4 = alone_4["compute_infer"]["count"] if alone_4 else 0
    assert by_size[4]["compute_infer"]["count"] == count_4 + 2
