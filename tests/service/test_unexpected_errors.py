"""An unexpected server fault is a JSON 500 that keeps the connection usable."""

from __future__ import annotations

import httpx
from live_server import running_server

from layerserve.service.settings import Settings


def add_faulty_route(app):
    @app.get("/test/fault")
    async def fault():
        raise RuntimeError("a bug, not a client mistake")


def test_unexpected_fault_is_a_json_500_and_the_keep_alive_connection_survives(repository):
    settings = Settings(model_repository=repository)
    with running_server(settings, customize=add_faulty_route) as url, httpx.Client() as client:
        response = client.get(url + "/test/fault")
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error; see the server log"}
        # the same pooled connection still serves the next request
        assert client.get(url + "/v2/health/live").json() == {"live": True}
        assert client.get(url + "/v2/models/mlp/ready").status_code == 200
