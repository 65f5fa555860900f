"""HTTP framing limits the app cannot enforce itself: a request's head (request line
and headers) is read whole by the server's parser before the app sees anything, and
uvicorn's httptools parser has no bound on it (a 64 MB header was read whole, and
the server grew by 124 MB). :class:`BoundedHeadProtocol` counts the head's bytes as
they arrive and answers 431 once they pass :data:`MAX_HEAD_BYTES`, closing the
connection, so memory holds at most the bound and one read of the socket.

Answers the server library gives itself, in plain text rather than a problem
document (the app is never called; tests/test_service_framing.py sends each):

- 400 ``Invalid HTTP request received.`` for a request httptools cannot parse: a bad
  request line, a header without a colon or with a control character, a bad chunk
  size, two ``Content-Length`` headers, ``Content-Length`` with chunked, a negative
  ``Content-Length``, an HTTP/2 preface;
- with the plain-asyncio server (h11), the same 400 for a head over
  :data:`MAX_HEAD_BYTES` as well (h11's ``max_incomplete_event_size``), not 431.

A websocket upgrade (the service has no websocket route) is served as the plain
request it also is.
"""

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from couponsim.service.problem import PROBLEM_JSON, TYPE_BASE

MAX_HEAD_BYTES = 16 * 1024
"""The request line and every header together (names, values, separators)."""

_REFUSAL = json.dumps({"type": TYPE_BASE + "headers-too-large",
                       "title": "The request's headers are too large", "status": 431,
                       "detail": f"at most {MAX_HEAD_BYTES} bytes of request line and headers",
                       "code": "headers-too-large"}).encode()
REFUSAL_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
               b"content-type: " + PROBLEM_JSON.encode() + b"\r\n"
               b"content-length: " + str(len(_REFUSAL)).encode() + b"\r\n"
               b"connection: close\r\n\r\n" + _REFUSAL)


class _HeadTooLarge(Exception):
    """Stops the parser inside its callback (httptools re-raises it as a parser error)."""


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head.

    Bytes fed while a head is incomplete are all head bytes, so they are counted
    after each read; a head that completes within one read is measured when its
    parsing ends. (A read that also carries the end of the previous request's body
    is counted whole: pipelined requests may be refused a little early.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head, self._head_bytes, self._refused = True, 0, False

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD_BYTES:
            self._refuse()
            raise _HeadTooLarge
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._in_head and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:               # the 431 has been sent for this request
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._refused = True
        self.transport.write(REFUSAL_431)
        self.transport.close()


KEEP_ALIVE_S = 75
"""How long an idle connection stays open. Longer than the idle timeout of the
proxies and load balancers in front of a service (60 s for nginx's and AWS's
defaults), so that the client side closes first: a server that closes first (uvicorn's
default is 5 s) races the next request sent on that connection, which then fails
with a reset the client cannot safely retry (a POST; httpx's ReadError in a test
whose connections idled while Redis restarted)."""


def server_options(plain_asyncio: bool = False) -> dict[str, Any]:
    """uvicorn's loop and parser, each with the head bound: uvloop and httptools with
    :class:`BoundedHeadProtocol`, or asyncio's loop and h11 (its own bound, answered
    400); either keeps idle connections for :data:`KEEP_ALIVE_S`."""
    if plain_asyncio:
        return {"loop": "asyncio", "http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
                "timeout_keep_alive": KEEP_ALIVE_S}
    return {"loop": "auto", "http": BoundedHeadProtocol, "timeout_keep_alive": KEEP_ALIVE_S}
