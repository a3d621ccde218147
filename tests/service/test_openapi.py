"""The OpenAPI document: checked in and current, complete for every operation, and truthful.

Completeness is checked on the generated document, operation by operation; truthfulness
by sending the documented request examples of the inference endpoints to a real server
(the session's demo repository) and validating its answers against the documented
response schema (the pydantic models the schema was generated from) and examples, and
the documented 401/403 answers to a server with both tokens set. Names are readable: the
operation ids and the component names, and the security of each operation follows
``service.access.classify``.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import running_server
from pydantic import BaseModel, TypeAdapter, ValidationError

from layerserve.service.access import classify
from layerserve.service.api.openapi import COMMAND, build_openapi, drift, main, render
from layerserve.service.api.schemas import OPERATION_PREFIXES
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

CHECKED_IN = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
DOCUMENT = build_openapi()
ERROR_SCHEMA = "ErrorResponse"
BODY_METHODS = {"post", "put", "patch"}
# Path parameters without a documented example (the demo repository has these).
FALLBACK_PARAMETERS = {"name": "mlp", "version": "1", "label": "latest", "method": "predict"}
# Operations that run a model on the request: their examples are sent to the server.
INFERENCE_SUFFIXES = ("/infer", ":{method}", ":predict", ":validate", ":mask")
RTOL, ATOL = 1e-4, 1e-5

OPERATIONS = [
    pytest.param(method, path, operation, id=f"{method.upper()} {path}")
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def is_binary(media: dict[str, Any]) -> bool:
    return media.get("schema", {}).get("format") == "binary"


def has_example(media: dict[str, Any]) -> bool:
    if "example" in media or media.get("examples"):
        return True
    return bool(resolve(media.get("schema", {})).get("examples"))


def is_error_schema(schema: dict[str, Any]) -> bool:
    """``ErrorResponse``, or a more specific component of the same ``{"error": str}`` shape
    (e.g. one that also lists every problem)."""
    if schema.get("$ref", "").rsplit("/", 1)[-1] == ERROR_SCHEMA:
        return True
    component = resolve(schema) if "$ref" in schema else {}
    error = component.get("properties", {}).get("error", {})
    return error.get("type") == "string" and "error" in component.get("required", [])


def successes(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {code: r for code, r in operation["responses"].items() if code.startswith("2")}


def errors(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        code: r
        for code, r in operation["responses"].items()
        if code[0] in "45" or code == "default"
    }


def auto_summary(operation: dict[str, Any], method: str, path: str) -> str:
    """The summary FastAPI makes up from the function name when none is given (the
    operation id is that name, after a protocol's prefix)."""
    name = operation["operationId"]
    for prefix in OPERATION_PREFIXES.values():
        name = name.removeprefix(f"{prefix}_")
    return name.replace("_", " ").title()


# ---- the checked-in file --------------------------------------------------------------
def test_checked_in_document_is_current():
    generated = render(DOCUMENT)
    current = CHECKED_IN.read_text(encoding="utf-8") if CHECKED_IN.is_file() else ""
    assert current == generated, (
        f"{CHECKED_IN} is out of date; regenerate it from the repository root with "
        f"`{COMMAND}`.\n{drift(generated, current, CHECKED_IN)}"
    )


def test_the_server_serves_the_generated_document(server_url):
    assert httpx.get(server_url + "/openapi.json").json() == DOCUMENT


@pytest.mark.parametrize("path", ["/v2/health/ready/", "/v2/models/mlp/", "/v2/models/mlp/infer/"])
def test_a_trailing_slash_is_no_route_and_no_redirect(server_url, path):
    """No 307 whose Location the client's Host header would write."""
    for method in ("GET", "POST"):
        response = httpx.request(method, server_url + path, headers={"Host": "evil.example"})
        assert response.status_code in (404, 405), response.text
        assert "location" not in response.headers
        assert response.json()["error"]


def test_check_mode_reports_drift_and_the_command(tmp_path, capsys):
    target = tmp_path / "openapi.json"
    assert main(["--check", "-o", str(target)]) == 1
    assert f"does not exist; generate it with: {COMMAND}" in capsys.readouterr().err
    target.write_text(render({**DOCUMENT, "paths": {}}), encoding="utf-8")
    assert main(["--check", "-o", str(target)]) == 1
    message = capsys.readouterr().err
    assert COMMAND in message and '+  "paths": {' in message
    assert main(["-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render(DOCUMENT)
    assert main(["--check", "-o", str(target)]) == 0


# ---- every operation is documented ----------------------------------------------------
@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS)
def test_operation_has_a_summary_or_description(method, path, operation):
    described = operation.get("description", "").strip()
    named = operation.get("summary", "") not in ("", auto_summary(operation, method, path))
    assert described or named, "give the route a docstring, description= or summary="


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS)
def test_success_response_has_a_schema_and_an_example(method, path, operation):
    media = [m for r in successes(operation).values() for m in r.get("content", {}).values()]
    assert media, "no success response with content"
    for item in media:
        assert item.get("schema"), f"a success media type has no schema: {item}"
    documented = [m for m in media if has_example(m) or is_binary(m)]
    assert documented, "no success response has an example (media type or schema examples)"


@pytest.mark.parametrize(
    ("method", "path", "operation"), [p for p in OPERATIONS if p.values[0] in BODY_METHODS]
)
def test_request_body_has_a_schema_and_an_example(method, path, operation):
    body = operation.get("requestBody")
    assert body, "no requestBody (declare it with a model, Body(...) or openapi_extra)"
    media = body.get("content", {})
    assert media and all(m.get("schema") for m in media.values()), f"a schema is missing: {body}"
    assert any(has_example(m) for m in media.values()), "no request example"


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS)
def test_error_responses_use_the_error_schema(method, path, operation):
    documented = errors(operation)
    assert documented, "no error response documented (use schemas.error_responses)"
    for code, response in documented.items():
        schemas = [m.get("schema", {}) for m in response.get("content", {}).values()]
        assert len(schemas) == 1 and is_error_schema(schemas[0]), (
            f"{code} answers {schemas}, not {ERROR_SCHEMA} (see schemas.error_responses)"
        )


