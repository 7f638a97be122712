"""Supplier scorecards, computed from the indexed contract events (docs/scorecards.md).

Low-sensitivity data: any authenticated party may read every supplier's record.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.exceptions import HTTPException

from backend.api import queries
from backend.api.convert import backtest, figures, scorecard, suppliers_page
from backend.api.custody import chain_terms
from backend.api.deps import CurrentParty, SessionDep
from backend.api.errors import READ, not_found, responses
from backend.api.pages import Offset
from backend.api.schemas import (
    Address,
    Digits,
    QuotePublic,
    QuoteRequest,
    ScorecardPublic,
    SuppliersPublic,
)
from backend.api.sharing import PolicyRoute
from backend.scorecard import backtests, lane_of, lane_records, ranked, scorecards

router = APIRouter(tags=["suppliers"], route_class=PolicyRoute)


@router.get("/suppliers", response_model=SuppliersPublic, responses=responses(*READ))
async def list_suppliers(
    session: SessionDep,
    _: CurrentParty,
    limit: Annotated[int, Query(ge=1, le=200), Digits] = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Every supplier with orders, best first: by all-time score (clean deliveries per
    finished order), then more finished orders, then address."""
    events, as_of = queries.scored_events(session)
    return suppliers_page(ranked(scorecards(events, as_of).values()), as_of, limit, offset)


@router.get(
    "/suppliers/{address}/scorecard", response_model=ScorecardPublic, responses=responses(*READ)
)
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


@router.api_route(
    "/orders/quote", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def quote_other_methods() -> None:
    """405 (``Allow: POST``), not the order lookup ``GET /orders/{order_id}`` would do."""
    raise HTTPException(405)


@router.post("/orders/quote", response_model=QuotePublic, responses=responses(*READ))
async def quote(session: SessionDep, party: CurrentParty, body: QuoteRequest) -> dict[str, Any]:
    """A draft order priced on evidence: the supplier's and the lane's record, and what
    the proposed terms would have paid out over that history. Sends nothing."""
    terms = chain_terms(body.terms, buyer=party.address, supplier=body.supplier)
    events, as_of = queries.scored_events(session)
    card = scorecards(events, as_of).get(body.supplier)
    lane = lane_of(terms.dest_lat_e6, terms.dest_lon_e6)
    record = lane_records(events, as_of).get(lane)
    return {
        "supplier": body.supplier,
        "lane": lane,
        "as_of": as_of,
        "supplier_record": scorecard(card) if card is not None else None,
        "lane_record": {
            "lane": lane,
            "all_time": figures(record.all_time),
            "last_90_days": figures(record.recent),
        }
        if record is not None
        else None,
        "backtests": [backtest(b) for b in backtests(events, terms, as_of)],
    }
