"""An in-process MQTT broker (amqtt) for the one-command demo.

``start_embedded_broker()`` runs an amqtt broker on a free loopback port in a
background thread with its own asyncio loop and returns ``(url, stop)``. It is
what ``trustship demo`` uses when ``MQTT_URL`` is unset: no server to install,
nothing left behind.

amqtt speaks MQTT 3.1.1 only, so the URL it returns carries no hint of it:
clients connect with MQTT 5 first and fall back to 3.1.1 when the broker
refuses the protocol version (see :mod:`iot_simulator.publisher`). The
embedded broker is anonymous, keeps sessions in memory and has no ACL: it is
for demos and tests, not for a fleet (docs/simulator.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class _QuietV5Probe(logging.Filter):
    """Drop amqtt's warnings about MQTT 5 connection attempts.

    Clients probe with MQTT 5 first and fall back to 3.1.1 when refused; amqtt
    logs each refused probe as a warning, which would only alarm a demo user.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("Invalid protocol" in msg or msg.startswith("Invalid connection from"))


_QUIET = _QuietV5Probe()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int) -> dict[str, Any]:
    return {
        "listeners": {
            "default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 0}
        },
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def start_embedded_broker(
    port: int | None = None, timeout: float = 15.0
) -> tuple[str, Callable[[], None]]:
    """Start an amqtt broker on ``127.0.0.1:port`` (a free one by default).

    Returns ``(url, stop)``; ``stop()`` shuts the broker down and joins its
    thread (idempotent). Raises ``RuntimeError`` when it does not come up.
    """
    from amqtt.broker import Broker

    amqtt_log = logging.getLogger("amqtt.broker")
    if _QUIET not in amqtt_log.filters:
        amqtt_log.addFilter(_QUIET)
    port = port or _free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []
    holder: dict[str, Any] = {}

    async def _start() -> None:
        broker = Broker(_config(port), loop=loop)
        await broker.start()
        holder["broker"] = broker

    def _run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_start())
        except BaseException as exc:  # surfaced to the caller below
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=_run, name=f"amqtt-{port}", daemon=True)
    thread.start()
    if not ready.wait(timeout) or failure:
        raise RuntimeError(
            f"embedded MQTT broker did not start on port {port}: {failure or 'timeout'}"
        )
    log.info("embedded MQTT broker (amqtt) listening on 127.0.0.1:%d", port)
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        fut = asyncio.run_coroutine_threadsafe(holder["broker"].shutdown(), loop)
        try:
            fut.result(timeout=10)
        except Exception as exc:  # a failed shutdown must not hide the caller's own error
            log.warning("embedded broker shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    return f"mqtt://127.0.0.1:{port}", stop
