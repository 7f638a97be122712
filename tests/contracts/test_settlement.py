"""Settlement math, table-driven, against an independent implementation in this module.

The expected split is computed here from DESIGN.md §4 with exact fractions — not with
the contract's integer formula and not with backend.chain.settlement — and compared
with what the contracts actually credit (FundsCredited events, creditOf) and with the
balances after both parties withdraw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import pytest

from backend.chain.contracts import ETH, OrderState
from backend.chain.testing import Stack
from tests.contracts.helpers import DAY, GAS, HOUR, Orders, cert, events, reading, sign

pytestmark = pytest.mark.timeout(300)

BPS = 10_000


def expected_split(
    price: int,
    late_seconds: int,
    rate_bps_per_hour: int,
    cap_bps: int,
    breached: bool,
    breach_bps: int,
) -> tuple[int, int]:
    """(buyer, supplier) by DESIGN.md §4, written independently of the contract.

    late hours are *started* hours: ceil(late / 1 h); the late penalty is capped; the
    total refund never exceeds the whole price; the buyer's share is rounded down.
    """
    started_hours = math.ceil(Fraction(max(0, late_seconds), HOUR))
    late_bps = min(cap_bps, started_hours * rate_bps_per_hour)
    refund = Fraction(min(BPS, late_bps + (breach_bps if breached else 0)), BPS)
    buyer = math.floor(price * refund)
    return buyer, price - buyer


def test_the_model_itself() -> None:
    # hand-computed anchors, so the model cannot drift with the contract
    assert expected_split(1_000_001, 0, 100, 2000, True, 333) == (33_300, 966_701)
    assert expected_split(10_000, 3600, 100, 2000, False, 0) == (100, 9_900)
    assert expected_split(10_000, 3601, 100, 2000, False, 0) == (200, 9_800)
    assert expected_split(10_000, -5, 100, 2000, True, 0) == (0, 10_000)
    assert expected_split(7, 10 * HOUR, 1000, 5000, True, 9000) == (7, 0)


@dataclass(frozen=True)
class Case:
    name: str
    price: int
    late: int  # delivery time minus deadline, seconds (negative = early)
    rate: int = 100
    cap: int = 2000
    breach_bps: int = 3000
    breached: bool = False


CASES = [
    Case("early", 1_000_000, -HOUR),
    Case("at-deadline", 1_000_000, 0),
    Case("late-1s", 1_000_000, 1),
    Case("late-3600s", 1_000_000, 3600),
    Case("late-3601s", 1_000_000, 3601),
    Case("late-within-cap", 1_000_000, 5 * HOUR - 17),
    Case("late-at-cap", 1_000_000, 20 * HOUR),
    Case("late-past-cap", 1_000_000, 30 * HOUR + 1),
    Case("breach-on-time", 1_000_000, -10, breached=True),
    Case("breach-and-late", 1_000_000, 5 * HOUR, breached=True),
    Case(
        "refund-capped-at-10000",
        1_000_000,
        10 * HOUR,
        rate=1000,
        cap=5000,
        breach_bps=9000,
        breached=True,
    ),
    Case("full-breach-refund", 1_000_000, 0, breach_bps=10_000, breached=True),
    Case("uneven-breach-333bps", 1_000_001, 0, breach_bps=333, breached=True),
    Case("uneven-late", 999_999, 2 * HOUR, rate=333, cap=10_000, breach_bps=0),
    Case("uneven-both", 123_456_789, HOUR + 1, rate=7, cap=13, breach_bps=1, breached=True),
    Case("zero-rate", 1_000_000, 100 * HOUR, rate=0),
    Case("zero-cap", 1_000_000, 100 * HOUR, cap=0, breached=True),
    Case("one-wei", 1, 0, breach_bps=9_999, breached=True),
]


def _terms(orders: Orders, case: Case, token: str, *, window: int = 0):  # type: ignore[no-untyped-def]
    kwargs = dict(
        price=case.price,
        late_penalty_bps_per_hour=case.rate,
        late_penalty_cap_bps=case.cap,
        breach_refund_bps=case.breach_bps,
        max_shock_milli_g=2_000,
        dispute_window_secs=window,
        delivery_deadline=orders.stack.chain.now() + 2 * DAY,
        expiry_grace_secs=30 * DAY,
    )
    return orders.token_terms(**kwargs) if token == "erc20" else orders.terms(**kwargs)


def _balance(stack: Stack, token: str, account: str) -> int:
    return stack.chain.balance(account) if token == ETH else stack.token.balance_of(account)


def _withdraw_and_check(stack: Stack, token: str, expected: dict[str, int]) -> None:
    """Each credited party withdraws; its balance rises by exactly its credit (ETH: net of gas)."""
    escrow_before = _balance(stack, token, stack.escrow.address)
    owed_before = stack.escrow.total_owed(token)
    for party, amount in expected.items():
        acct = getattr(stack.accounts, party)
        if amount == 0:
            continue
        before = _balance(stack, token, acct.address)
        result = stack.escrow.withdraw(token, by=acct)
        assert events(result, "Escrow") == [
            ("FundsWithdrawn", {"account": acct.address, "token": token, "amount": amount})
        ]
        fee = result.gas_used * result.effective_gas_price if token == ETH else 0
        assert _balance(stack, token, acct.address) == before + amount - fee
        assert stack.escrow.credit_of(acct.address, token) == 0
    paid = sum(expected.values())
    assert _balance(stack, token, stack.escrow.address) == escrow_before - paid
    assert stack.escrow.total_owed(token) == owed_before - paid


@pytest.mark.parametrize("token_kind", ["eth", "erc20"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_settlement_by_device_arrival(
    stack: Stack, orders: Orders, case: Case, token_kind: str
) -> None:
    a = stack.accounts
    terms = _terms(orders, case, token_kind)
    token = terms.token
    oid = orders.shipped(terms)
    shipped_at = stack.po.get_order(oid).timestamp
    deadline = terms.delivery_deadline
    delivered_at = deadline + case.late
    assert delivered_at > shipped_at

    buyer_amount, supplier_amount = expected_split(
        case.price, case.late, case.rate, case.cap, case.breached, case.breach_bps
    )
    if case.breached:
        shock = sign(stack, reading(oid, 1, shipped_at, shock_milli_g=2_001))
        result = stack.qv.prove_shock(oid, terms, shock, cert(stack, oid), by=a.stranger, gas=GAS)
        assert ("BreachRecorded", {"orderId": oid}) in events(result)
    # the contract's own preview agrees before anything is final
    assert stack.po.preview_settlement(oid, delivered_at) == (buyer_amount, supplier_amount)

    stack.chain.time_travel(max(delivered_at, stack.chain.now() + 1))
    arrival = sign(stack, reading(oid, 2, delivered_at))
    credits_before = {
        p: stack.escrow.credit_of(getattr(a, p).address, token) for p in ("buyer", "supplier")
    }
    result = stack.qv.prove_arrival(
        oid, terms, [arrival], [cert(stack, oid)], by=a.stranger, gas=GAS
    )

    expected_events = [
        (
            "OrderDelivered",
            {
                "orderId": oid,
                "deliveredAt": delivered_at,
                "lateSeconds": max(0, case.late),
                "confirmedBy": a.stranger.address,
            },
        ),
        (
            "OrderSettled",
            {"orderId": oid, "buyerAmount": buyer_amount, "supplierAmount": supplier_amount},
        ),
    ]
    for party, amount in (("buyer", buyer_amount), ("supplier", supplier_amount)):
        if amount:
            expected_events.append(
                (
                    "FundsCredited",
                    {
                        "orderId": oid,
                        "account": getattr(a, party).address,
                        "token": token,
                        "amount": amount,
                    },
                )
            )
    assert events(result, "PurchaseOrders") + events(result, "Escrow") == expected_events
    assert stack.po.get_order(oid).state is OrderState.SETTLED
    credited = {"buyer": buyer_amount, "supplier": supplier_amount}
    for party, amount in credited.items():
        assert (
            stack.escrow.credit_of(getattr(a, party).address, token)
            == credits_before[party] + amount
        )
    assert buyer_amount + supplier_amount == case.price

    _withdraw_and_check(stack, token, credited)


BOUNDARIES = [-1, 0, 1, 3599, 3600, 3601, 7200, 7201]


@pytest.mark.parametrize("late", BOUNDARIES)
def test_buyer_receipt_at_exact_hour_boundaries(stack: Stack, orders: Orders, late: int) -> None:
    """confirmReceipt delivers at block.timestamp: set it to the second."""
    a = stack.accounts
    case = Case("receipt", 10_000_003, late, rate=250, cap=10_000)
    terms = _terms(orders, case, "eth")
    oid = orders.shipped(terms)
    stack.chain.set_next_block_timestamp(terms.delivery_deadline + late)
    result = stack.po.confirm_receipt(oid, by=a.buyer, gas=GAS)
    buyer_amount, supplier_amount = expected_split(case.price, late, 250, 10_000, False, 0)
    assert result.event("OrderDelivered")["lateSeconds"] == max(0, late)
    assert result.event("OrderSettled").args == {
        "orderId": oid,
        "buyerAmount": buyer_amount,
        "supplierAmount": supplier_amount,
    }
    assert stack.escrow.credit_of(a.buyer.address) == buyer_amount
    assert stack.escrow.credit_of(a.supplier.address) == supplier_amount


@pytest.mark.parametrize("token_kind", ["eth", "erc20"])
def test_split_after_a_dispute_window_is_the_same(
    stack: Stack, orders: Orders, token_kind: str
) -> None:
    a = stack.accounts
    case = Case("window", 1_000_001, 3 * HOUR + 5, breach_bps=333, breached=True)
    terms = _terms(orders, case, token_kind, window=DAY)
    oid = orders.shipped(terms)
    shipped_at = stack.po.get_order(oid).timestamp
    shock = sign(stack, reading(oid, 1, shipped_at, shock_milli_g=9_999))
    stack.qv.prove_shock(oid, terms, shock, cert(stack, oid), by=a.buyer, gas=GAS)
    delivered_at = terms.delivery_deadline + case.late
    stack.chain.set_next_block_timestamp(delivered_at)
    stack.po.confirm_receipt(oid, by=a.buyer, gas=GAS)
    assert stack.po.get_order(oid).state is OrderState.DELIVERED
    stack.chain.set_next_block_timestamp(delivered_at + DAY)
    result = stack.po.settle_order(oid, by=a.stranger, gas=GAS)
    buyer_amount, supplier_amount = expected_split(case.price, case.late, 100, 2000, True, 333)
    assert result.event("OrderSettled")["buyerAmount"] == buyer_amount
    assert result.event("OrderSettled")["supplierAmount"] == supplier_amount
    _withdraw_and_check(stack, terms.token, {"buyer": buyer_amount, "supplier": supplier_amount})


def test_withdrawals_collect_credits_of_several_orders(stack: Stack, orders: Orders) -> None:
    """Credits add up per account and token; one withdrawal takes them all."""
    a = stack.accounts
    total = {"buyer": 0, "supplier": 0}
    for price, late in ((1_000, 1), (2_001, 2 * HOUR), (3_333, -1)):
        case = Case("multi", price, late)
        terms = _terms(orders, case, "eth")
        oid = orders.shipped(terms, devices=(1,))
        delivered_at = terms.delivery_deadline + late
        stack.chain.time_travel(max(delivered_at, stack.chain.now() + 1))
        arrival = sign(stack, reading(oid, 1, delivered_at))
        stack.qv.prove_arrival(oid, terms, [arrival], [cert(stack, oid)], by=a.supplier, gas=GAS)
        b, s = expected_split(price, late, 100, 2000, False, 0)
        total["buyer"] += b
        total["supplier"] += s
    assert stack.escrow.credit_of(a.buyer.address) == total["buyer"]
    assert stack.escrow.credit_of(a.supplier.address) == total["supplier"]
    _withdraw_and_check(stack, ETH, total)
