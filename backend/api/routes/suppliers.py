"""Supplier scorecards, computed from the indexed contract events (docs/scorecards.md).

Low-sensitivity data: any authenticated party may read every supplier's record.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from backend.api import queries
from backend.api.deps import CurrentParty, SessionDep
from backend.api.errors import READ, not_found, responses
from backend.api.schemas import Address, Digits, ScorecardPublic, SuppliersPublic
from backend.scorecard import Figures, Scorecard, ranked, scorecards

router = APIRouter(prefix="/suppliers", tags=["suppliers"])


def figures(f: Figures) -> dict[str, Any]:
    out = asdict(f)
    out["tokens"] = [
        {k: str(v) if isinstance(v, int) and k not in ("orders", "paid_share_bps") else v
         for k, v in t.items()}
        for t in out["tokens"]
    ]  # fmt: skip
    return out


def scorecard(card: Scorecard) -> dict[str, Any]:
    return {
        "supplier": card.supplier,
        "as_of": card.as_of,
        "since": card.since,
        "all_time": figures(card.all_time),
        "last_90_days": figures(card.recent),
        "lanes": [
            {"lane": x.lane, "all_time": figures(x.all_time), "last_90_days": figures(x.recent)}
            for x in card.lanes
        ],
    }


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
    order = ranked(scorecards(events, as_of).values())
    return {
        "as_of": as_of,
        "data": [
            {
                "rank": offset + i + 1,
                "supplier": c.supplier,
                "all_time": figures(c.all_time),
                "last_90_days": figures(c.recent),
            }
            for i, c in enumerate(order[offset : offset + limit])
        ],
        "count": len(order),
    }


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
