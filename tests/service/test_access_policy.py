"""The access policy without a server: the level of each method and path, the loopback
test, Bearer parsing, token configuration, and agreement with the app's real routing (no
path reaches an admin endpoint, or with an API token any non-open endpoint, without
credentials; hypothesis searches for one)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from starlette.testclient import TestClient

from layerserve.service.access import AccessPolicy, bearer_token, classify, is_loopback
from layerserve.service.api.app import create_app
from layerserve.service.errors import Forbidden, InsufficientScope, InvalidToken, Unauthorized
from layerserve.service.settings import Settings as ServiceSettings

pytestmark = pytest.mark.parallel_safe

# ---- classify() ------------------------------------------------------------------------
CLASSIFY = [
    # admin: upload, delete, download, export, benchmark, load/unload
    ("POST", "/v1/models/m", "admin"),
    ("DELETE", "/v1/models/m", "admin"),
    ("DELETE", "/v1/models/m/versions/2", "admin"),
    ("GET", "/v1/models/m/onnx", "admin"),
    ("HEAD", "/v1/models/m/onnx", "admin"),
    ("GET", "/v1/models/m/versions/2/onnx", "admin"),
    ("POST", "/v1/models/m/onnx", "admin"),  # an admin-only path, whatever the method
    ("POST", "/v1/export", "admin"),
    ("GET", "/v1/export", "admin"),
    ("POST", "/v1/models/m:benchmark", "admin"),
    ("POST", "/v1/models/m/versions/2:benchmark", "admin"),
    ("POST", "/v1/models/m/labels/stable:benchmark", "admin"),
    ("GET", "/v1/models/m:benchmark", "admin"),
    ("POST", "/v1/models/m:predict:benchmark", "admin"),
    ("POST", "/v2/repository/models/m/load", "admin"),
    ("POST", "/v2/repository/models/m/unload", "admin"),
    ("GET", "/v2/repository/models/m/load", "admin"),
    # trailing slashes (routing redirects them) and odd upload names
    ("POST", "/v1/models/m/", "admin"),
    ("POST", "/v1/models/m:benchmark/", "admin"),
    ("GET", "/v1/models/m/onnx/", "admin"),
    ("POST", "/v2/repository/models/m/load//", "admin"),
    ("POST", "/v1/export/", "admin"),
    ("POST", "/v1/models/m:", "admin"),  # no TF Serving method: the upload route
    ("POST", "/v1/models/:m", "admin"),
    ("PUT", "/v1/models/m", "admin"),
    ("PATCH", "/v1/models/m/versions/2", "admin"),
    ("delete", "/v1/models/m", "admin"),
    # api: inference, metadata, inspection, statistics, repository index, unknown paths
    ("GET", "/v1/models/m", "api"),
    ("HEAD", "/v1/models/m", "api"),
    ("GET", "/v1/models/m/versions/2", "api"),
    ("GET", "/v1/models/m/versions/onnx", "api"),  # version "onnx" of model m
    ("GET", "/v1/models/onnx", "api"),  # a model named "onnx"
    ("GET", "/v1/models/export", "api"),
    ("GET", "/v1/models", "api"),
    ("POST", "/v1/models/m:predict", "api"),
    ("POST", "/v1/models/m/versions/2:predict", "api"),
    ("POST", "/v1/models/m/labels/stable:predict", "api"),
    ("POST", "/v1/models/m:classify", "api"),
    ("POST", "/v1/models/m:mask", "api"),
    ("POST", "/v1/models/m/versions/2:validate", "api"),
    ("POST", "/v1/models/m:benchmark:predict", "api"),  # routed to :predict of "m:benchmark"
    ("POST", "/v1/shapes", "api"),
    ("GET", "/v1/models/m/metadata", "api"),
    ("GET", "/v2/models/m", "api"),
    ("POST", "/v2/models/m/infer", "api"),
    ("POST", "/v2/models/m/versions/2/infer", "api"),
    ("GET", "/v2/models/stats", "api"),
    ("GET", "/v2/models/m/config", "api"),
    ("POST", "/v2/repository/index", "api"),
    ("POST", "/v2/repository/models/m", "api"),
    ("GET", "/", "api"),
    ("GET", "", "api"),
    ("GET", "/nope", "api"),
    ("GET", "/V1/models/m/onnx", "api"),  # routes are case-sensitive: no route, 404
    ("GET", "/v2/health", "api"),
    # open: server metadata, health, metrics, API docs
    ("GET", "/v2", "open"),
    ("GET", "/v2/", "open"),
    ("GET", "/v2/health/live", "open"),
    ("GET", "/v2/health/ready", "open"),
    ("HEAD", "/v2/health/ready/", "open"),
    ("GET", "/metrics", "open"),
    ("GET", "/docs", "open"),
    ("GET", "/docs/oauth2-redirect", "open"),
    ("GET", "/redoc", "open"),
    ("GET", "/docs/static/swagger-ui-bundle.js", "open"),
    ("GET", "/docs/static/x/y", "api"),  # one segment only: no such asset route
    ("GET", "/openapi.json", "open"),
]


@pytest.mark.parametrize(("method", "path", "level"), CLASSIFY)
def test_classify(method, path, level):
    assert classify(method, path) == level


# ---- is_loopback() -------------------------------------------------------------------
LOOPBACK = [
    ("127.0.0.1", True),
    ("127.255.0.9", True),
    ("::1", True),
    ("::ffff:127.0.0.1", True),
    ("10.0.0.5", False),
    ("203.0.113.7", False),
    ("0.0.0.0", False),
    ("::", False),
    ("2001:db8::1", False),
    ("::ffff:10.0.0.5", False),
    ("localhost", False),  # a name, not an address: not trusted
    ("testclient", False),
    ("", False),
    (None, False),  # a Unix socket peer
]


@pytest.mark.parametrize(("host", "expected"), LOOPBACK)
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


# ---- bearer_token() ------------------------------------------------------------------
BEARER = [
    (b"Bearer abc", b"abc"),
    (b"bearer abc", b"abc"),
    (b"BEARER abc", b"abc"),
    (b"Bearer   abc  ", b"abc"),
    (b"Bearer a.b-c_d~e+f/g==", b"a.b-c_d~e+f/g=="),
]


@pytest.mark.parametrize(("header", "token"), BEARER)
def test_bearer_token(header, token):
    assert bearer_token(header, "admin token") == token


BEARER_REFUSED = [
    (None, "no Authorization header"),
    (b"", "Authorization header is empty"),
    (b"   ", "Authorization header is empty"),
    (b"Basic dXNlcjpwYXNz", "uses the 'Basic' scheme"),
    (b"Token abc", "uses the 'Token' scheme"),
    (b"Bearer", "Bearer token is empty"),
    (b"Bearer    ", "Bearer token is empty"),
    (b"Bearerabc", "uses the 'Bearerabc' scheme"),
    ("Bé abc".encode(), "uses an unrecognised scheme"),
]


@pytest.mark.parametrize(("header", "fragment"), BEARER_REFUSED)
def test_bearer_token_refused(header, fragment):
    with pytest.raises(Unauthorized) as caught:
        bearer_token(header, "admin token")
    message = str(caught.value)
    assert "needs 'Authorization: Bearer <admin token>'" in message
    assert fragment in message
    assert "dXNlcjpwYXNz" not in message


# ---- AccessPolicy.check() for clients the live servers cannot be ---------------------
NO_ADMIN_TOKEN = AccessPolicy.from_secrets(None, "api")
ADMIN_TOKEN = AccessPolicy.from_secrets("admin", None)
BOTH_TOKENS = AccessPolicy.from_secrets("admin", "api")
CHECKS = [
    (NO_ADMIN_TOKEN, "::1", None, None),
    (NO_ADMIN_TOKEN, "127.0.0.2", None, None),
    (NO_ADMIN_TOKEN, "::ffff:127.0.0.1", None, None),
    (NO_ADMIN_TOKEN, "10.0.0.5", None, Forbidden),
    (NO_ADMIN_TOKEN, "10.0.0.5", b"Bearer api", Forbidden),  # the API token is no admin token
    (NO_ADMIN_TOKEN, None, None, Forbidden),
    (ADMIN_TOKEN, "10.0.0.5", b"Bearer admin", None),
    (ADMIN_TOKEN, None, b"Bearer admin", None),
    (ADMIN_TOKEN, "127.0.0.1", None, Unauthorized),  # loopback needs the token too
    # a token that is none of the server's: the caller is not identified (RFC 6750 3.1)
    (ADMIN_TOKEN, "127.0.0.1", b"Bearer admi", InvalidToken),
    (ADMIN_TOKEN, "127.0.0.1", b"Bearer admin2", InvalidToken),
    (ADMIN_TOKEN, "127.0.0.1", b"Bearer ADMIN", InvalidToken),
    # the API token is a caller identified, whose token does not reach admin endpoints
    (BOTH_TOKENS, "127.0.0.1", b"Bearer api", InsufficientScope),
    (BOTH_TOKENS, "127.0.0.1", b"Bearer admin", None),
]


@pytest.mark.parametrize(
    ("policy", "header", "error"),
    [
        (BOTH_TOKENS, b"Bearer api", None),
        (BOTH_TOKENS, b"Bearer admin", None),
        (BOTH_TOKENS, b"Bearer nope", InvalidToken),
        (BOTH_TOKENS, None, Unauthorized),
    ],
)
def test_api_check(policy, header, error):
    if error is None:
        policy.check("api", header, "10.0.0.5")
    else:
        with pytest.raises(error) as caught:
            policy.check("api", header, "10.0.0.5")
        assert type(caught.value) is error


@pytest.mark.parametrize(("policy", "host", "header", "error"), CHECKS)
def test_admin_check(policy, host, header, error):
    if error is None:
        policy.check("admin", header, host)
    else:
        with pytest.raises(error) as caught:
            policy.check("admin", header, host)
        assert type(caught.value) is error


def test_loopback_refusal_says_how_to_allow_remote_clients():
    with pytest.raises(Forbidden, match="set LAYERSERVE_ADMIN_TOKEN"):
        NO_ADMIN_TOKEN.check("admin", None, "10.0.0.5")


@pytest.mark.parametrize(
    ("admin", "api"),
    [("", None), (None, ""), (" admin", None), ("admin\n", None), (None, "api\t")],
)
def test_empty_or_padded_tokens_are_refused_at_start(admin, api):
    variable = "LAYERSERVE_ADMIN_TOKEN" if admin is not None else "LAYERSERVE_API_TOKEN"
    with pytest.raises(ValueError, match=variable):
        AccessPolicy.from_secrets(admin, api)
    with pytest.raises(ValueError, match=variable):
        create_app(ServiceSettings(admin_token=admin, api_token=api))


# ---- agreement with the app's routes -------------------------------------------------
ROUTE_LEVELS = {
    ("GET", "/v2"): "open",
    ("GET", "/v2/health/live"): "open",
    ("GET", "/v2/health/ready"): "open",
    ("GET", "/metrics"): "open",
    ("GET", "/openapi.json"): "open",
    ("GET", "/docs"): "open",
    ("GET", "/docs/oauth2-redirect"): "open",
    ("GET", "/redoc"): "open",
    ("GET", "/docs/static/{name}"): "open",
    ("POST", "/v1/models/{name}"): "admin",
    ("DELETE", "/v1/models/{name}"): "admin",
    ("DELETE", "/v1/models/{name}/versions/{version}"): "admin",
    ("GET", "/v1/models/{name}/onnx"): "admin",
    ("GET", "/v1/models/{name}/versions/{version}/onnx"): "admin",
    ("POST", "/v1/export"): "admin",
    ("POST", "/v1/models/{name}:benchmark"): "admin",
    ("POST", "/v1/models/{name}/versions/{version}:benchmark"): "admin",
    ("POST", "/v2/repository/models/{name}/load"): "admin",
    ("POST", "/v2/repository/models/{name}/unload"): "admin",
    ("GET", "/v2/models/stats"): "api",
    ("GET", "/v2/models/{name}/stats"): "api",
    ("GET", "/v2/models/{name}/versions/{version}/stats"): "api",
    ("GET", "/v2/models/{name}/ready"): "api",
    ("GET", "/v2/models/{name}/versions/{version}/ready"): "api",
    ("GET", "/v2/models/{name}"): "api",
    ("GET", "/v2/models/{name}/versions/{version}"): "api",
    ("GET", "/v2/models/{name}/config"): "api",
    ("GET", "/v2/models/{name}/versions/{version}/config"): "api",
    ("POST", "/v2/models/{name}/infer"): "api",
    ("POST", "/v2/models/{name}/versions/{version}/infer"): "api",
    ("POST", "/v2/repository/index"): "api",
    ("GET", "/v1/models"): "api",
    ("GET", "/v1/models/{name}"): "api",
    ("GET", "/v1/models/{name}/versions/{version}"): "api",
    ("GET", "/v1/models/{name}/labels/{label}"): "api",
    ("GET", "/v1/models/{name}/metadata"): "api",
    ("GET", "/v1/models/{name}/versions/{version}/metadata"): "api",
    ("GET", "/v1/models/{name}/labels/{label}/metadata"): "api",
    ("POST", "/v1/models/{name}:predict"): "api",
    ("POST", "/v1/models/{name}/versions/{version}:predict"): "api",
    ("POST", "/v1/models/{name}/labels/{label}:predict"): "api",
    ("POST", "/v1/models/{name}:{method}"): "api",
    ("POST", "/v1/models/{name}/versions/{version}:{method}"): "api",
    ("POST", "/v1/models/{name}/labels/{label}:{method}"): "api",
    ("POST", "/v1/models/{name}:mask"): "api",
    ("POST", "/v1/models/{name}/versions/{version}:mask"): "api",
    ("POST", "/v1/models/{name}:validate"): "api",
    ("POST", "/v1/models/{name}/versions/{version}:validate"): "api",
    ("POST", "/v1/shapes"): "api",
}
SAMPLE_PARAMS = {"name": "m", "version": "2", "label": "stable", "method": "predict"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(ServiceSettings(model_repository=tmp_path_factory.mktemp("empty")))


def app_routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every route: the documented ones from the OpenAPI
    document, the undocumented ones (hot paths, docs) from the router."""
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    for route in app.routes:
        if isinstance(route, Route):
            routes |= {(m, route.path_format) for m in route.methods or () if m != "HEAD"}
    return sorted(routes)


