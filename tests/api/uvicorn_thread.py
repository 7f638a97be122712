"""The API served by a real uvicorn in a thread of the test process, on a free port."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn

from backend.api.app import create_app
from backend.api.context import ApiContext
from backend.api.server import ApiServer
from testkit.servers import free_port


class ServerThread:
    """The API served by uvicorn in a thread of this process (stopped with should_exit)."""

    def __init__(self, context: ApiContext, http: type[asyncio.Protocol] | None = None) -> None:
        """``http``: the HTTP protocol class to serve with (ApiServer's choice if None)."""
        self.port = free_port()
        config = uvicorn.Config(
            create_app(context),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=5,
            http=http or "auto",
        )
        self.server = ApiServer(config, context)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "uvicorn did not stop"
