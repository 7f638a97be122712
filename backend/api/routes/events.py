"""Chain events per order, as the indexer stored them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api import queries
from backend.api.deps import CurrentParty, OrderIdPath, SessionDep, visible_order
from backend.api.errors import READ, responses
from backend.api.schemas import ChainEventPublic, ChainEventsPublic, Digits

router = APIRouter(prefix="/orders", tags=["events"])


@router.get("/{order_id}/events", response_model=ChainEventsPublic, responses=responses(*READ))
async def order_events(
    session: SessionDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    limit: Annotated[int, Query(ge=1, le=500), Digits] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000), Digits] = 0,
) -> ChainEventsPublic:
    """The order's contract events in chain order (block, log index)."""
    visible_order(session, party, order_id)
    rows, count = queries.chain_events(session, order_id, limit=limit, offset=offset)
    return ChainEventsPublic(data=[ChainEventPublic.model_validate(r) for r in rows], count=count)
