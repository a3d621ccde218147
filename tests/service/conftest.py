"""Fixtures of the service tests: one demo repository and one live server per session.

A service test is marked ``serial`` unless its module is marked ``parallel_safe``: most of
them time the server (drains, deadlines, restarts, stalls, overload), and run with the
machine to themselves (``pytest -m serial``), not beside other tests (``pytest -n``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_server import demo_repository, running_server

from layerserve.service.settings import Settings

SERVICE_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_TESTS in item.path.parents and not item.get_closest_marker("parallel_safe"):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def repository(tmp_path_factory):
    return demo_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="session")
def server_url(repository):
    settings = Settings(model_repository=repository, max_request_bytes=8 * 1024 * 1024)
    with running_server(settings) as url:
        yield url
