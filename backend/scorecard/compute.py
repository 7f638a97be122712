"""Supplier and lane scorecards from contract events alone (definitions: docs/scorecards.md).

Input: events as the contracts emitted them (name, block, log index, block time,
arguments by their ABI names). Arguments may come decoded (integers, tuples) or as
the indexer stores them in JSON (large integers as decimal strings, tuples as
lists): both read the same. Output: integers only, so a recomputation from raw
logs compares exactly.

* A **lane** is the order's destination cell: ``OrderCreated`` carries no origin, so
  the lane is where the goods must arrive, the destination box's centre snapped to a
  0.1° grid (:func:`lane_of`).
* **The last 90 days** end at ``as_of``, by default the newest event's block time
  (chain time: dev chains move their clock), and hold the orders created in them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from backend.chain.settlement import BPS, settlement
from backend.domain.order import Terms

#: How far back "recent" figures look, in days.
RECENT_DAYS = 90
DAY = 86_400
#: The lane grid, in micro-degrees (0.1°, about 11 km north–south).
LANE_CELL_E6 = 100_000

#: The events a scorecard reads (everything else is ignored).
SCORED_EVENTS: tuple[str, ...] = (
    "OrderCreated",
    "OrderShipped",
    "BreachRecorded",
    "ExcursionProven",
    "ShockProven",
    "OrderDelivered",
    "OrderSettled",
    "DisputeOpened",
    "DisputeResolved",
    "OrderCancelled",
    "OrderExpired",
)


@dataclass(frozen=True)
class ChainEvent:
    """One contract event: where it is on the chain, when, and its arguments."""

    name: str
    block_number: int
    log_index: int
    timestamp: int
    args: Mapping[str, Any]


@dataclass(frozen=True)
class TokenFigures:
    """Money figures in one token (amounts in different tokens are never added)."""

    token: str
    orders: int
    value: int  # sum of the prices of the orders
    closed_value: int  # prices of the orders that ended in a split (settled or resolved)
    late_penalties: int  # buyer's share due to lateness, settled orders
    breach_refunds: int  # buyer's share due to a proven breach, settled orders
    ruled_refunds: int  # what arbiters gave buyers, resolved orders
    expiry_refunds: int  # deposits returned by expiry
    paid_share_bps: int | None  # (late + breach + ruled) × 10000 // closed_value


@dataclass(frozen=True)
class Figures:
    """One set of orders' record (a supplier or a lane, all time or recent)."""

    orders: int = 0
    open: int = 0  # not in a final state yet
    cancelled: int = 0
    shipped: int = 0
    delivered: int = 0
    on_time: int = 0
    late: int = 0
    on_time_bps: int | None = None  # on_time × 10000 // delivered
    breached: int = 0
    excursions: int = 0
    shocks: int = 0
    breach_bps: int | None = None  # breached × 10000 // shipped
    excursion_bps: int | None = None
    shock_bps: int | None = None
    mean_late_secs: int | None = None  # over delivered orders (on time = 0), floor
    p95_late_secs: int | None = None  # nearest rank over delivered orders
    max_late_secs: int | None = None
    disputes_opened: int = 0
    disputes_by_buyer: int = 0
    disputes_by_supplier: int = 0
    disputes_pending: int = 0  # opened, neither ruled nor settled yet
    disputes_lapsed: int = 0  # the arbiter did not rule in time: settled by the terms
    rulings_for_buyer: int = 0  # buyer got more than the terms gave
    rulings_for_supplier: int = 0  # buyer got less than the terms gave
    rulings_as_terms: int = 0  # the arbiter kept the terms' split
    expired: int = 0
    finished: int = 0  # delivered + expired: the orders the supplier had to perform
    clean: int = 0  # delivered on time without a breach
    score_bps: int | None = None  # clean × 10000 // finished: the ranking key
    tokens: tuple[TokenFigures, ...] = ()


@dataclass(frozen=True)
class LaneCard:
    lane: str
    all_time: Figures
    recent: Figures


@dataclass(frozen=True)
class Scorecard:
    supplier: str
    as_of: int | None
    since: int | None  # the start of the recent window
    all_time: Figures
    recent: Figures
    lanes: tuple[LaneCard, ...] = field(default=())


def lane_of(dest_lat_e6: int, dest_lon_e6: int) -> str:
    """The lane of a destination: its 0.1° cell, named by the cell's south-west corner
    (``"51.9,4.0"``; floor division, so -0.05° is in cell -0.1)."""

    def corner(e6: int) -> str:
        tenths = e6 // LANE_CELL_E6
        sign = "-" if tenths < 0 else ""
        return f"{sign}{abs(tenths) // 10}.{abs(tenths) % 10}"

    return f"{corner(dest_lat_e6)},{corner(dest_lon_e6)}"


