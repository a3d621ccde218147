"""Requests the server stops before answering them, once ``exit_timeout_seconds`` has
passed: one waiting for the model behind a slow one and one whose body is still arriving
are each logged once, 503, by the direct lane as by the application. The slow model is in
``tests/support/slow_model.py``."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest
from live_server import running_server
from slow_model import FEATURES, write_slow_model

from layerserve.service.settings import Settings

ROWS = 12_000  # about 1.5 s in onnxruntime on one thread of a 2-core machine


def infer_request(rows: int, request_id: str) -> bytes:
    x = np.random.default_rng(rows).random((rows, FEATURES), dtype=np.float32)
    header = (
        b'{"inputs":[{"name":"x","shape":[%d,%d],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":%d}}]}'
    ) % (rows, FEATURES, x.nbytes)
    body = header + x.tobytes()
    head = (
        "POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"X-Request-ID: {request_id}\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize("direct_lane", [True, False], ids=["direct-lane", "application"])
def test_requests_cut_off_at_the_exit_timeout_are_logged_503(tmp_path, caplog, direct_lane):
    write_slow_model(tmp_path, "slow", {"max_batch_size": 0, "instances": 1, "intra_op_threads": 1})
    settings = Settings(
        model_repository=tmp_path,
        access_log=True,
        exit_timeout_seconds=1.0,
        direct_lane=direct_lane,
    )
    with caplog.at_level(logging.INFO, logger="layerserve.service.requests"):
        server = running_server(settings)
        url = server.__enter__()
        port = int(url.rsplit(":", 1)[1])
        sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
        try:
            first, queued, arriving = sockets
            first.sendall(infer_request(ROWS, "first"))
            time.sleep(0.1)
            # one instance: this one waits for the first, and cannot be done within the
            # 1 s exit timeout (it needs as long again once the first is done)
            queued.sendall(infer_request(ROWS, "queued"))
            arriving.sendall(infer_request(100, "arriving")[:-1000])
            time.sleep(0.3)  # every head read
            server.__exit__(None, None, None)  # stops the server: 1 s for what is in flight
        finally:
            for sock in sockets:
                sock.close()
    lines = [
        (r.fields["request_id"], r.fields["status"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "layerserve.service.requests" and r.fields["path"] == "/v2/models/slow/infer"  # type: ignore[attr-defined]
    ]
    statuses = dict(lines)
    assert sorted(statuses) == ["arriving", "first", "queued"] and len(lines) == 3  # once each
    assert (statuses["queued"], statuses["arriving"]) == (503, 503)
    assert statuses["first"] in (200, 503)  # answered, or cut off too, on a slow machine
