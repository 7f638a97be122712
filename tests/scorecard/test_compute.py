"""Scorecards computed from hand-built event lists (definitions: docs/scorecards.md)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from backend.scorecard import RECENT_DAYS, ChainEvent, Figures, lane_of, ranked, scorecards
from backend.scorecard.compute import lane_records
from tests.scorecard.events import (
    ARBITER,
    BUYER,
    DEADLINE,
    ETH,
    HAMBURG,
    OTHER,
    SUPPLIER,
    T0,
    TOKEN,
    Chain,
)  # fmt: skip


def card(chain: Chain, supplier: str = SUPPLIER) -> Any:
    return scorecards(chain.events)[supplier]


def test_no_events_no_scorecards() -> None:
    assert scorecards([]) == {}
    assert ranked([]) == []


def test_a_created_order_counts_and_nothing_else() -> None:
    c = Chain()
    c.create(c.terms())
    f = card(c).all_time
    assert (f.orders, f.open, f.shipped, f.delivered) == (1, 1, 0, 0)
    assert f.on_time_bps is None and f.breach_bps is None and f.mean_late_secs is None
    assert f.score_bps is None and f.finished == 0
    [tok] = f.tokens
    assert (tok.token, tok.orders, tok.value, tok.closed_value, tok.paid_share_bps) == (
        ETH, 1, 10_000, 0, None)  # fmt: skip


def test_on_time_clean_delivery() -> None:
    c = Chain()
    oid = c.create(c.terms())
    c.ship(oid)
    c.deliver(oid)
    c.settle(oid, 0, 10_000)
    f = card(c).all_time
    assert (f.delivered, f.on_time, f.late, f.on_time_bps) == (1, 1, 0, 10_000)
    assert (f.mean_late_secs, f.p95_late_secs, f.max_late_secs) == (0, 0, 0)
    assert (f.clean, f.finished, f.score_bps, f.open) == (1, 1, 10_000, 0)
    assert f.tokens[0].paid_share_bps == 0


def test_late_past_the_cap_counts_the_capped_penalty() -> None:
    c = Chain()
    oid = c.create(c.terms())
    c.ship(oid)
    c.deliver(oid, late=30 * 3600 + 1)  # 31 started hours × 100 bps, capped at 2000
    c.settle(oid, 2_000, 8_000)
    f = card(c).all_time
    assert (f.on_time, f.late, f.on_time_bps, f.mean_late_secs) == (0, 1, 0, 30 * 3600 + 1)
    [tok] = f.tokens
    assert (tok.late_penalties, tok.breach_refunds, tok.paid_share_bps) == (2_000, 0, 2_000)
    assert f.score_bps == 0


def test_late_and_breached_split_into_penalty_and_refund() -> None:
    c = Chain()
    oid = c.create(c.terms())
    c.ship(oid)
    c.breach(oid, "excursion")
    c.deliver(oid, late=2 * 3600)  # 200 bps late + 3000 bps breach
    c.settle(oid, 3_200, 6_800)
    f = card(c).all_time
    [tok] = f.tokens
    assert (tok.late_penalties, tok.breach_refunds) == (200, 3_000)
    assert (f.breached, f.excursions, f.shocks, f.breach_bps, f.excursion_bps) == (
        1, 1, 0, 10_000, 10_000)  # fmt: skip


def test_excursion_and_shock_are_apart_and_rates_are_over_shipped_orders() -> None:
    c = Chain()
    for kind in ("excursion", "shock", None, None):
        oid = c.create(c.terms())
        c.ship(oid)
        if kind:
            c.breach(oid, kind)
    c.create(c.terms())  # never shipped: not in the breach rate
    f = card(c).all_time
    assert (f.orders, f.shipped, f.breached, f.excursions, f.shocks) == (5, 4, 2, 1, 1)
    assert (f.breach_bps, f.excursion_bps, f.shock_bps) == (5_000, 2_500, 2_500)


def test_mean_and_p95_lateness_nearest_rank() -> None:
    c = Chain()
    lateness = [0] * 18 + [3600, 7200]  # 20 deliveries: p95 is the 19th = 3600
    for late in lateness:
        oid = c.create(c.terms())
        c.ship(oid)
        c.deliver(oid, late=late)
    f = card(c).all_time
    assert f.mean_late_secs == (3600 + 7200) // 20
    assert (f.p95_late_secs, f.max_late_secs, f.on_time_bps) == (3600, 7200, 9_000)


@pytest.mark.parametrize(
    ("ruled_buyer", "opened_by", "expected"),
    [
        (10_000, BUYER, (1, 0, 0)),  # more than the terms' 3000: for the buyer
        (0, SUPPLIER, (0, 1, 0)),  # less: for the supplier
        (3_000, BUYER, (0, 0, 1)),  # the terms' split kept
    ],
)
def test_disputes_ruled_each_way(ruled_buyer: int, opened_by: str, expected: tuple) -> None:
    c = Chain()
    oid = c.create(c.terms(dispute_window_secs=86_400))
    c.ship(oid)
    c.breach(oid, "shock")
    c.deliver(oid)
    c.emit("DisputeOpened", DEADLINE, orderId=oid, by=opened_by)
    c.emit("DisputeResolved", DEADLINE + 60, orderId=oid, arbiter=ARBITER,
           buyerAmount=ruled_buyer, supplierAmount=10_000 - ruled_buyer)  # fmt: skip
    f = card(c).all_time
    assert (f.rulings_for_buyer, f.rulings_for_supplier, f.rulings_as_terms) == expected
    assert f.disputes_opened == 1 and f.disputes_pending == 0 and f.open == 0
    assert (f.disputes_by_buyer, f.disputes_by_supplier) == (
        (1, 0) if opened_by == BUYER else (0, 1))  # fmt: skip
    [tok] = f.tokens
    assert (tok.ruled_refunds, tok.closed_value, tok.late_penalties, tok.breach_refunds) == (
        ruled_buyer, 10_000, 0, 0)  # fmt: skip
    assert tok.paid_share_bps == ruled_buyer


def test_a_pending_and_a_lapsed_dispute() -> None:
    c = Chain()
    pending = c.create(c.terms(dispute_window_secs=86_400))
    lapsed = c.create(c.terms(dispute_window_secs=86_400))
    for oid in (pending, lapsed):
        c.ship(oid)
        c.deliver(oid)
        c.emit("DisputeOpened", DEADLINE, orderId=oid, by=BUYER)
    c.settle(lapsed, 0, 10_000)  # the arbiter let the period pass
    f = card(c).all_time
    assert (f.disputes_opened, f.disputes_pending, f.disputes_lapsed, f.open) == (2, 1, 1, 1)


def test_expiry_and_cancellation() -> None:
    c = Chain()
    gone = c.create(c.terms())
    c.ship(gone)
    c.emit("OrderExpired", DEADLINE + 2 * 86_400, orderId=gone, refunded=10_000)
    cancelled = c.create(c.terms())
    c.emit("OrderCancelled", T0 + 60, orderId=cancelled, by=BUYER)
    f = card(c).all_time
    assert (f.expired, f.cancelled, f.finished, f.clean, f.score_bps, f.open) == (
        1, 1, 1, 0, 0, 0)  # fmt: skip
    [tok] = f.tokens
    assert (tok.expiry_refunds, tok.closed_value, tok.paid_share_bps) == (10_000, 0, None)


def test_tokens_are_never_added_together() -> None:
    c = Chain()
    c.create(c.terms(price=5))
    c.create(c.terms(price=2**80, token=TOKEN))
    f = card(c).all_time
    assert [(t.token, t.value) for t in f.tokens] == [(ETH, 5), (TOKEN, 2**80)]


def test_recent_window_and_lanes() -> None:
    c = Chain()
    old = T0 - (RECENT_DAYS + 1) * 86_400
    c.create(c.terms(dest=HAMBURG), at=old)
    c.create(c.terms(), at=T0)
    sc = card(c)
    assert sc.as_of == T0 and sc.since == T0 - RECENT_DAYS * 86_400
    assert (sc.all_time.orders, sc.recent.orders) == (2, 1)
    lanes = {lane.lane: lane for lane in sc.lanes}
    assert set(lanes) == {"51.9,4.0", "53.5,9.9"}
    assert (lanes["53.5,9.9"].all_time.orders, lanes["53.5,9.9"].recent.orders) == (1, 0)
    assert scorecards(c.events, as_of=old)[SUPPLIER].recent.orders == 1  # the old one only


def test_lane_cells() -> None:
    assert lane_of(51_950_000, 4_050_000) == "51.9,4.0"
    assert lane_of(-33_860_000, 151_200_000) == "-33.9,151.2"  # floor: south of -33.8
    assert lane_of(-50_000, 0) == "-0.1,0.0"
    assert lane_of(0, 99_999) == "0.0,0.0"


def test_lane_records_cover_all_suppliers() -> None:
    c = Chain()
    c.create(c.terms())
    c.create(c.terms(supplier=OTHER))
    assert lane_records(c.events)["51.9,4.0"].all_time.orders == 2


def test_ranking_best_first_nothing_finished_last() -> None:
    c = Chain()
    good = c.create(c.terms(supplier=OTHER))
    c.ship(good)
    c.deliver(good)
    bad = c.create(c.terms())
    c.ship(bad)
    c.deliver(bad, late=60)
    third = "0x7777777777777777777777777777777777777777"
    c.create(c.terms(supplier=third))
    order = [sc.supplier for sc in ranked(scorecards(c.events).values())]
    assert order == [OTHER, SUPPLIER, third]


def test_events_of_unknown_orders_and_other_events_are_ignored() -> None:
    c = Chain()
    c.emit("OrderShipped", T0, orderId=99, deviceCount=1, shippedAt=T0)
    c.emit("FundsDeposited", T0, orderId=99, payer=BUYER, token=ETH, amount=1)
    assert scorecards(c.events) == {}


def test_decoded_and_stored_arguments_read_the_same() -> None:
    c = Chain()
    terms = c.terms(price=2**60)
    c.create(terms)
    stored = scorecards(c.events)
    decoded = [
        ChainEvent(e.name, e.block_number, e.log_index, e.timestamp,
                   {**e.args, "terms": terms.as_tuple(), "orderId": str(e.args["orderId"])})
        for e in c.events
    ]  # fmt: skip
    assert scorecards(decoded) == stored


def test_figures_default_is_the_empty_record() -> None:
    empty = Figures()
    assert all(getattr(empty, f.name) in (0, None, ()) for f in fields(Figures))


def test_backtest_settles_the_history_again_under_the_proposed_terms() -> None:
    from backend.scorecard import backtests

    c = Chain()
    on_time = c.create(c.terms())
    c.ship(on_time)
    c.deliver(on_time)
    late = c.create(c.terms())
    c.ship(late)
    c.deliver(late, late=5 * 3600)  # 5 started hours
    shocked = c.create(c.terms(dest=HAMBURG))
    c.ship(shocked)
    c.breach(shocked, "shock")
    c.deliver(shocked)
    gone = c.create(c.terms())
    c.ship(gone)
    c.emit("OrderExpired", DEADLINE + 3 * 86_400, orderId=gone, refunded=10_000)
    c.create(c.terms(supplier=OTHER))  # open: not in any history
    proposed = c.terms(
        price=1_000_000, late_penalty_bps_per_hour=300, late_penalty_cap_bps=1000,
        breach_refund_bps=5000,
    )  # fmt: skip
    supplier, lane, supplier_lane = backtests(c.events, proposed)
    # refunds: 0, min(1000, 5 × 300) = 1000, 5000, expired 10000
    assert (supplier.finished, supplier.delivered, supplier.late, supplier.breached) == (4, 3, 1, 1)
    assert (supplier.mean_refund_bps, supplier.max_refund_bps) == (16_000 // 4, 10_000)
    assert supplier.expected_buyer_amount == 1_000_000 * 16_000 // 40_000
    assert supplier.expected_supplier_amount == 1_000_000 - supplier.expected_buyer_amount
    assert (supplier.late_bps, supplier.breach_bps, supplier.expiry_bps) == (3_333, 3_333, 2_500)
    # Rotterdam: on time, late, expired
    assert (lane.basis, lane.finished, lane.mean_refund_bps) == ("lane", 3, 11_000 // 3)
    assert (supplier_lane.basis, supplier_lane.finished) == ("supplier_lane", 3)
    empty = backtests(c.events, c.terms(supplier=OTHER, dest=(0, 0)))
    assert all(b.finished == 0 and b.expected_buyer_amount is None for b in empty)
