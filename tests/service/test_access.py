"""Access control end to end: real uvicorn servers with no token, the admin token, the
API token and both, asked by httpx and tritonclient with every kind of credential; a
client behind a proxy (``X-Forwarded-For``, which uvicorn honours from loopback) and the
middleware on a real Starlette app for clients the loopback servers cannot have."""

from __future__ import annotations

import contextlib
import logging

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from live_server import running_server, write_model
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect
from tritonclient.utils import InferenceServerException

from layerserve import examples
from layerserve.service.access import AccessPolicy
from layerserve.service.api.access import AccessMiddleware
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

ADMIN_TOKEN, API_TOKEN = "admin-secret-7f3a", "api-secret-91c2"
CONFIGS = {
    "no tokens": {},
    "admin token": {"admin_token": ADMIN_TOKEN},
    "api token": {"api_token": API_TOKEN},
    "both tokens": {"admin_token": ADMIN_TOKEN, "api_token": API_TOKEN},
}
CREDENTIALS = {
    "none": None,
    "admin": f"Bearer {ADMIN_TOKEN}",
    "admin, lower-case scheme": f"bearer {ADMIN_TOKEN}",
    "api": f"Bearer {API_TOKEN}",
    "api, upper-case scheme": f"BEARER {API_TOKEN}",
    "wrong token": "Bearer not-the-token",
    "basic": "Basic YWRtaW46c2VjcmV0",
    "empty bearer": "Bearer",
}
ADMIN = {"Authorization": CREDENTIALS["admin"]}
API = {"Authorization": CREDENTIALS["api"]}

X = np.random.default_rng(0).random((2, 784), dtype=np.float32)
INFER = {
    "inputs": [
        {
            "name": "hidden_1_input",
            "shape": [2, 784],
            "datatype": "FP32",
            "data": X.reshape(-1).tolist(),
        }
    ]
}
PREDICT = {"instances": X.tolist()}
BENCH = {"batch_sizes": [1], "duration_s": 0.01, "warmup_runs": 0}

# (method, path, JSON body, status once past access control; None: any but 401/403)
ADMIN_ENDPOINTS = {
    "upload": ("POST", "/v1/models/m", None, None),
    "delete model": ("DELETE", "/v1/models/absent", None, None),
    "delete version": ("DELETE", "/v1/models/m/versions/9", None, None),
    "download": ("GET", "/v1/models/m/onnx", None, None),
    "download, HEAD": ("HEAD", "/v1/models/m/onnx", None, None),
    "download version": ("GET", "/v1/models/m/versions/1/onnx", None, None),
    "download, trailing slash": ("GET", "/v1/models/m/onnx/", None, 404),
    "export": ("POST", "/v1/export", None, None),
    "benchmark": ("POST", "/v1/models/m:benchmark", BENCH, 200),
    "benchmark version": ("POST", "/v1/models/m/versions/1:benchmark", BENCH, 200),
    "benchmark, encoded colon": ("POST", "/v1/models/m%3Abenchmark", BENCH, 200),
    "benchmark, unknown model": ("POST", "/v1/models/absent:benchmark", BENCH, 404),
    "load, unknown model": ("POST", "/v2/repository/models/absent/load", None, 404),
    "unload, unknown model": ("POST", "/v2/repository/models/absent/unload", None, 404),
    "load, trailing slash": ("POST", "/v2/repository/models/absent/load/", None, 404),
}
API_ENDPOINTS = {
    "v2 model metadata": ("GET", "/v2/models/m", None, 200),
    "v2 unknown model": ("GET", "/v2/models/absent", None, 404),
    "v2 model ready": ("GET", "/v2/models/m/ready", None, 200),
    "v2 model config": ("GET", "/v2/models/m/config", None, 200),
    "v2 infer": ("POST", "/v2/models/m/infer", INFER, 200),
    "v2 infer version": ("POST", "/v2/models/m/versions/1/infer", INFER, 200),
    "v2 statistics": ("GET", "/v2/models/stats", None, 200),
    "repository index": ("POST", "/v2/repository/index", None, 200),
    "v1 model list": ("GET", "/v1/models", None, 200),
    "v1 model status": ("GET", "/v1/models/m", None, 200),
    "v1 model metadata": ("GET", "/v1/models/m/metadata", None, 200),
    "v1 predict": ("POST", "/v1/models/m:predict", PREDICT, 200),
    "v1 predict version": ("POST", "/v1/models/m/versions/1:predict", PREDICT, 200),
    "mask": ("POST", "/v1/models/m:mask", None, None),
    "validate": ("POST", "/v1/models/m:validate", None, None),
    "shapes": ("POST", "/v1/shapes", None, None),
    "unknown path": ("GET", "/nope", None, 404),
}
OPEN_ENDPOINTS = {
    "server metadata": ("GET", "/v2", None, 200),
    "live": ("GET", "/v2/health/live", None, 200),
    "ready": ("GET", "/v2/health/ready", None, 200),
    "metrics": ("GET", "/metrics", None, 200),
    "docs": ("GET", "/docs", None, 200),
    "redoc": ("GET", "/redoc", None, 200),
    "openapi": ("GET", "/openapi.json", None, 200),
}
ENDPOINTS = {
    "admin": ADMIN_ENDPOINTS,
    "api": API_ENDPOINTS,
    "open": OPEN_ENDPOINTS,
}

