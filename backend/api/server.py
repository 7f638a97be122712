"""uvicorn's Server, taught to end open event streams first when it shuts down.

uvicorn waits for open connections before it runs the app's lifespan shutdown,
so a server-sent event stream would hold shutdown for the whole graceful
timeout. :class:`ApiServer` sets the context's ``stopping`` event as shutdown
begins; the streams see it within one poll interval and end cleanly.
"""

from __future__ import annotations

import socket

import uvicorn

from backend.api.context import ApiContext


class ApiServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, context: ApiContext) -> None:
        super().__init__(config)
        self.context = context

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.context.stopping.set()
        await super().shutdown(sockets)
