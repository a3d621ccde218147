"""``/docs`` and ``/redoc`` on a real server work without internet: the pages reference
only the server's own URLs, and every file they load is served from the package, byte
for byte the release that was vendored (sha256 of the npm registry's files)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
from live_server import running_server

from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

STATIC = Path(__file__).resolve().parents[2] / "service" / "api" / "static"
# sha256 of the files of swagger-ui-dist 5.35.0 and redoc 2.5.4 as published on npm.
RELEASED = {
    "swagger-ui-bundle.js": "e6a898692f2d768e807c3ba4626068a69a2c5dd960dd6c76f3e4d3a3de180af2",
    "swagger-ui.css": "5ed08757e53da3e026d6cbecc61fe5d43585c9560b302d534ad56692519a273d",
    "favicon-32x32.png": "3ed612f41e050ca5e7000cad6f1cbe7e7da39f65fca99c02e99e6591056e5837",
    "redoc.standalone.js": "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b",
}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
LICENCES = ["swagger-ui.LICENSE", "swagger-ui.NOTICE", "redoc.LICENSE"]
# src, href and ReDoc's spec-url attributes, and the URL the script gives SwaggerUIBundle.
REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|url: '([^']*)'""")
PAGES = {
    "/docs": {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"},
    "/redoc": {"redoc.standalone.js", "favicon-32x32.png"},
}


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_only_the_servers_own_files(server_url, page):
    response = httpx.get(server_url + page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    found = references(html)
    assert "/openapi.json" in found
    assets = {url.rsplit("/", 1)[1] for url in found if url != "/openapi.json"}
    assert assets == PAGES[page]
    for url in found:
        assert url.startswith("/"), url
        served = httpx.get(server_url + url)
        assert served.status_code == 200, url
        if url == "/openapi.json":
            continue
        name = url.rsplit("/", 1)[1]
        suffix = Path(name).suffix
        assert served.headers["content-type"].split(";")[0] == MEDIA_TYPES[suffix]
        assert hashlib.sha256(served.content).hexdigest() == RELEASED[name]
        assert served.content == (STATIC / name).read_bytes()


def test_swagger_ui_reads_the_servers_document(server_url):
    html = httpx.get(server_url + "/docs").text
    assert "url: '/openapi.json'" in html
    assert '"validatorUrl": null' in html  # Swagger UI's online validator is never called


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope.js", "no documentation asset 'nope.js'"),
        ("swagger-ui.LICENSE", "no documentation asset 'swagger-ui.LICENSE'"),
        ("..%2Fdocumentation.py", "no route for GET /docs/static/../documentation.py"),
        ("..", "no route for GET /docs/documentation.py"),
    ],
)
def test_only_the_listed_assets_are_served(server_url, name, message):
    suffix = "/documentation.py" if name == ".." else ""
    response = httpx.get(f"{server_url}/docs/static/{name}{suffix}")
    assert response.status_code == 404, response.text
    assert message in response.json()["error"]


def test_the_licences_ship_beside_the_files():
    assert "Apache License" in (STATIC / "swagger-ui.LICENSE").read_text()
    assert "SmartBear" in (STATIC / "swagger-ui.NOTICE").read_text()
    assert "MIT License" in (STATIC / "redoc.LICENSE").read_text()
    for name in RELEASED:
        if name.endswith(".js"):
            assert (STATIC / f"{name}.LICENSE.txt").is_file()


def test_the_pages_work_when_the_api_needs_a_token(tmp_path):
    """The pages and their files are open, as the OpenAPI document is: a browser sends no
    token for them."""
    settings = Settings(model_repository=tmp_path, api_token="secret", admin_token="admin")
    with running_server(settings) as url:
        for page, assets in PAGES.items():
            assert httpx.get(url + page).status_code == 200
            for name in assets:
                response = httpx.get(f"{url}/docs/static/{name}")
                assert response.status_code == 200, (name, response.text)
