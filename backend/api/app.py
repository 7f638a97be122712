"""The FastAPI application factory.

``create_app(context)`` wires the routers, the error handlers, the metrics
middleware and the OpenAPI document around an :class:`ApiContext`. It creates no
engines or chain connections itself: ``backend/serve.py`` (and the tests) build
the context.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.context import ApiContext
from backend.api.errors import install_error_handlers, no_unknown_query_parameters
from backend.api.routes import (
    account,
    alerts,
    dashboard,
    devices,
    epcis,
    events,
    orders,
    risk,
    sharing,
    suppliers,
    system,
    telemetry,
)

API_VERSION = "1.0.0"

DESCRIPTION = """\
Purchase orders whose payment waits in escrow and settles itself from
device-signed telemetry.

**Auth**: send `X-API-Key` (not needed for `/health`, `/metrics`, `/deployment`,
these pages and the web dashboard's files at `/`, `/web/*`, `/vendor/*`).
Each key maps to a party (an account and roles).
A party sees and acts only on orders it is buyer, supplier or arbiter of;
another party's order answers **404** as if it did not exist. Auditors read
everything and change nothing (403 `read_only`).

**Errors** are JSON `ErrorPublic` with a stable `code`; a contract revert is
`contract_revert` with the Solidity error's name in `error` and its arguments
in `args`. Money is a decimal string in token base units. Input is validated
strictly (no type coercion; mixed-case addresses must carry a valid EIP-55
checksum). See docs/api.md.
"""


class MetricsMiddleware:
    """Counts requests and their latency by route template (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app = app
        self.metrics = context.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        self.metrics.started()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    for r in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = r.matches(scope)
        if match == Match.FULL:
            return str(getattr(r, "path", "unmatched"))
    return "unmatched"


def create_app(context: ApiContext) -> FastAPI:
    """The API around ``context`` (routers, error handlers, metrics)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        context.stopping.clear()
        yield
        context.stopping.set()  # ends open event streams

    app = FastAPI(
        dependencies=[Depends(no_unknown_query_parameters)],
        title="TrustShip API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "orders", "description": "Orders and their state machine."},
            {"name": "telemetry", "description": "Signed readings, commitments, Merkle proofs."},
            {"name": "events", "description": "Contract events per order."},
            {"name": "alerts", "description": "Early warnings; a server-sent event stream."},
            {"name": "risk", "description": "Live risk score, ETA and early warnings per order."},
            {"name": "devices", "description": "Devices bound to orders."},
            {
                "name": "epcis",
                "description": "GS1 EPCIS 2.0: an order's events, partner capture.",
            },
            {"name": "suppliers", "description": "Supplier scorecards from the contracts' events."},
            {"name": "sharing", "description": "Grants across borders; the disclosure log."},
            {"name": "account", "description": "The calling party and its escrow credits."},
            {"name": "system", "description": "Health and metrics."},
        ],
    )
    app.state.context = context
    install_error_handlers(app)
    # suppliers first: its concrete /orders/quote goes before /orders/{order_id}
    routers = (
        suppliers,
        orders,
        telemetry,
        events,
        alerts,
        risk,
        devices,
        epcis,
        sharing,
        account,
        system,
    )
    for module in routers:
        app.include_router(module.router)
    dashboard.install(app)  # the web dashboard at / (docs/dashboard.md)
    app.add_middleware(MetricsMiddleware, context=context)
    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()
