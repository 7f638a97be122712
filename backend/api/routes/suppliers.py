"""Supplier scorecards, computed from the indexed contract events (docs/scorecards.md).

Low-sensitivity data: any authenticated party may read every supplier's record.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from backend.api import queries
from backend.api.convert import scorecard, suppliers_page
from backend.api.deps import CurrentParty, SessionDep
from backend.api.errors import READ, not_found, responses
from backend.api.schemas import Address, Digits, ScorecardPublic, SuppliersPublic
from backend.scorecard import ranked, scorecards

router = APIRouter(prefix="/suppliers", tags=["suppliers"])


@router.get("", response_model=SuppliersPublic, responses=responses(*READ))
async def list_suppliers(
    session: SessionDep,
    _: CurrentParty,
    limit: Annotated[int, Query(ge=1, le=200), Digits] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000), Digits] = 0,
) -> dict[str, Any]:
    """Every supplier with orders, best first: by all-time score (clean deliveries per
    finished order), then more finished orders, then address."""
    events, as_of = queries.scored_events(session)
    return suppliers_page(ranked(scorecards(events, as_of).values()), as_of, limit, offset)


@router.get("/{address}/scorecard", response_model=ScorecardPublic, responses=responses(*READ))
async def supplier_scorecard(
    session: SessionDep,
    _: CurrentParty,
    address: Annotated[Address, Path(description="The supplier's address.")],
) -> dict[str, Any]:
    """One supplier's record, all time and over the last 90 days, with its lanes."""
    events, as_of = queries.scored_events(session)
    card = scorecards(events, as_of).get(address)
    if card is None:
        raise not_found(f"supplier {address}")
    return scorecard(card)
