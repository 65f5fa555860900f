"""The framing errors uvicorn answers itself, before the app is called: a plain-text 400
(not a problem document), listed in service/framing.py, and nothing changes in Redis or
the database. A websocket upgrade, which the service has no route for, is served as the
plain request it also is."""

import re
import socket
import time
from pathlib import Path

import pytest

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.persistence.repository import Repository
from couponsim.service.config import ServiceConfig

from .service_helpers import live_service, snapshot

UVICORN_DEFAULT_KEEP_ALIVE_S = 5
"""uvicorn's own timeout_keep_alive, which the service raises."""

ISSUE = b"POST /api/v1/coupons/issue HTTP/1.1\r\nHost: x\r\nX-User-ID: u1\r\n"
FRAMING_ERRORS = {
    "a bad request line": b"GARBAGE\r\n\r\n",
    "a header without a colon": b"GET /livez HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    "a control character in a header": b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "a bad chunk size": ISSUE + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
    "two Content-Lengths": ISSUE + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "Content-Length and chunked": ISSUE + b"Content-Length: 2\r\n"
                                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "a negative Content-Length": ISSUE + b"Content-Length: -1\r\n\r\n",
    "an HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


def _exchange(url: str, raw: bytes) -> tuple[bytes, bytes]:
    """Send ``raw`` on a fresh connection; the answer's head and body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(raw)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := connection.recv(65_536)):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        # the body may come in a packet of its own (a loaded machine splits them)
        while length and len(body) < int(length[1]) and (chunk := connection.recv(65_536)):
            body += chunk
    return head, body


def test_framing_errors_are_uvicorns_plain_400_and_change_nothing(tmp_path: Path) -> None:
    redis_url, db_url = f"fake://framing-{tmp_path.name}", f"sqlite:///{tmp_path / 'f.sqlite'}"
    repository = Repository.from_url(db_url)
    SyncDriver(connect(redis_url), redis_url, repository).run(
        lifecycle.open_event(CouponEvent("c1", stock=5), Variant.HARDENED))
    before = snapshot(redis_url, repository)
    with live_service(ServiceConfig(redis_url=redis_url, db_url=db_url), worker=False) as live:
        for why, raw in FRAMING_ERRORS.items():
            head, body = _exchange(live.url, raw)
            assert head.startswith(b"HTTP/1.1 400 "), why
            assert b"content-type: text/plain" in head.lower(), why
            assert body == b"Invalid HTTP request received.", why
        upgrade = _exchange(live.url, b"GET /livez HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                      b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        assert upgrade[0].startswith(b"HTTP/1.1 200 ") and upgrade[1] == b'{"ok":true}'
    assert snapshot(redis_url, repository) == before
    repository.engine.dispose()


@pytest.mark.slow
def test_an_idle_connection_outlives_uvicorns_default_keep_alive(tmp_path: Path) -> None:
    """A connection idle past uvicorn's default 5 s still serves the next request: the
    server does not close it under a client (or proxy) about to reuse it."""
    config = ServiceConfig(redis_url=f"fake://idle-{tmp_path.name}",
                           db_url=f"sqlite:///{tmp_path / 'i.sqlite'}")
    ask = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    with live_service(config, worker=False) as live:
        host, port = live.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(ask)
            assert connection.recv(65_536).startswith(b"HTTP/1.1 200 ")
            time.sleep(UVICORN_DEFAULT_KEEP_ALIVE_S + 1)
            connection.sendall(ask)
            assert connection.recv(65_536).startswith(b"HTTP/1.1 200 "), "closed while idle"
