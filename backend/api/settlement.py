"""The settlement preview of an indexed order (math: backend/chain/settlement.py)."""

from __future__ import annotations

from backend.api.queries import OrderRecord
from backend.api.schemas import SettlementPreview
from backend.chain.settlement import settlement
from backend.domain.order import Terms


def row_terms(row: OrderRecord) -> Terms:
    return Terms.of(row)


def preview(row: OrderRecord, delivered_at: int, breach: bool) -> SettlementPreview:
    s = settlement(int(row.price), row_terms(row), delivered_at, breach)
    return SettlementPreview(
        order_id=row.id,
        delivered_at=delivered_at,
        breach=breach,
        late_seconds=s.late_seconds,
        late_penalty_bps=s.late_penalty_bps,
        breach_bps=s.breach_bps,
        refund_bps=s.refund_bps,
        buyer_amount=str(s.buyer_amount),
        supplier_amount=str(s.supplier_amount),
    )
