"""Devices bound to orders, with their latest reading."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api import convert, queries
from backend.api.deps import ContextDep, CurrentParty, OrderIdPath, SessionDep, visible_owners
from backend.api.errors import READ, ApiError, responses
from backend.api.pages import Offset, OrderPage, order_page
from backend.api.schemas import (
    Address,
    DevicesPublic,
    Digits,
    GapPublic,
    GapsPublic,
    RefusalPublic,
    RefusalsPublic,
)
from backend.api.sharing import PolicyRoute
from backend.store import repositories as repo

router = APIRouter(tags=["devices"], route_class=PolicyRoute)

OrderDevicesPage = Annotated[OrderPage, order_page(most=200, default=100)]


@router.get("/devices", response_model=DevicesPublic, responses=responses(*READ))
async def list_devices(
    session: SessionDep,
    party: CurrentParty,
    device: Annotated[Address | None, Query(description="One device's bindings.")] = None,
    limit: Annotated[int, Query(ge=1, le=200), Digits] = 100,
    offset: Offset = 0,
) -> DevicesPublic:
    """Devices bound to the caller's orders (one entry per order and device)."""
    rows, count = queries.devices(session, party, device=device, limit=limit, offset=offset)
    return DevicesPublic(data=[convert.device(r) for r in rows], count=count)


@router.get("/orders/{order_id}/devices", response_model=DevicesPublic, responses=responses(*READ))
async def order_devices(session: SessionDep, page: OrderDevicesPage) -> DevicesPublic:
    """The devices bound to one order at shipment."""
    rows, count = queries.devices(
        session, page.party, order_id=page.order_id, limit=page.limit, offset=page.offset
    )
    return DevicesPublic(data=[convert.device(r) for r in rows], count=count)


@router.get("/orders/{order_id}/gaps", response_model=GapsPublic, responses=responses(*READ))
async def order_gaps(session: SessionDep, party: CurrentParty, order_id: OrderIdPath) -> GapsPublic:
    """Readings that never arrived while later ones did, per device (seq ranges).

    A range counts from the first to the newest seq known of the device: stored, or
    reported in its status message. The oracle raises a ``seq_gap`` alert for a range
    still missing after a grace period (docs/oracle.md, "Seq gaps").
    """
    visible_owners(session, party, order_id)
    gaps: list[GapPublic] = []
    rows, _ = queries.devices(session, party, order_id=order_id, limit=200)
    for row in rows:
        if row.missing() == 0:
            continue
        for a, b in repo.missing_ranges(session, row):
            gaps.append(
                GapPublic(device=row.device, first_missing=a, last_missing=b, missing=b - a + 1)
            )
    return GapsPublic(data=gaps, count=len(gaps), missing_readings=sum(g.missing for g in gaps))


@router.get(
    "/orders/{order_id}/refusals", response_model=RefusalsPublic, responses=responses(*READ, 503)
)
async def order_refusals(
    session: SessionDep, ctx: ContextDep, party: CurrentParty, order_id: OrderIdPath
) -> RefusalsPublic:
    """Telemetry the oracle refused on this order's topics, per device and reason.

    Counted in the oracle's memory since it started (refused payloads are never
    stored); 503 when no oracle runs in this API's process.
    """
    visible_owners(session, party, order_id)
    if ctx.refusals is None:
        raise ApiError(503, "unavailable", "no oracle runs in this process: nothing to report")
    data = [
        RefusalPublic(
            device=r.device,
            by_reason=dict(r.by_reason),
            refused=sum(r.by_reason.values()),
            last_reason=r.last_reason,
            last_message=r.last_message,
        )
        for r in ctx.refusals(order_id)
    ]
    return RefusalsPublic(data=data, count=len(data))