# --- reading arguments -------------------------------------------------------------------


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer argument")
    return int(value)  # ints, or the indexer's decimal strings for large values


def _address(value: Any) -> str:
    return to_checksum_address(str(value))


def _terms(value: Any) -> Terms:
    """``OrderCreated.terms``: a tuple (decoded), a list (JSON) or a dict by name."""
    if isinstance(value, Mapping):
        value = [value[name] for name in _ABI_TERM_NAMES]
    raw = list(value)
    out: list[Any] = []
    for attr, v in zip(Terms.SOLIDITY_ORDER, raw, strict=True):
        out.append(_address(v) if attr in _ADDRESS_ATTRS else _int(v))
    return Terms.from_tuple(out)


_ADDRESS_ATTRS = frozenset(
    ("buyer", "supplier", "token", "arbiter", "device_issuer", "second_device_issuer")
)


def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(p.capitalize() for p in rest)


#: The ABI's names of the terms' fields (``destLatE6`` …), for terms decoded as a dict.
_ABI_TERM_NAMES = tuple(_camel(a) for a in Terms.SOLIDITY_ORDER)


# --- one order's story -------------------------------------------------------------------


@dataclass
class _Order:
    order_id: int
    terms: Terms
    created_at: int
    shipped: bool = False
    breach_kind: str | None = None  # "excursion" | "shock" | "unknown"
    late_seconds: int | None = None  # set at delivery
    settled: tuple[int, int] | None = None  # (buyer, supplier) by OrderSettled
    disputed_by: str | None = None
    ruled: tuple[int, int] | None = None
    cancelled: bool = False
    expired_refund: int | None = None

    @property
    def final(self) -> bool:
        return (
            self.settled is not None
            or self.ruled is not None
            or self.cancelled
            or self.expired_refund is not None
        )

    def terms_split(self) -> int:
        """What the terms give the buyer for this delivery (the automatic settlement)."""
        assert self.late_seconds is not None
        delivered_at = self.terms.delivery_deadline + self.late_seconds
        return settlement(
            self.terms.price, self.terms, delivered_at, self.breach_kind is not None
        ).buyer_amount


def _orders(events: Iterable[ChainEvent]) -> dict[int, _Order]:
    orders: dict[int, _Order] = {}
    for e in sorted(events, key=lambda e: (e.block_number, e.log_index)):
        if e.name not in SCORED_EVENTS or "orderId" not in e.args:
            continue
        oid = _int(e.args["orderId"])
        if e.name == "OrderCreated":
            orders[oid] = _Order(oid, _terms(e.args["terms"]), e.timestamp)
            continue
        o = orders.get(oid)
        if o is None:
            continue  # an order created before the events given: not scored
        a = e.args
        if e.name == "OrderShipped":
            o.shipped = True
        elif e.name == "ExcursionProven":
            o.breach_kind = o.breach_kind or "excursion"
        elif e.name == "ShockProven":
            o.breach_kind = o.breach_kind or "shock"
        elif e.name == "BreachRecorded":
            o.breach_kind = o.breach_kind or "unknown"
        elif e.name == "OrderDelivered":
            o.late_seconds = _int(a["lateSeconds"])
        elif e.name == "OrderSettled":
            o.settled = (_int(a["buyerAmount"]), _int(a["supplierAmount"]))
        elif e.name == "DisputeOpened":
            by = _address(a["by"])
            o.disputed_by = "buyer" if by == o.terms.buyer else "supplier"
        elif e.name == "DisputeResolved":
            o.ruled = (_int(a["buyerAmount"]), _int(a["supplierAmount"]))
        elif e.name == "OrderCancelled":
            o.cancelled = True
        elif e.name == "OrderExpired":
            o.expired_refund = _int(a["refunded"])
    return orders


def _ratio(part: int, whole: int) -> int | None:
    return part * BPS // whole if whole else None