def test_every_tag_is_described():
    used = {
        tag for item in DOCUMENT["paths"].values() for op in item.values() for tag in op["tags"]
    }
    described = {tag["name"] for tag in DOCUMENT.get("tags", []) if tag.get("description")}
    assert used <= described, f"tags without a description: {sorted(used - described)}"


# ---- the documented examples are true -------------------------------------------------
def models_by_name() -> dict[str, type[BaseModel]]:
    """The pydantic models of the API modules, by the name the components use."""
    found: dict[str, type[BaseModel]] = {}
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("layerserve.service.api."):
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, BaseModel):
                    found.setdefault(value.__name__, value)
    return found


def validate(schema: dict[str, Any], text: bytes) -> None:
    """Validate ``text`` against a documented schema: one component or a union of them."""
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    models = models_by_name()
    failures = []
    for option in options:
        assert "$ref" in option, f"document the answer with a pydantic model, not {option}"
        name = option["$ref"].rsplit("/", 1)[1]
        assert name in models, f"no pydantic model named {name} in layerserve.service.api"
        try:
            TypeAdapter(models[name]).validate_json(text, strict=True)
            return
        except ValidationError as exc:
            failures.append(f"{name}: {exc}")
    raise AssertionError("the answer does not fit the documented schema:\n" + "\n".join(failures))


