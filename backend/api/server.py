"""uvicorn's Server, taught to end open event streams first when it shuts down, and
to send each answer in one write.

uvicorn waits for open connections before it runs the app's lifespan shutdown,
so a server-sent event stream would hold shutdown for the whole graceful
timeout. :class:`ApiServer` sets the context's ``stopping`` event as shutdown
begins; the streams see it within one poll interval and end cleanly.

uvicorn's httptools protocol writes an answer's status line and headers, then its
body, each straight to the socket: two system calls and two TCP segments for every
answer, which on this kind of machine cost a fifth of a small answer's CPU
(docs/api.md, "Speed"). :class:`CoalescingHttpToolsProtocol` joins what the
connection writes during one turn of the event loop and sends it at the end of that
turn; :class:`ApiServer` serves with it wherever uvicorn would pick httptools.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from backend.api.context import ApiContext


class CoalescingTransport:
    """A transport whose writes within one turn of the event loop go out as one write
    at the end of it, in order; everything else is the wrapped transport's. Closing
    sends what is pending first; aborting drops it, as the transport's abort drops
    its own buffer."""

    __slots__ = ("_loop", "_pending", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is pending now (nothing once the transport is closing)."""
        pending = self._pending
        if pending:
            self._pending = []
            if not self.transport.is_closing():
                self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._pending = []
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport`:
    an answer's head and body go out in one system call."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(self.coalescing)  # type: ignore[arg-type]

    def eof_received(self) -> None:
        # The client has finished sending (a half-close): the event loop closes the
        # transport when this returns, so what was written this turn goes now.
        self.coalescing.flush()
        super().eof_received()


class ApiServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, context: ApiContext) -> None:
        if config.http in ("auto", "httptools"):  # httptools comes with uvicorn[standard]
            config.http = CoalescingHttpToolsProtocol
        super().__init__(config)
        self.context = context

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.context.stopping.set()
        await super().shutdown(sockets)
