"""The API documentation pages, served without internet: ``/docs`` (Swagger UI) and
``/redoc`` (ReDoc) load their scripts and styles from files vendored in this package
(``static/``, with their licences), and the OpenAPI document states how to authenticate.

Vendored, unmodified, from the npm registry: swagger-ui-dist 5.35.0 (Apache-2.0) and
redoc 2.5.4 (MIT). To update, replace the files in ``static/`` with those of a newer
release and the versions here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.routing import APIRoute

from layerserve.service.access import Level, classify
from layerserve.service.api.errors import error_response
from layerserve.service.api.schemas import OPERATION_PREFIXES, ErrorResponse

SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"
STATIC = Path(__file__).with_name("static")
ASSETS_PATH = "/docs/static"  # assets under it must be open, as /docs and /redoc are
# The files the pages load, with their media types (not guessed from the system's
# mimetypes table, which differs between machines).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
ASSET_CACHE = "public, max-age=86400"

ADMIN_SCHEME, API_SCHEME = "adminToken", "apiToken"
SECURITY_SCHEMES = {
    ADMIN_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "LAYERSERVE_ADMIN_TOKEN, for upload, delete, load/unload, ONNX "
        "download, export and benchmark. While it is unset, these endpoints answer "
        "loopback clients only, without a token.",
    },
    API_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "LAYERSERVE_API_TOKEN, for inference, metadata and everything "
        "else that is not open (the admin token is accepted too). While it is unset, "
        "these endpoints need no token.",
    },
}
# Who may call an operation, by access level: any one of the listed schemes.
SECURITY: dict[Level, list[dict[str, list[str]]]] = {
    "admin": [{ADMIN_SCHEME: []}],
    "api": [{API_SCHEME: []}, {ADMIN_SCHEME: []}],
    "open": [],
}
# The 401 and 403 answers of each level: (description, example message). RFC 6750: a
# token that is none of the server's is a 401 (with error="invalid_token"), as no token
# is; a 403 is for a caller identified whose token does not reach the endpoint.
ACCESS_ERRORS: dict[Level, dict[int, tuple[str, str]]] = {
    "admin": {
        401: (
            "No bearer token, or one that is not the admin token (WWW-Authenticate: Bearer "
            'realm="layerserve", error="invalid_token"), while LAYERSERVE_ADMIN_TOKEN is set',
            "this endpoint needs 'Authorization: Bearer <admin token>'; the request has no "
            "Authorization header",
        ),
        403: (
            "The API token (an admin endpoint needs the admin token), or a non-loopback "
            "client while LAYERSERVE_ADMIN_TOKEN is unset",
            "the API token does not reach this endpoint: it needs the admin token",
        ),
    },
    "api": {
        401: (
            "No bearer token, or one that is neither the API token nor the admin token "
            '(WWW-Authenticate: Bearer realm="layerserve", error="invalid_token"), while '
            "LAYERSERVE_API_TOKEN is set",
            "this endpoint needs 'Authorization: Bearer <API token>'; the request has no "
            "Authorization header",
        ),
    },
}


def operation_id(route: APIRoute) -> str:
    """``v2_model_metadata``, ``tfserving_predict``, ``upload_model``: the route function's
    name, after the protocol's prefix for the two protocols whose routes share names."""
    prefix = next((OPERATION_PREFIXES[t] for t in route.tags if t in OPERATION_PREFIXES), "")
    return f"{prefix}_{route.name}" if prefix else route.name


def install(app: FastAPI) -> None:
    """The documentation pages, their assets, and the security of every operation in the
    OpenAPI document (for an app created with ``docs_url=None, redoc_url=None``)."""
    app.add_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    app.add_route(ASSETS_PATH + "/{name}", asset, methods=["GET"], include_in_schema=False)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_security(generate())  # FastAPI keeps the document it returns
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


async def swagger_ui(request: Request) -> HTMLResponse:
    root, app = _root(request), request.app
    return get_swagger_ui_html(
        openapi_url=root + app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # no call to an online validator
    )


async def redoc(request: Request) -> HTMLResponse:
    root, app = _root(request), request.app
    return get_redoc_html(
        openapi_url=root + app.openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
        with_google_fonts=False,
    )


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:  # only the listed files: never a path from the request
        return error_response(
            404, f"no documentation asset {name!r}; the assets are {', '.join(ASSETS)}"
        )
    return FileResponse(
        STATIC / name, media_type=media_type, headers={"Cache-Control": ASSET_CACHE}
    )


def add_security(document: dict[str, Any]) -> None:
    """Both bearer schemes, and on each operation the schemes its access level takes
    (``service.access.classify``) with the 401 and 403 answers it can give."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            level = classify(method.upper(), path)
            if level == "open":
                continue
            operation["security"] = SECURITY[level]
            responses = operation.setdefault("responses", {})
            for status, (description, message) in ACCESS_ERRORS[level].items():
                responses[str(status)] = {
                    "description": description,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"},
                            "example": {"error": message},
                        }
                    },
                }
            operation["responses"] = dict(sorted(responses.items(), key=_status_order))


def _status_order(item: tuple[str, Any]) -> tuple[bool, str]:
    return (not item[0].isdigit(), item[0])  # "default" last