def test_every_route_of_the_app_has_the_level_of_the_policy(app):
    """Adding a route means adding it here; it fails if its path classifies wrongly."""
    routes = app_routes(app)
    unknown = [r for r in routes if r not in ROUTE_LEVELS]
    assert not unknown, f"routes without an expected access level: {unknown}"
    wrong = {}
    for method, template in routes:
        path = re.sub(r"{(\w+)}", lambda m: SAMPLE_PARAMS[m.group(1)], template)
        for verb in (method, "HEAD") if method == "GET" else (method,):
            if classify(verb, path) != ROUTE_LEVELS[method, template]:
                wrong[verb, path] = classify(verb, path)
    assert not wrong


# Paths built from the pieces of the real routes, in any order, to find one that the
# router sends to an endpoint of a higher level than the policy gives its path.
SEGMENTS = st.sampled_from(
    "v1 v2 models m 2 versions labels stable onnx load unload repository export index "
    "health live ready metadata config stats infer metrics docs shapes . .. %3A".split()
    + [""]
)
SUFFIXES = st.sampled_from(["", ":benchmark", ":predict", ":mask", ":", "::benchmark", ":x:"])
METHODS = st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS"])
NAMES = st.text(st.sampled_from("mx2:._-~%"), min_size=1, max_size=6)


