"""The settlement split, computed off-chain (DESIGN.md §4) — the product's one preview.

The API shows a party what an order would pay out before the contract settles it.
The contract is the authority; this mirrors ``PurchaseOrders`` for previews and is
checked against the contract in the tests. (The contract test suite checks the
contract against its own independently written table, not against this module.)

    late            = max(0, deliveredAt − deadline)
    latePenaltyBps  = min(cap, ceil(late / 3600) × ratePerHour)
    breachBps       = breached ? breachRefundBps : 0
    refundBps       = min(10000, latePenaltyBps + breachBps)
    buyer           = price × refundBps / 10000   (rounded down)
    supplier        = price − buyer
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.chain.contracts import Terms

BPS = 10_000
HOUR = 3_600


@dataclass(frozen=True)
class Settlement:
    """A split with the figures that produced it."""

    buyer_amount: int
    supplier_amount: int
    late_seconds: int
    late_penalty_bps: int
    breach_bps: int
    refund_bps: int


def settlement(price: int, terms: Terms, delivered_at: int, breached: bool) -> Settlement:
    """The split of ``price`` for delivery at ``delivered_at`` under ``terms``."""
    if price < 0:
        raise ValueError(f"price must not be negative, got {price}")
    late = max(0, delivered_at - terms.delivery_deadline)
    started_hours = -(-late // HOUR)  # ceil for non-negative integers
    late_bps = min(terms.late_penalty_cap_bps, started_hours * terms.late_penalty_bps_per_hour)
    breach_bps = terms.breach_refund_bps if breached else 0
    refund_bps = min(BPS, late_bps + breach_bps)
    buyer = price * refund_bps // BPS
    return Settlement(
        buyer_amount=buyer,
        supplier_amount=price - buyer,
        late_seconds=late,
        late_penalty_bps=late_bps,
        breach_bps=breach_bps,
        refund_bps=refund_bps,
    )


def settlement_split(
    price: int, terms: Terms, delivered_at: int, breached: bool
) -> tuple[int, int]:
    """``(buyer_amount, supplier_amount)`` for delivery at ``delivered_at``."""
    s = settlement(price, terms, delivered_at, breached)
    return s.buyer_amount, s.supplier_amount
