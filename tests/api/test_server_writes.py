"""Each answer leaves the server in one write (backend.api.server): head and body
together, in order, on a real uvicorn over a real socket; the answers are the ones
stock uvicorn gives."""

from __future__ import annotations

import asyncio
import http.client
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from backend.api.context import ApiContext
from backend.api.parties import PartyRegistry
from backend.api.server import CoalescingHttpToolsProtocol, CoalescingTransport
from backend.core.settings import Settings
from testkit.api_seed import seed
from tests.api.uvicorn_thread import ServerThread

#: What the real transports of the server under test were given, per connection.
WRITES: list[list[bytes]] = []


class _Spy:
    """A real transport, its writes noted in WRITES."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []
        WRITES.append(self.writes)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class SpiedCoalescing(CoalescingHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Spy(transport))  # type: ignore[arg-type]


REQUESTS = [
    ("GET", "/orders/1"),  # the buyer's order
    ("GET", "/orders/2"),  # another party's: 404
    ("GET", "/orders?limit=5"),
    ("GET", "/orders/1/telemetry?limit=3"),
    ("GET", "/orders/x"),  # 422
    ("GET", "/metrics"),
]


@pytest.fixture
def context(
    settings: Settings, factory: sessionmaker[Session], parties: PartyRegistry
) -> ApiContext:
    seed(factory, parties)
    return ApiContext(settings=settings, session_factory=factory, parties=parties)


@pytest.fixture
def server(context: ApiContext) -> Iterator[ServerThread]:
    WRITES.clear()
    with ServerThread(context, http=SpiedCoalescing) as s:
        yield s


def _answers(port: int) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for method, path in REQUESTS:
        conn.request(method, path, headers={"X-API-Key": "dev-buyer"})
        r = conn.getresponse()
        body = r.read()
        if path == "/metrics":  # counts requests, so differs between the servers
            body = b""
        headers = sorted((k.lower(), v) for k, v in r.getheaders() if k.lower() != "date")
        if path == "/metrics":
            headers = [h for h in headers if h[0] != "content-length"]
        out.append((r.status, headers, body))
    conn.close()
    return out


def test_each_answer_is_one_write_of_head_and_body(server: ServerThread) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for i, (method, path) in enumerate(REQUESTS, start=1):
        conn.request(method, path, headers={"X-API-Key": "dev-buyer"})
        r = conn.getresponse()
        body = r.read()
        [writes] = WRITES  # one connection
        assert len(writes) == i, f"{path}: {len(writes) - i + 1} writes for one answer"
        assert writes[-1].startswith(f"HTTP/1.1 {r.status} ".encode()), writes[-1][:40]
        assert writes[-1].endswith(b"\r\n\r\n" + body), path
    conn.close()


def test_answers_are_those_of_stock_uvicorn(context: ApiContext) -> None:
    with ServerThread(context, http=HttpToolsProtocol) as stock:
        expected = _answers(stock.port)
    with ServerThread(context) as ours:  # ApiServer's own choice: the coalescing protocol
        assert ours.server.config.http is CoalescingHttpToolsProtocol
        got = _answers(ours.port)
    assert [a[0] for a in got] == [200, 404, 200, 200, 422, 200]
    assert got == expected


def test_pipelined_requests_are_answered_in_order_before_the_close(
    server: ServerThread,
) -> None:
    """Three requests in one segment, the last asking to close: three answers in
    order, the last one sent before the connection closes (the close sends what is
    pending first)."""
    paths = ["/orders/1", "/orders/2", "/orders/1"]
    raw = b"".join(
        f"GET {p} HTTP/1.1\r\nHost: x\r\nX-API-Key: dev-buyer\r\n".encode()
        + (b"Connection: close\r\n" if i == len(paths) - 1 else b"")
        + b"\r\n"
        for i, p in enumerate(paths)
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]
    assert statuses == [200, 404, 200]
    assert received.rstrip().endswith(b"}"), received[-80:]  # the last body is whole
    assert received.count(b'"id":1,') == 2


def test_a_client_that_half_closes_still_gets_its_answer(server: ServerThread) -> None:
    """A request followed by the end of the client's sending side (``SHUT_WR``): the
    event loop closes the transport once the protocol has seen the end; what the app
    wrote in that same turn is sent first (without the flush on EOF most of these
    answers were lost). A route that answers from the thread pool (``/health``)
    answers after the close, and stock uvicorn loses that answer as well."""
    answered = 0
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /orders/1 HTTP/1.1\r\nHost: x\r\nX-API-Key: dev-buyer\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        answered += received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"}")
    assert answered == 20


class _Recording:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written))


def test_the_transport_joins_one_turn_and_drops_nothing_on_close() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        inner = _Recording()
        t = CoalescingTransport(inner, loop)  # type: ignore[arg-type]
        t.write(b"head ")
        t.write(bytearray(b"body"))
        assert inner.written == [] and t.get_write_buffer_size() == 9
        await asyncio.sleep(0)
        assert inner.written == [b"head body"]
        t.write(b"last")
        t.close()  # sends what is pending, then closes
        assert inner.written == [b"head body", b"last"] and inner.closing
        await asyncio.sleep(0)  # the flush scheduled by the write finds nothing left
        assert inner.written == [b"head body", b"last"]

        inner2 = _Recording()
        t2 = CoalescingTransport(inner2, loop)  # type: ignore[arg-type]
        t2.write(b"never")
        t2.abort()  # an abort drops what is pending, as the transport's own buffer
        await asyncio.sleep(0)
        assert inner2.written == [] and inner2.aborted

    asyncio.run(run())
