"""A shipment's live risk score, its history and its early warnings (docs/risk.md).

The oracle's rules assess the risk with every stored reading and on the silence
timer and keep snapshots in the store; this route only reads them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api import queries
from backend.api.deps import CurrentParty, OrderIdPath, SessionDep, visible_owners
from backend.api.errors import READ, responses
from backend.api.schemas import (
    AlertPublic,
    Digits,
    RiskEtaPublic,
    RiskPointPublic,
    RiskPublic,
    RiskReasonPublic,
)
from backend.api.sharing import PolicyRoute
from backend.domain.alert import RISK_ALERT_KINDS

router = APIRouter(prefix="/orders", tags=["risk"], route_class=PolicyRoute)


@router.get("/{order_id}/risk", response_model=RiskPublic, responses=responses(*READ))
async def order_risk(
    session: SessionDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    history: Annotated[
        int, Query(ge=0, le=1000, description="Past snapshots to include."), Digits
    ] = 100,
) -> RiskPublic:
    """The newest risk snapshot (score, reasons, ETA, breach forecast), the ones before
    it and the risk alerts raised on the order."""
    visible_owners(session, party, order_id)
    rows = queries.risk_snapshots(session, order_id, limit=history + 1)
    alerts, _ = queries.alerts(session, party, order_id=order_id, kinds=RISK_ALERT_KINDS, limit=200)
    head = rows[0] if rows else None
    return RiskPublic(
        order_id=order_id,
        at=head.at if head is not None else None,
        score=head.score if head is not None else None,
        reasons=[RiskReasonPublic.model_validate(r) for r in head.reasons] if head else [],
        eta=RiskEtaPublic.model_validate(head.eta) if head is not None and head.eta else None,
        breach_in_secs=head.breach_in_secs if head is not None else None,
        history=[RiskPointPublic.model_validate(r) for r in rows[1:]],
        alerts=[AlertPublic.model_validate(a) for a in alerts],
    )
