"""Chain events per order, as the indexer stored them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from backend.api import queries
from backend.api.deps import SessionDep
from backend.api.errors import READ, responses
from backend.api.pages import OrderPage, order_page
from backend.api.schemas import ChainEventPublic, ChainEventsPublic
from backend.api.sharing import PolicyRoute

router = APIRouter(prefix="/orders", tags=["events"], route_class=PolicyRoute)

OrderEventsPage = Annotated[OrderPage, order_page(most=500, default=100)]


@router.get("/{order_id}/events", response_model=ChainEventsPublic, responses=responses(*READ))
async def order_events(session: SessionDep, page: OrderEventsPage) -> ChainEventsPublic:
    """The order's contract events in chain order (block, log index)."""
    rows, count = queries.chain_events(session, page.order_id, limit=page.limit, offset=page.offset)
    return ChainEventsPublic(data=[ChainEventPublic.model_validate(r) for r in rows], count=count)
