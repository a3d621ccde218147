"""Fixtures of the service tests: one demo repository and one live server per session."""

from __future__ import annotations

import pytest
from live_server import demo_repository, running_server

from layerserve.service.settings import Settings


@pytest.fixture(scope="session")
def repository(tmp_path_factory):
    return demo_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="session")
def server_url(repository):
    settings = Settings(model_repository=repository, max_request_bytes=8 * 1024 * 1024)
    with running_server(settings) as url:
        yield url
