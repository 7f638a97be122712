"""Alerts: early warnings and notable events, as a list and as a live stream (SSE)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from backend.api import queries
from backend.api.context import ApiContext
from backend.api.deps import ContextDep, CurrentParty, SessionDep, visible_owners
from backend.api.errors import READ, responses
from backend.api.pages import Offset, OrderPage, order_page
from backend.api.parties import Party
from backend.api.schemas import MAX_JSON_INT, AlertPublic, AlertsPublic, Digits
from backend.api.sharing import PolicyRoute, check_order, filter_records
from backend.domain.alert import AlertKind, Severity

router = APIRouter(tags=["alerts"], route_class=PolicyRoute)

STREAM = "GET /alerts/stream"

SeverityQuery = Annotated[Severity | None, Query(description="Only alerts of this severity.")]
OrderAlertsPage = Annotated[OrderPage, order_page(most=500, default=50)]
Kinds = Annotated[
    list[AlertKind] | None,
    Query(description="Alert kinds (repeat); docs/oracle.md and docs/risk.md.", max_length=20),
]


@router.get("/alerts", response_model=AlertsPublic, responses=responses(*READ))
async def list_alerts(
    session: SessionDep,
    party: CurrentParty,
    order_id: Annotated[int | None, Query(ge=1, le=MAX_JSON_INT), Digits] = None,
    kind: Kinds = None,
    severity: SeverityQuery = None,
    limit: Annotated[int, Query(ge=1, le=500), Digits] = 50,
    offset: Offset = 0,
) -> AlertsPublic:
    """Alerts on the caller's orders, newest first."""
    rows, count = queries.alerts(
        session,
        party,
        order_id=order_id,
        kinds=kind or (),
        severity=severity,
        limit=limit,
        offset=offset,
    )
    return AlertsPublic(data=[AlertPublic.model_validate(r) for r in rows], count=count)


@router.get("/orders/{order_id}/alerts", response_model=AlertsPublic, responses=responses(*READ))
async def order_alerts(session: SessionDep, page: OrderAlertsPage) -> AlertsPublic:
    """One order's alerts, newest first."""
    return await list_alerts(
        session, page.party, order_id=page.order_id, limit=page.limit, offset=page.offset
    )


def _fetch(
    ctx: ApiContext, party: Party, order_id: int | None, after_id: int
) -> tuple[list[str], int]:
    """SSE frames of the alerts after ``after_id``, oldest first, and the new cursor."""
    with ctx.session_factory() as session:
        rows, _ = queries.alerts(
            session, party, order_id=order_id, after_id=after_id, limit=200, newest_first=False
        )
    alerts = [AlertPublic.model_validate(row).model_dump(mode="json") for row in rows]
    # the same policy as every answer: refused alerts are left out, the rest filtered
    released = {a["id"]: a for a in filter_records(ctx, party, AlertPublic, alerts, STREAM)}
    frames = []
    for row in rows:
        after_id = max(after_id, row.id)
        if row.id not in released:
            continue
        body = json.dumps(released[row.id], separators=(",", ":"))
        frames.append(f"id: {row.id}\nevent: alert\ndata: {body}\n\n")
    return frames, after_id


def _start_cursor(ctx: ApiContext) -> int:
    with ctx.session_factory() as session:
        return queries.last_alert_id(session)


async def alert_events(
    request: Request,
    ctx: ApiContext,
    party: Party,
    order_id: int | None,
    after_id: int | None,
) -> AsyncIterator[str]:
    """New alerts as SSE frames, a heartbeat comment when idle, until the client leaves."""
    cursor = after_id if after_id is not None else await run_in_threadpool(_start_cursor, ctx)
    yield f"retry: 3000\n: stream of alerts after id {cursor}\n\n"
    last_sent = time.monotonic()
    while not ctx.stopping.is_set():
        if await request.is_disconnected():
            break
        frames, cursor = await run_in_threadpool(_fetch, ctx, party, order_id, cursor)
        for frame in frames:
            yield frame
            last_sent = time.monotonic()
        if time.monotonic() - last_sent >= ctx.sse_heartbeat_seconds:
            yield ": heartbeat\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(ctx.sse_poll_seconds)


@router.get(
    "/alerts/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-sent events: `event: alert`, `id: <alert id>`, "
            "`data: <AlertPublic JSON>`; `: heartbeat` comments when idle. Alerts the "
            "sharing policy refuses the caller are left out (docs/sharing.md).",
        },
        **responses(*READ),
    },
)
async def stream_alerts(
    request: Request,
    ctx: ContextDep,
    party: CurrentParty,
    order_id: Annotated[int | None, Query(ge=1, le=MAX_JSON_INT), Digits] = None,
    last_event_id: Annotated[
        int | None,
        Header(
            ge=0, le=MAX_JSON_INT, description="Resume after this alert id (sent by EventSource)."
        ),
        Digits,
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_JSON_INT, description="Resume after this alert id."), Digits
    ] = None,
) -> StreamingResponse:
    """New alerts on the caller's orders as they are raised (``text/event-stream``).

    Without ``Last-Event-ID`` / ``after`` the stream starts with alerts raised from
    now on. It ends when the client disconnects or the server shuts down.
    """
    if order_id is not None:

        def check() -> None:
            with ctx.session_factory() as session:
                visible_owners(session, party, order_id)
            check_order(ctx, party, AlertPublic, order_id)

        await run_in_threadpool(check)
    start = after if after is not None else last_event_id
    return StreamingResponse(
        alert_events(request, ctx, party, order_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
