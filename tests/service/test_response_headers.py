"""Headers every client relies on, on a real uvicorn: a 405's ``Allow`` lists every
method the path serves (checked by sending each of them: none may answer 405), and
every response, the 401s and 403s of access control included, carries
``X-Request-ID``."""

from __future__ import annotations

import re
import socket

import httpx
import pytest
from live_server import running_server, write_model

from layerserve import examples
from layerserve.service.settings import Settings

ADMIN, API = "admin-secret", "api-secret"
# Each path's methods, from the route table of the README and the OpenAPI document.
# Every GET path answers HEAD too (as GET, without the content).
ALLOWED = {
    "/v1/models/nope": ["GET", "HEAD", "POST", "DELETE"],
    "/v1/models/nope/versions/1": ["GET", "HEAD", "DELETE"],
    # No model name, version or label holds ':': a TF Serving method is POST only.
    "/v1/models/nope:predict": ["POST"],
    "/v1/models/nope/versions/1:predict": ["POST"],
    "/v1/models/nope/labels/latest:predict": ["POST"],
    "/v1/models/nope/labels/latest": ["GET", "HEAD"],
    "/v1/models/nope/onnx": ["GET", "HEAD"],
    "/v2/models/nope": ["GET", "HEAD"],
    "/v2/models/nope/infer": ["POST"],
    "/v2/repository/models/nope/unload": ["POST"],
    "/v2/health/ready": ["GET", "HEAD"],
}
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("headers_repository")
    write_model(root, "mlp", examples.mlp())
    settings = Settings(model_repository=root, admin_token=ADMIN, api_token=API)
    with running_server(settings) as base:
        yield base


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "PATCH"])
@pytest.mark.parametrize("path", ALLOWED)
def test_405_allow_lists_every_method_of_the_path(http, path, method):
    response = http.request(method, path, headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 405, response.text
    allowed = ", ".join(ALLOWED[path])
    assert response.headers["allow"] == allowed
    assert response.json() == {
        "error": f"method {method} is not allowed for {path}; expected one of: {allowed}"
    }
    assert GENERATED_ID.match(response.headers["x-request-id"])


@pytest.mark.parametrize("path", ALLOWED)
def test_every_method_allow_names_is_routed(http, path):
    """The independent check of the table: each listed method reaches a route (the
    model does not exist, so nothing is changed), each other one is a 405."""
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]:
        response = http.request(method, path, headers={"Authorization": f"Bearer {ADMIN}"})
        if method in ALLOWED[path]:
            assert response.status_code != 405, (method, response.text)
        else:
            assert response.status_code == 405, (method, response.text)


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("GET", "/v2/models/mlp", None, 401),
        ("POST", "/v2/models/mlp/infer", "wrong", 401),
        ("POST", "/v1/models/mlp:predict", None, 401),
        ("POST", "/v2/repository/models/mlp/unload", API, 403),
        ("DELETE", "/v1/models/mlp", None, 401),
    ],
)
def test_access_refusals_carry_the_request_id(http, method, path, token, status):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = http.request(method, path, headers=headers)
    assert response.status_code == status, response.text
    assert GENERATED_ID.match(response.headers["x-request-id"])
    response = http.request(method, path, headers={**headers, "X-Request-ID": "trace-17"})
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"] == "trace-17"
    assert set(response.json()) == {"error"}


def test_a_served_request_still_carries_its_id(http):
    response = http.get(
        "/v2/models/mlp", headers={"Authorization": f"Bearer {API}", "X-Request-ID": "abc"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "abc"


@pytest.mark.parametrize("path", ["/v2/health/ready", "/v2/models/nope", "/v2/models/nope/infer"])
def test_head_sends_no_content_on_a_kept_alive_connection(url, path):
    """On the wire: the HEAD answer's headers (Content-Length that of GET's content) are
    followed at once by the next answer, whatever HEAD's status."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert b"content-length: " in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:80]
    assert rest.endswith(b'{"live":true}')