@st.composite
def requests(draw) -> tuple[str, str]:
    """(method, path): pieces of routes in any order, or a route with odd parameters."""
    if draw(st.booleans()):
        method = draw(METHODS)
        segments = draw(st.lists(SEGMENTS, min_size=1, max_size=6))
        path = "/" + "/".join(segments) + draw(SUFFIXES)
    else:
        method, template = draw(st.sampled_from(sorted(ROUTE_LEVELS)))
        method = draw(st.one_of(st.just(method), METHODS))
        path = re.sub(r"{\w+}", lambda _: draw(NAMES), template)
    return method, path + draw(st.sampled_from(["", "/"]))


class RouteRecorder:
    """The app, remembering the route the router chose (Starlette puts it in the scope)."""

    def __init__(self, app) -> None:
        self.app = app
        self.plain = {r.endpoint: r for r in app.routes if isinstance(r, Route)}
        self.reached: tuple[str, str] | None = None

    async def __call__(self, scope, receive, send) -> None:
        self.reached = None
        await self.app(scope, receive, send)
        route = scope.get("route") or self.plain.get(scope.get("endpoint"))
        method = "GET" if scope["method"] == "HEAD" else scope["method"]  # HEAD is a GET's
        if route is not None and method in (route.methods or ()):
            self.reached = (method, route.path_format)