def _p95(values: Sequence[int]) -> int | None:
    """Nearest rank: the smallest value with at least 95 % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-95 * len(ordered) // 100)  # ceil(0.95 n), at least 1
    return ordered[rank - 1]


def _token_figures(orders: Sequence[_Order]) -> tuple[TokenFigures, ...]:
    out = []
    for token in sorted({o.terms.token for o in orders}):
        mine = [o for o in orders if o.terms.token == token]
        late = breach = ruled = expiry = closed = 0
        for o in mine:
            price = o.terms.price
            if o.settled is not None:
                closed += price
                late_bps = (
                    settlement(
                        price, o.terms, o.terms.delivery_deadline + o.late_seconds, False
                    ).late_penalty_bps
                    if o.late_seconds is not None
                    else 0
                )
                late_part = min(o.settled[0], price * min(BPS, late_bps) // BPS)
                late += late_part
                breach += o.settled[0] - late_part
            elif o.ruled is not None:
                closed += price
                ruled += o.ruled[0]
            if o.expired_refund is not None:
                expiry += o.expired_refund
        out.append(
            TokenFigures(
                token=token,
                orders=len(mine),
                value=sum(o.terms.price for o in mine),
                closed_value=closed,
                late_penalties=late,
                breach_refunds=breach,
                ruled_refunds=ruled,
                expiry_refunds=expiry,
                paid_share_bps=_ratio(late + breach + ruled, closed),
            )
        )
    return tuple(out)


def _figures(orders: Sequence[_Order]) -> Figures:
    delivered = [o for o in orders if o.late_seconds is not None]
    lateness = [o.late_seconds for o in delivered if o.late_seconds is not None]
    shipped = [o for o in orders if o.shipped]
    breached = [o for o in orders if o.breach_kind is not None]
    excursions = sum(1 for o in breached if o.breach_kind == "excursion")
    shocks = sum(1 for o in breached if o.breach_kind == "shock")
    on_time = sum(1 for s in lateness if s == 0)
    disputed = [o for o in orders if o.disputed_by is not None]
    for_buyer = for_supplier = as_terms = 0
    for o in disputed:
        if o.ruled is None:
            continue
        due = o.terms_split()
        if o.ruled[0] > due:
            for_buyer += 1
        elif o.ruled[0] < due:
            for_supplier += 1
        else:
            as_terms += 1
    expired = sum(1 for o in orders if o.expired_refund is not None)
    clean = sum(1 for o in delivered if o.late_seconds == 0 and o.breach_kind is None)
    finished = len(delivered) + expired
    return Figures(
        orders=len(orders),
        open=sum(1 for o in orders if not o.final),
        cancelled=sum(1 for o in orders if o.cancelled),
        shipped=len(shipped),
        delivered=len(delivered),
        on_time=on_time,
        late=len(delivered) - on_time,
        on_time_bps=_ratio(on_time, len(delivered)),
        breached=len(breached),
        excursions=excursions,
        shocks=shocks,
        breach_bps=_ratio(len(breached), len(shipped)),
        excursion_bps=_ratio(excursions, len(shipped)),
        shock_bps=_ratio(shocks, len(shipped)),
        mean_late_secs=sum(lateness) // len(lateness) if lateness else None,
        p95_late_secs=_p95(lateness),
        max_late_secs=max(lateness) if lateness else None,
        disputes_opened=len(disputed),
        disputes_by_buyer=sum(1 for o in disputed if o.disputed_by == "buyer"),
        disputes_by_supplier=sum(1 for o in disputed if o.disputed_by == "supplier"),
        disputes_pending=sum(1 for o in disputed if o.ruled is None and o.settled is None),
        disputes_lapsed=sum(1 for o in disputed if o.ruled is None and o.settled is not None),
        rulings_for_buyer=for_buyer,
        rulings_for_supplier=for_supplier,
        rulings_as_terms=as_terms,
        expired=expired,
        finished=finished,
        clean=clean,
        score_bps=_ratio(clean, finished),
        tokens=_token_figures(orders),
    )


def _window(events: Sequence[ChainEvent], as_of: int | None) -> tuple[int | None, int | None]:
    if as_of is None:
        as_of = max((e.timestamp for e in events), default=None)
    return as_of, (as_of - RECENT_DAYS * DAY if as_of is not None else None)


def _until(events: Sequence[ChainEvent], as_of: int | None) -> list[ChainEvent]:
    """The events up to ``as_of`` (a scorecard as of a past time sees only that past)."""
    return [e for e in events if as_of is None or e.timestamp <= as_of]


def _card(
    supplier: str, orders: Sequence[_Order], as_of: int | None, since: int | None, lanes: bool
) -> Scorecard:
    recent = [o for o in orders if since is not None and o.created_at >= since]
    recent_ids = {o.order_id for o in recent}
    by_lane: dict[str, list[_Order]] = {}
    for o in orders:
        by_lane.setdefault(lane_of(o.terms.dest_lat_e6, o.terms.dest_lon_e6), []).append(o)
    return Scorecard(
        supplier=supplier,
        as_of=as_of,
        since=since,
        all_time=_figures(orders),
        recent=_figures(recent),
        lanes=tuple(
            LaneCard(
                lane=lane,
                all_time=_figures(members),
                recent=_figures([o for o in members if o.order_id in recent_ids]),
            )
            for lane, members in sorted(by_lane.items())
        )
        if lanes
        else (),
    )


def scorecards(events: Sequence[ChainEvent], as_of: int | None = None) -> dict[str, Scorecard]:
    """Every supplier's scorecard (by checksummed address), with its lanes.

    ``as_of`` (default: the newest event's block time) is the time the scorecards are
    for: later events are left out, and the recent figures cover the orders created in
    the :data:`RECENT_DAYS` before it."""
    as_of, since = _window(events, as_of)
    by_supplier: dict[str, list[_Order]] = {}
    for o in _orders(_until(events, as_of)).values():
        by_supplier.setdefault(o.terms.supplier, []).append(o)
    return {
        s: _card(s, orders, as_of, since, lanes=True) for s, orders in sorted(by_supplier.items())
    }


def lane_records(events: Sequence[ChainEvent], as_of: int | None = None) -> dict[str, LaneCard]:
    """Every lane's record over all suppliers."""
    as_of, since = _window(events, as_of)
    by_lane: dict[str, list[_Order]] = {}
    for o in _orders(_until(events, as_of)).values():
        by_lane.setdefault(lane_of(o.terms.dest_lat_e6, o.terms.dest_lon_e6), []).append(o)
    out = {}
    for lane, members in sorted(by_lane.items()):
        card = _card("", members, as_of, since, lanes=False)
        out[lane] = LaneCard(lane=lane, all_time=card.all_time, recent=card.recent)
    return out


def ranked(cards: Iterable[Scorecard]) -> list[Scorecard]:
    """Suppliers best first: by all-time ``score_bps`` (clean deliveries per finished
    order; suppliers with nothing finished last), then more finished orders, then
    address."""
    return sorted(
        cards,
        key=lambda c: (
            c.all_time.score_bps is None,
            -(c.all_time.score_bps or 0),
            -c.all_time.finished,
            c.supplier.lower(),
        ),
    )


# --- what proposed terms would have paid over a history -----------------------------------


@dataclass(frozen=True)
class Backtest:
    """Proposed terms applied to a history of finished orders (docs/scorecards.md, "Quotes").

    Each delivered order keeps its recorded lateness (seconds past its own deadline) and
    breach flag, and is settled again under the proposed terms and price; an expired
    order returns the whole price (10000 bps)."""

    basis: str  # "supplier", "lane" (all suppliers) or "supplier_lane"
    finished: int
    delivered: int
    late: int
    breached: int
    expired: int
    late_bps: int | None  # late × 10000 // delivered
    breach_bps: int | None  # breached × 10000 // delivered
    expiry_bps: int | None  # expired × 10000 // finished
    mean_refund_bps: int | None  # mean buyer share under the proposed terms, floor
    max_refund_bps: int | None
    expected_buyer_amount: int | None  # price × Σ refund bps // (10000 × finished)
    expected_supplier_amount: int | None


def _backtest(basis: str, orders: Sequence[_Order], terms: Terms) -> Backtest:
    delivered = [o for o in orders if o.late_seconds is not None]
    expired = [o for o in orders if o.expired_refund is not None]
    refunds = [
        settlement(
            terms.price,
            terms,
            terms.delivery_deadline + (o.late_seconds or 0),
            o.breach_kind is not None,
        ).refund_bps
        for o in delivered
    ] + [BPS] * len(expired)
    n = len(refunds)
    buyer = terms.price * sum(refunds) // (BPS * n) if n else None
    late = sum(1 for o in delivered if o.late_seconds)
    breached = sum(1 for o in delivered if o.breach_kind is not None)
    return Backtest(
        basis=basis,
        finished=n,
        delivered=len(delivered),
        late=late,
        breached=breached,
        expired=len(expired),
        late_bps=_ratio(late, len(delivered)),
        breach_bps=_ratio(breached, len(delivered)),
        expiry_bps=_ratio(len(expired), n),
        mean_refund_bps=sum(refunds) // n if n else None,
        max_refund_bps=max(refunds) if refunds else None,
        expected_buyer_amount=buyer,
        expected_supplier_amount=terms.price - buyer if buyer is not None else None,
    )


def backtests(
    events: Sequence[ChainEvent], terms: Terms, as_of: int | None = None
) -> tuple[Backtest, Backtest, Backtest]:
    """The proposed ``terms`` over the supplier's history, the lane's (all suppliers) and
    the supplier's on that lane, all time up to ``as_of``."""
    as_of, _ = _window(events, as_of)
    orders = list(_orders(_until(events, as_of)).values())
    lane = lane_of(terms.dest_lat_e6, terms.dest_lon_e6)
    mine = [o for o in orders if o.terms.supplier == terms.supplier]
    on_lane = [o for o in orders if lane_of(o.terms.dest_lat_e6, o.terms.dest_lon_e6) == lane]
    return (
        _backtest("supplier", mine, terms),
        _backtest("lane", on_lane, terms),
        _backtest(
            "supplier_lane", [o for o in on_lane if o.terms.supplier == terms.supplier], terms
        ),
    )