# Expected outcome per credential: "ok" (past access control), 401 (no credentials),
# INVALID (401, a token that is none of the server's) or 403 (a token of too small a scope).
INVALID = "401 invalid_token"
ALL_PASS = dict.fromkeys(CREDENTIALS, "ok")
NEED_ADMIN_TOKEN = {
    "none": 401,
    "admin": "ok",
    "admin, lower-case scheme": "ok",
    "api": INVALID,  # no API token configured: just a wrong token
    "api, upper-case scheme": INVALID,
    "wrong token": INVALID,
    "basic": 401,
    "empty bearer": 401,
}
NEED_ADMIN_NOT_API_TOKEN = {**NEED_ADMIN_TOKEN, "api": 403, "api, upper-case scheme": 403}
NEED_API_TOKEN = {
    "none": 401,
    "admin": INVALID,  # no admin token configured: just a wrong token
    "admin, lower-case scheme": INVALID,
    "api": "ok",
    "api, upper-case scheme": "ok",
    "wrong token": INVALID,
    "basic": 401,
    "empty bearer": 401,
}
NEED_EITHER_TOKEN = {
    "none": 401,
    "admin": "ok",
    "admin, lower-case scheme": "ok",
    "api": "ok",
    "api, upper-case scheme": "ok",
    "wrong token": INVALID,
    "basic": 401,
    "empty bearer": 401,
}
EXPECTED = {
    # Loopback clients: without an admin token, admin endpoints let them in.
    ("no tokens", "admin"): ALL_PASS,
    ("no tokens", "api"): ALL_PASS,
    ("no tokens", "open"): ALL_PASS,
    ("admin token", "admin"): NEED_ADMIN_TOKEN,
    ("admin token", "api"): ALL_PASS,
    ("admin token", "open"): ALL_PASS,
    ("api token", "admin"): ALL_PASS,
    ("api token", "api"): NEED_API_TOKEN,
    ("api token", "open"): ALL_PASS,
    ("both tokens", "admin"): NEED_ADMIN_NOT_API_TOKEN,
    ("both tokens", "api"): NEED_EITHER_TOKEN,
    ("both tokens", "open"): ALL_PASS,
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One server per configuration, each on its own repository with model ``m``."""
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, tokens in CONFIGS.items():
            root = tmp_path_factory.mktemp(name.replace(" ", "_"))
            write_model(root, "m", examples.mlp(), "1", {"max_batch_size": 64})
            settings = Settings(model_repository=root, **tokens)
            urls[name] = stack.enter_context(running_server(settings))
        yield urls


@pytest.fixture(scope="module")
def clients(servers):
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(httpx.Client(base_url=url, timeout=30))
            for name, url in servers.items()
        }


def send(client: httpx.Client, endpoint, authorization: str | None, **headers) -> httpx.Response:
    method, path, body, _ = endpoint
    if authorization is not None:
        headers["Authorization"] = authorization
    return client.request(method, path, json=body, headers=headers)


def outcome(response: httpx.Response, allowed_status: int | None) -> str | int:
    has_body = response.request.method != "HEAD"
    if response.status_code == 401:
        challenge = response.headers["www-authenticate"]
        if challenge == 'Bearer realm="layerserve", error="invalid_token"':  # RFC 6750 3.1
            assert not has_body or "token" in response.json()["error"]
            return INVALID
        assert challenge == 'Bearer realm="layerserve"'  # no credentials: no error code
        assert not has_body or "Authorization: Bearer <" in response.json()["error"]
        return 401
    if response.status_code == 403:
        assert not has_body or response.json()["error"]
        return 403
    if allowed_status is not None and response.status_code != allowed_status:
        return f"status {response.status_code}: {response.text[:200]}"
    return "ok"


CASES = [
    pytest.param(config, level, name, id=f"{config}-{level}-{name}")
    for config in CONFIGS
    for level, endpoints in ENDPOINTS.items()
    for name in endpoints
]


@pytest.mark.parametrize(("config", "level", "endpoint"), CASES)
def test_access(clients, config, level, endpoint):
    client, spec = clients[config], ENDPOINTS[level][endpoint]
    observed = {
        credential: outcome(send(client, spec, authorization), spec[3])
        for credential, authorization in CREDENTIALS.items()
    }
    assert observed == EXPECTED[config, level]


def test_refusals_name_what_is_expected(clients):
    client = clients["both tokens"]
    load = ADMIN_ENDPOINTS["load, unknown model"]
    infer = API_ENDPOINTS["v2 infer"]
    cases = [
        (load, None, 401, "needs 'Authorization: Bearer <admin token>'; the request has no"),
        (load, CREDENTIALS["basic"], 401, "Authorization header uses the 'Basic' scheme"),
        (load, CREDENTIALS["api"], 403, "the API token does not reach this endpoint"),
        (load, CREDENTIALS["wrong token"], 401, "not the admin token"),
        (infer, None, 401, "needs 'Authorization: Bearer <API token>'"),
        (infer, CREDENTIALS["empty bearer"], 401, "Bearer token is empty"),
        (infer, CREDENTIALS["wrong token"], 401, "not valid for this endpoint"),
    ]
    for endpoint, authorization, status, fragment in cases:
        response = send(client, endpoint, authorization)
        assert response.status_code == status
        assert fragment in response.json()["error"]
    # RFC 6750 3.1: a caller identified, whose token's scope does not reach the endpoint
    refused = send(client, load, CREDENTIALS["api"])
    challenge = refused.headers["www-authenticate"]
    assert challenge == 'Bearer realm="layerserve", error="insufficient_scope"'
    # a refusal that is no token's: no challenge
    remote = send(clients["no tokens"], load, None, **{"X-Forwarded-For": "203.0.113.7"})
    assert remote.status_code == 403 and "www-authenticate" not in remote.headers


@pytest.mark.parametrize("order", [("admin", "wrong token"), ("wrong token", "admin")])
@pytest.mark.parametrize("endpoint", ["load, unknown model", "v2 infer"])
def test_two_authorization_headers_are_refused_whichever_comes_first(clients, order, endpoint):
    """A singleton field (RFC 9110): a proxy and the server could each read another one;
    RFC 6750's invalid_request."""
    method, path, body, _ = {**ADMIN_ENDPOINTS, **API_ENDPOINTS}[endpoint]
    headers = [("Authorization", CREDENTIALS[credential]) for credential in order]
    client = clients["both tokens"]

    def failures() -> int:
        stats = client.get("/v2/models/m/stats", headers=ADMIN).json()["model_stats"][0]
        return stats["inference_stats"]["fail"]["count"]

    before = failures()
    response = client.request(method, path, json=body, headers=headers)
    assert failures() == before  # a refusal of credentials is no failed inference
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "the request has 2 Authorization headers; send exactly one"
    challenge = response.headers["www-authenticate"]
    assert challenge == 'Bearer realm="layerserve", error="invalid_request"'


def test_refusal_does_not_tell_whether_the_model_exists(clients):
    client = clients["both tokens"]
    for known, unknown in [
        ("/v2/models/m", "/v2/models/absent"),
        ("/v1/models/m/onnx", "/v1/models/absent/onnx"),
        ("/v1/models/m:benchmark", "/v1/models/absent:benchmark"),
    ]:
        for authorization in (None, CREDENTIALS["wrong token"]):
            headers = {"Authorization": authorization} if authorization else {}
            method = "POST" if known.endswith("benchmark") else "GET"
            answers = [client.request(method, p, headers=headers) for p in (known, unknown)]
            assert answers[0].status_code == answers[1].status_code in (401, 403)
            assert answers[0].json() == answers[1].json()


# ---- clients that are not loopback ------------------------------------------------------
LOAD_UNKNOWN = ADMIN_ENDPOINTS["load, unknown model"]  # 404 once let in
FORWARDED = [
    ("no tokens", "203.0.113.7", None, 403),
    ("no tokens", "203.0.113.7", CREDENTIALS["admin"], 403),  # no token to match
    ("no tokens", "2001:db8::7", None, 403),
    ("no tokens", "127.0.0.1, 203.0.113.7", None, 403),  # a forged entry, then the proxy's
    ("no tokens", "203.0.113.7, 127.0.0.1", None, 403),  # uvicorn skips trusted hops
    ("no tokens", "127.0.0.1", None, 404),
    ("no tokens", "::1", None, 404),
    ("admin token", "203.0.113.7", CREDENTIALS["admin"], 404),
    ("admin token", "203.0.113.7", None, 401),
    ("admin token", "203.0.113.7", CREDENTIALS["wrong token"], 401),
]


@pytest.mark.parametrize(("config", "forwarded_for", "authorization", "status"), FORWARDED)
def test_admin_endpoint_behind_a_proxy(clients, config, forwarded_for, authorization, status):
    response = send(
        clients[config], LOAD_UNKNOWN, authorization, **{"X-Forwarded-For": forwarded_for}
    )
    assert response.status_code == status, response.text
    if status == 403 and config == "no tokens":
        assert "set LAYERSERVE_ADMIN_TOKEN" in response.json()["error"]


@pytest.mark.parametrize(
    "endpoint", [API_ENDPOINTS["v2 infer"], API_ENDPOINTS["v1 predict"], OPEN_ENDPOINTS["live"]]
)
def test_other_endpoints_behind_a_proxy_stay_open(clients, endpoint):
    response = send(clients["no tokens"], endpoint, None, **{"X-Forwarded-For": "203.0.113.7"})
    assert response.status_code == 200, response.text


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path})


