"""``trustship watch --serve PORT``: the watcher's record over HTTP, read-only.

``GET /orders/{id}/readings`` — every reading held, with its device and signature (anyone
can re-verify them against the deployment's EIP-712 domain); ``/orders/{id}/gaps`` —
seqs missing per device and the readings refused by reason; ``/orders/{id}/submissions``
— what the watcher sent to the chain and how it came out; ``/health`` (with
``subscribed``: every broker subscription granted).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from backend.watcher.service import Watcher

_ROUTE = re.compile(r"^/orders/([0-9]{1,20})/(readings|gaps|submissions)$")


def make_server(
    watcher: Watcher, host: str, port: int, ready: Callable[[], bool] | None = None
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/health":
                subscribed = ready() if ready is not None else None
                self._send(
                    200, {"orders": list(watcher.config.order_ids), "subscribed": subscribed}
                )
                return
            m = _ROUTE.match(path)
            if m is None:
                self._send(404, {"error": f"no such path {path}"})
                return
            order_id, what = int(m.group(1)), m.group(2)
            if order_id not in watcher.config.order_ids:
                self._send(404, {"error": f"order {order_id} is not watched here"})
                return
            if what == "readings":
                data = watcher.store.listing(order_id)
                self._send(200, {"data": data, "count": len(data)})
            elif what == "gaps":
                gaps = watcher.gaps(order_id)
                self._send(
                    200,
                    {
                        "gaps": {d: [list(g) for g in runs] for d, runs in gaps.items()},
                        "refused": watcher.refusals(order_id),
                    },
                )
            else:
                self._send(200, {"data": [asdict(s) for s in watcher.store.submissions(order_id)]})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_background(
    watcher: Watcher, host: str, port: int, ready: Callable[[], bool] | None = None
) -> ThreadingHTTPServer:
    server = make_server(watcher, host, port, ready)
    threading.Thread(target=server.serve_forever, name="watcher-http", daemon=True).start()
    return server
