"""Contract events built by hand, as the contracts would emit them (scorecard tests)."""

from __future__ import annotations

from typing import Any

from backend.domain.order import Terms
from backend.scorecard import ChainEvent

BUYER = "0x1111111111111111111111111111111111111111"
SUPPLIER = "0x2222222222222222222222222222222222222222"
OTHER = "0x3333333333333333333333333333333333333333"
ARBITER = "0x4444444444444444444444444444444444444444"
ISSUER = "0x5555555555555555555555555555555555555555"
TOKEN = "0x6666666666666666666666666666666666666666"
ETH = "0x0000000000000000000000000000000000000000"
T0 = 1_800_000_000
DEADLINE = T0 + 5 * 86_400
ROTTERDAM = (51_950_000, 4_050_000)
HAMBURG = (53_540_000, 9_980_000)


class Chain:
    """Builds an event list the way the contracts would emit it."""

    def __init__(self) -> None:
        self.events: list[ChainEvent] = []
        self.block = 1
        self.next_id = 1

    def emit(self, name: str, at: int, **args: Any) -> None:
        self.events.append(ChainEvent(name, self.block, 0, at, args))
        self.block += 1

    def terms(self, supplier: str = SUPPLIER, price: int = 10_000, **kw: Any) -> Terms:
        dest = kw.pop("dest", ROTTERDAM)
        base: dict[str, Any] = dict(
            buyer=BUYER, supplier=supplier, token=ETH, price=price, delivery_deadline=DEADLINE,
            expiry_grace_secs=86_400, dest_lat_e6=dest[0], dest_lon_e6=dest[1],
            geofence_e6=50_000, min_temp_centi_c=200, max_temp_centi_c=800,
            tolerated_excursion_secs=1800, late_penalty_bps_per_hour=100,
            late_penalty_cap_bps=2000, breach_refund_bps=3000, arbiter=ARBITER,
            device_issuer=ISSUER,
        )  # fmt: skip
        base.update(kw)
        return Terms(**base)

    def create(self, terms: Terms, at: int = T0) -> int:
        oid = self.next_id
        self.next_id += 1
        # as the indexer stores it: a JSON list, large integers as strings
        raw = [str(v) if isinstance(v, int) and v >= 2**53 else v for v in terms.as_tuple()]
        self.emit("OrderCreated", at, orderId=oid, buyer=terms.buyer, supplier=terms.supplier,
                  terms=raw)  # fmt: skip
        return oid

    def ship(self, oid: int, at: int = T0 + 3600) -> None:
        self.emit("OrderShipped", at, orderId=oid, deviceCount=1, shippedAt=at)

    def deliver(self, oid: int, late: int = 0) -> int:
        at = DEADLINE + late if late else DEADLINE - 3600
        self.emit("OrderDelivered", at, orderId=oid, deliveredAt=at, lateSeconds=late,
                  confirmedBy=BUYER)  # fmt: skip
        return at

    def settle(self, oid: int, buyer: int, supplier: int, at: int = DEADLINE + 10) -> None:
        self.emit("OrderSettled", at, orderId=oid, buyerAmount=buyer, supplierAmount=supplier)

    def breach(self, oid: int, kind: str, at: int = T0 + 7200) -> None:
        if kind == "excursion":
            self.emit("ExcursionProven", at, orderId=oid, device=ISSUER, firstSeq=1, lastSeq=9,
                      startedAt=at - 3000, endedAt=at, submitter=ARBITER)  # fmt: skip
        else:
            self.emit("ShockProven", at, orderId=oid, device=ISSUER, seq=3, shockMilliG=9000,
                      submitter=ARBITER)  # fmt: skip
        self.emit("BreachRecorded", at, orderId=oid)