@pytest.fixture(scope="module")
def anonymous_remote_clients(tmp_path_factory):
    """Two apps seen from 10.0.0.5 without credentials: one without tokens, one with
    both."""
    clients = {}
    for tokens in ("none", "both"):
        config = ServiceSettings(
            model_repository=tmp_path_factory.mktemp(tokens),
            admin_token="admin-secret" if tokens == "both" else None,
            api_token="api-secret" if tokens == "both" else None,
        )
        recorder = RouteRecorder(create_app(config))
        client = TestClient(recorder, raise_server_exceptions=False, client=("10.0.0.5", 1234))
        clients[tokens] = (recorder, client)
    return clients


@settings(max_examples=300)
@given(request=requests())
def test_no_path_reaches_an_endpoint_above_its_level(anonymous_remote_clients, request):
    method, path = request
    allowed = {"none": ("open", "api"), "both": ("open",)}
    for tokens, (recorder, client) in anonymous_remote_clients.items():
        response = client.request(method, "http://testserver" + path.replace("%", "%25"))
        if recorder.reached is not None:
            level = ROUTE_LEVELS[recorder.reached]
            assert level in allowed[tokens], (tokens, method, path, recorder.reached)
        else:
            assert response.status_code not in (200, 201), (tokens, method, path)


@pytest.mark.parametrize(
    ("host", "admin_token", "warns"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("127.0.0.1", None, False),
        ("0.0.0.0", "t", False),
    ],
)
def test_serving_beyond_loopback_without_admin_token_warns(
    caplog, tmp_path, host, admin_token, warns
):
    create_app(ServiceSettings(model_repository=tmp_path, host=host, admin_token=admin_token))
    warned = [r for r in caplog.records if "set LAYERSERVE_ADMIN_TOKEN there" in r.getMessage()]
    assert bool(warned) is warns