async def _greet(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def starlette_app(policy: AccessPolicy) -> AccessMiddleware:
    """The middleware in front of a real Starlette app with one route per level."""
    routes = [
        Route("/v1/export", _echo, methods=["POST"]),
        WebSocketRoute("/v1/export", _greet),
        Route("/v2/models/{name}", _echo),
        Route("/v2/health/live", _echo),
    ]
    return AccessMiddleware(Starlette(routes=routes), policy)


DIRECT = [
    # (client host, root path, method, path, status)
    ("10.0.0.5", "", "POST", "/v1/export", 403),
    ("192.168.1.20", "", "POST", "/v1/export", 403),
    ("2001:db8::5", "", "POST", "/v1/export", 403),
    ("::ffff:10.0.0.5", "", "POST", "/v1/export", 403),
    ("testclient", "", "POST", "/v1/export", 403),
    ("127.0.0.1", "", "POST", "/v1/export", 200),
    ("127.0.0.2", "", "POST", "/v1/export", 200),
    ("::1", "", "POST", "/v1/export", 200),
    ("::ffff:127.0.0.1", "", "POST", "/v1/export", 200),
    ("10.0.0.5", "", "GET", "/v2/models/m", 200),
    ("10.0.0.5", "", "GET", "/v2/health/live", 200),
    # Mounted under a root path, routing strips it; so must the policy.
    ("10.0.0.5", "/layerserve", "POST", "/layerserve/v1/export", 403),
    ("127.0.0.1", "/layerserve", "POST", "/layerserve/v1/export", 200),
]


@pytest.mark.parametrize(("host", "root_path", "method", "path", "status"), DIRECT)
def test_middleware_with_other_clients(host, root_path, method, path, status):
    app = starlette_app(AccessPolicy.from_secrets(None, None))
    client = TestClient(app, client=(host, 1234), root_path=root_path)
    response = client.request(method, path)
    assert response.status_code == status, response.text
    if status == 403:
        assert "LAYERSERVE_ADMIN_TOKEN" in response.json()["error"]


def test_websocket_on_an_admin_path_is_closed():
    app = starlette_app(AccessPolicy.from_secrets(ADMIN_TOKEN, None))
    client = TestClient(app, client=("127.0.0.1", 1234))
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/v1/export"):
            pass
    assert closed.value.code == 1008
    with client.websocket_connect("/v1/export", headers=ADMIN) as websocket:
        assert websocket.receive_text() == "hello"


# ---- tritonclient ------------------------------------------------------------------------
def test_tritonclient_with_authorization_headers(servers):
    client = triton.InferenceServerClient(servers["both tokens"].removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    for headers, status in [(None, "401"), ({"Authorization": "Bearer nope"}, "401")]:
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_metadata("m", headers=headers)
        assert refused.value.status() == status
    assert client.get_model_metadata("m", headers=API)["name"] == "m"
    assert client.is_model_ready("m", headers=ADMIN)

    tensor = triton.InferInput("hidden_1_input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    result = client.infer("m", [tensor], headers=API)
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), examples.mlp().predict(X), rtol=0, atol=1e-5
    )

    with pytest.raises(InferenceServerException) as refused:
        client.load_model("m", headers=API)
    assert refused.value.status() == "403"
    client.load_model("m", headers=ADMIN)
    assert client.is_model_ready("m", headers=API)


# ---- secrets stay secret ---------------------------------------------------------------
def test_tokens_appear_in_no_log_and_no_answer(clients, caplog):
    caplog.set_level(logging.DEBUG)
    guess = "Bearer guessed-token-5d1e"
    bodies = []
    for config in ("admin token", "both tokens"):
        for endpoint in (LOAD_UNKNOWN, API_ENDPOINTS["v2 model metadata"]):
            for authorization in (None, guess, *CREDENTIALS.values()):
                response = send(clients[config], endpoint, authorization)
                bodies.append(response.text + str(response.headers))
    assert "access denied" in caplog.text  # the refusals are logged...
    for secret in (ADMIN_TOKEN, API_TOKEN, "guessed-token-5d1e"):
        assert secret not in caplog.text  # ...without credentials
        assert not any(secret in body for body in bodies)
