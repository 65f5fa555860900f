"""A bare HTTP/1.1 client on asyncio streams, for load generators on loopback.

httpx costs a generator about 1.5 ms of CPU per exchange (benchmarks/service_spike.py),
so on a small shared machine the generator, not the service, sets the pace. This
client does only what a crowd of presses needs: a pool of keep-alive connections
opened before the crowd comes, requests with a JSON body answered with a
Content-Length, and a Server-Sent Events stream read on a connection of its own
(chunked) until the caller has seen what it waits for. It parses nothing it does not
need, and is no general HTTP client.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}


class Pool:
    """``size`` keep-alive connections to one host, lent one exchange at a time."""

    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.size = size
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.Queue()
        self._open: list[asyncio.StreamWriter] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._open.append(writer)
        return reader, writer

    async def open(self) -> None:
        for connection in await asyncio.gather(*(self._connect() for _ in range(self.size))):
            self._idle.put_nowait(connection)

    async def close(self) -> None:
        for writer in self._open:
            writer.close()
        self._open.clear()

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> Answer:
        """One exchange on a pooled connection; a connection the server closed while
        idle is replaced and the request sent again on the new one."""
        reader, writer = await self._idle.get()
        try:
            for attempt in (1, 2):
                try:
                    writer.write(_head(method, path, self.host, headers, len(body)) + body)
                    answer = await _read_answer(reader)
                    break
                except (ConnectionError, asyncio.IncompleteReadError):
                    if attempt == 2:
                        raise
                    writer.close()
                    reader, writer = await self._connect()
            if answer.headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await self._connect()
            return answer
        finally:
            self._idle.put_nowait((reader, writer))

    @asynccontextmanager
    async def events(self, path: str, headers: dict[str, str]
                     ) -> AsyncIterator[AsyncIterator[dict[str, str]]]:
        """A Server-Sent Events stream on a connection of its own, closed on leaving:
        its events as dicts (``event``, ``data``, ``id``)."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(_head("GET", path, self.host, headers | {"Accept": "text/event-stream"},
                               None))
            status, found = await _read_head(reader)
            if status != 200:
                raise ConnectionError(f"GET {path}: {status}")
            chunked = found.get("transfer-encoding") == "chunked"
            yield events_of(_lines(_chunks(reader) if chunked else _raw(reader)))
        finally:
            writer.close()


def _head(method: str, path: str, host: str, headers: dict[str, str],
          length: int | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    status, headers = await _read_head(reader)
    if headers.get("transfer-encoding") == "chunked":
        body = b"".join([chunk async for chunk in _chunks(reader)])
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(status, headers, body)


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return
        yield chunk[:-2]


async def _raw(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read(65536):
        yield chunk


async def events_of(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, str]]:
    """The Server-Sent Events of a stream's lines, each a dict of its fields (event, id,
    data); comments skipped."""
    event: dict[str, str] = {}
    async for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            yield raw.rstrip(b"\r").decode()


async def first_event(pool: Pool, path: str, headers: dict[str, str],
                      wanted: Callable[[dict[str, str]], bool]) -> dict[str, str] | None:
    """The first event of a stream that ``wanted`` accepts; None if the stream ends."""
    async with pool.events(path, headers) as stream:
        async for event in stream:
            if wanted(event):
                return event
    return None
