"""Devices bound to orders, with their latest reading."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api import convert, queries
from backend.api.deps import CurrentParty, SessionDep
from backend.api.errors import READ, responses
from backend.api.routes.orders import OrderIdPath, visible_order
from backend.api.schemas import Address, DevicesPublic, Digits

router = APIRouter(tags=["devices"])


@router.get("/devices", response_model=DevicesPublic, responses=responses(*READ))
async def list_devices(
    session: SessionDep,
    party: CurrentParty,
    device: Annotated[Address | None, Query(description="One device's bindings.")] = None,
    limit: Annotated[int, Query(ge=1, le=200), Digits] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000), Digits] = 0,
) -> DevicesPublic:
    """Devices bound to the caller's orders (one entry per order and device)."""
    rows, count = queries.devices(session, party, device=device, limit=limit, offset=offset)
    return DevicesPublic(data=[convert.device(*r) for r in rows], count=count)


@router.get("/orders/{order_id}/devices", response_model=DevicesPublic, responses=responses(*READ))
async def order_devices(
    session: SessionDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    limit: Annotated[int, Query(ge=1, le=200), Digits] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000), Digits] = 0,
) -> DevicesPublic:
    """The devices bound to one order at shipment."""
    visible_order(session, party, order_id)
    rows, count = queries.devices(session, party, order_id=order_id, limit=limit, offset=offset)
    return DevicesPublic(data=[convert.device(*r) for r in rows], count=count)
