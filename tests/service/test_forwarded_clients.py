"""Who counts as local for the admin endpoints when no admin token is set, on a real
uvicorn with clients connecting from several loopback addresses: one rule decides both
whether a peer is local and whether its forwarding headers are believed, so a same-host
proxy on 127.0.0.2 cannot pass remote clients through as admins."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from live_server import running_server, write_model

from layerserve import examples
from layerserve.service.access import client_address
from layerserve.service.settings import Settings

ADMIN = ("POST", "/v2/repository/models/no-such-model/load")  # 404 once let in, else 403


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("forwarded")
    write_model(root, "mlp", examples.mlp())
    with running_server(Settings(model_repository=root, access_log=True)) as url:
        yield url


def from_source(url: str, source: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.request(ADMIN[0], url + ADMIN[1], headers=headers)


CASES = [
    ("127.0.0.1", {}, 404),
    ("127.0.0.2", {}, 404),  # a local client on another loopback address
    ("127.0.0.1", {"X-Forwarded-For": "203.0.113.7"}, 403),
    ("127.0.0.2", {"X-Forwarded-For": "203.0.113.7"}, 403),  # the proxy on 127.0.0.2
    ("127.0.0.3", {"X-Forwarded-For": "127.0.0.1, 203.0.113.7"}, 403),  # forged first entry
    ("127.0.0.2", {"X-Forwarded-For": "203.0.113.7, 127.0.0.5"}, 403),  # two local hops
    ("127.0.0.2", {"X-Forwarded-For": "127.0.0.9"}, 404),  # forwarded from loopback
    ("127.0.0.2", {"Forwarded": 'for="[2001:db8::7]:4711";proto=http'}, 403),  # RFC 7239
    ("127.0.0.2", {"Forwarded": "for=127.0.0.1, for=198.51.100.2"}, 403),
    ("127.0.0.4", {"Forwarded": "for=unknown"}, 403),  # unparsable counts as remote
    ("127.0.0.2", {"X-Forwarded-For": "not-an-address"}, 403),
]


@pytest.mark.parametrize(("source", "headers", "status"), CASES)
def test_one_rule_for_local_clients_and_believed_proxies(server, source, headers, status):
    response = from_source(server, source, headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert "LAYERSERVE_ADMIN_TOKEN" in response.json()["error"]


def log_line(caplog: pytest.LogCaptureFixture, response: httpx.Response) -> str:
    """The access log line of ``response`` (written as its answer goes out)."""
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 2
    while not (lines := [r.getMessage() for r in caplog.records if request_id in r.getMessage()]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return lines[0]


def test_the_access_log_names_the_forwarded_client(server, caplog):
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    response = from_source(server, "127.0.0.2", {"X-Forwarded-For": "198.51.100.23"})
    assert log_line(caplog, response).endswith("client=198.51.100.23")


def test_a_remote_peer_cannot_claim_to_be_forwarded_from_loopback():
    assert client_address("203.0.113.7", [(b"x-forwarded-for", b"127.0.0.1")]) == "203.0.113.7"
    assert client_address("::1", [(b"x-forwarded-for", b"::1, 127.0.0.1")]) == "::1"


@pytest.mark.parametrize(
    ("forwarded", "named"),
    [
        ((b"x-forwarded-for", b"1.2.3.4 status=200 request_id=FORGED"), "unknown"),
        ((b"x-forwarded-for", b"\x1b[2J8.8.8.8"), "unknown"),
        ((b"forwarded", b'for="_hidden"'), "unknown"),
        ((b"forwarded", b"for=unknown"), "unknown"),
        ((b"x-forwarded-for", b"198.51.100.23:8443"), "198.51.100.23"),
        ((b"forwarded", b'for="[2001:db8::7]:4711"'), "2001:db8::7"),
    ],
)
def test_a_forwarded_hop_that_is_no_address_is_named_unknown(forwarded, named):
    assert client_address("127.0.0.1", [forwarded]) == named


def test_text_forged_into_a_forwarding_header_never_reaches_the_log(server, caplog):
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    forged = "1.2.3.4 status=200 request_id=FORGED"
    response = from_source(server, "127.0.0.2", {"X-Forwarded-For": forged})
    assert response.status_code == 403  # a remote client all the same
    line = log_line(caplog, response)
    assert line.endswith("client=unknown")
    assert "FORGED" not in line