def assert_matches(actual: Any, expected: Any, where: str = "body") -> None:
    if isinstance(expected, float) or isinstance(actual, float):
        assert math.isclose(actual, expected, rel_tol=RTOL, abs_tol=ATOL), where
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            assert_matches(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, where


def url_path(path: str, operation: dict[str, Any]) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            name = parameter["name"]
            value = parameter["schema"].get("examples", [FALLBACK_PARAMETERS.get(name)])[0]
            path = path.replace("{" + name + "}", str(value))
    return path


def named_examples(media: dict[str, Any]) -> dict[str, Any]:
    """A media type's examples by name: its ``examples``, ``example`` or its schema's."""
    if media.get("examples"):
        return {name: example["value"] for name, example in media["examples"].items()}
    if "example" in media:
        return {"example": media["example"]}
    listed = resolve(media.get("schema", {})).get("examples", [])
    return {f"schema-example-{i}": value for i, value in enumerate(listed)}


def request_examples() -> list[Any]:
    cases = []
    for path, item in DOCUMENT["paths"].items():
        operation = item.get("post")
        if operation is None or not path.endswith(INFERENCE_SUFFIXES):
            continue
        media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        examples = named_examples(media) or {"none": None}
        for name, value in examples.items():
            cases.append(pytest.param(path, operation, name, value, id=f"{path} {name}"))
    return cases


def json_success(operation: dict[str, Any]) -> dict[str, Any]:
    return operation["responses"]["200"]["content"]["application/json"]


@pytest.mark.parametrize(("path", "operation", "name", "example"), request_examples())
def test_inference_request_examples_get_the_documented_answer(
    server_url, path, operation, name, example
):
    assert example is not None, "the operation has no JSON request example"
    response = httpx.post(server_url + url_path(path, operation), json=example)
    assert response.status_code == 200, response.text
    documented = json_success(operation)
    validate(documented["schema"], response.content)
    # A response example named like the request example is its documented answer.
    answer = documented.get("examples", {}).get(name)
    if answer is not None:
        assert_matches(response.json(), answer["value"])


JSON_GETS = [
    p
    for p in OPERATIONS
    if p.values[0] == "get"
    and "application/json" in p.values[2]["responses"].get("200", {}).get("content", {})
]


@pytest.mark.parametrize(("method", "path", "operation"), JSON_GETS)
def test_get_answers_fit_the_documented_schema(server_url, method, path, operation):
    response = httpx.get(server_url + url_path(path, operation))
    assert response.status_code == 200, response.text
    validate(json_success(operation)["schema"], response.content)


GETS = [p for p in OPERATIONS if p.values[0] == "get"]


@pytest.mark.parametrize(("method", "path", "operation"), GETS)
def test_every_get_answers_head_with_its_status_and_headers(server_url, method, path, operation):
    """RFC 9110 9.3.2: what GET answers, without the content (load balancers and uptime
    checks probe with HEAD)."""
    url = server_url + url_path(path, operation)
    got, head = httpx.get(url), httpx.head(url)
    assert head.status_code == got.status_code
    assert head.content == b""
    assert head.headers.get("content-type") == got.headers.get("content-type")
    if path != "/metrics":  # (its counters may grow between the two requests)
        assert head.headers.get("content-length") == got.headers.get("content-length")


# ---- names, security and the access answers --------------------------------------------
OPERATION_ID = re.compile(r"[a-z][a-z0-9_]*")
SCHEMA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
ADMIN, API = "admin-token-for-openapi", "api-token-for-openapi"
# A few operations' levels written out by hand, besides the rule (access.classify).
KNOWN_LEVELS = {
    ("post", "/v1/models/{name}"): "admin",
    ("delete", "/v1/models/{name}/versions/{version}"): "admin",
    ("post", "/v2/repository/models/{name}/load"): "admin",
    ("post", "/v2/models/{name}/infer"): "api",
    ("post", "/v1/models/{name}:{method}"): "api",
    ("get", "/v2/health/ready"): "open",
    ("get", "/metrics"): "open",
}
SECURITY_BY_LEVEL = {
    "admin": [{"adminToken": []}],
    "api": [{"apiToken": []}, {"adminToken": []}],
}


def test_the_document_is_valid_openapi():
    validator = pytest.importorskip(
        "openapi_spec_validator", reason="openapi-spec-validator is not installed"
    )
    validator.validate(DOCUMENT)


def test_operation_ids_are_readable_and_unique():
    ids = [operation["operationId"] for _, _, operation in (p.values for p in OPERATIONS)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    unreadable = [i for i in ids if not OPERATION_ID.fullmatch(i)]
    assert not unreadable
    assert {"v2_infer", "tfserving_predict", "v2_model_metadata", "upload_model"} <= set(ids)


def test_schema_names_have_no_module_paths():
    names = list(DOCUMENT["components"]["schemas"])
    assert [n for n in names if not SCHEMA_NAME.fullmatch(n)] == []


def test_both_tokens_are_bearer_schemes():
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert set(schemes) == {"adminToken", "apiToken"}
    for name, variable in (("adminToken", "ADMIN"), ("apiToken", "API")):
        assert schemes[name]["type"] == "http" and schemes[name]["scheme"] == "bearer"
        assert f"LAYERSERVE_{variable}_TOKEN" in schemes[name]["description"]


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS)
def test_security_and_access_errors_follow_the_access_level(method, path, operation):
    level = classify(method.upper(), path)
    assert KNOWN_LEVELS.get((method, path), level) == level
    if level == "open":
        assert "security" not in operation and not {"401", "403"} & set(operation["responses"])
        return
    assert operation["security"] == SECURITY_BY_LEVEL[level]
    # an API operation takes either token: a token that is neither is a 401, never a 403
    for status in ("401", "403") if level == "admin" else ("401",):
        (media,) = operation["responses"][status]["content"].values()
        assert is_error_schema(media["schema"]) and media["example"]["error"]
    if level == "api":
        assert "403" not in operation["responses"]


@pytest.fixture(scope="module")
def guarded_url(tmp_path_factory):
    settings = Settings(
        model_repository=tmp_path_factory.mktemp("empty"), admin_token=ADMIN, api_token=API
    )
    with running_server(settings) as url:
        yield url


def test_documented_access_answers_are_the_servers(guarded_url):
    """Every admin and API operation of a server with both tokens set: no token gives
    the documented 401, a wrong one a 401 too (RFC 6750's invalid_token), and the API
    token the documented 403 where only the admin token is accepted."""
    checked = 0
    for method, path, operation in (p.values for p in OPERATIONS):
        if "security" not in operation:
            continue
        url = guarded_url + url_path(path, operation)
        documented = operation["responses"]["401"]["content"]["application/json"]
        response = httpx.request(method, url)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json() == documented["example"], (method, path)
        wrong = httpx.request(method, url, headers={"Authorization": "Bearer not-a-token"})
        assert wrong.status_code == 401, (method, path, wrong.text)
        assert wrong.headers["www-authenticate"].endswith('error="invalid_token"')
        accepted = {next(iter(s)) for s in operation["security"]}
        with_api = httpx.request(method, url, headers={"Authorization": f"Bearer {API}"})
        assert (with_api.status_code != 403) == ("apiToken" in accepted), (method, path)
        if "apiToken" not in accepted:
            documented = operation["responses"]["403"]["content"]["application/json"]
            assert with_api.json() == documented["example"], (method, path)
        checked += 1
    assert checked >= 30
