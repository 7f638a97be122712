"""Hypothesis stateful test: random calls by random parties against the real contracts.

The machine keeps its own model of every order (state, deposit, delivery, breach) and
of every credit, predicts for each call whether the contracts must accept or refuse it
(and with which error), and after every step checks that

* the escrow holds exactly what it still owes, in ETH and in the token:
  balance == totalOwed == unreleased deposits + unwithdrawn credits (the model's sum);
* every credit the model expects is the contract's ``creditOf``;
* every order is in the state the model says — once terminal it never leaves it — with
  the model's flags, timestamp and terms digest;
* the credits of a released order sum to its deposit (checked on the FundsCredited
  events of the releasing transaction), and a funded order is released exactly when it
  is terminal.

Devices are certified: each order names issuer 1 (and sometimes issuer 2, with an
arrival quorum of 0, 1 or 2); shipments bind device 1 (and device 100 of issuer 2),
evidence carries their certificates, and a supplier-held device's arrival is refused.
Calls with terms other than the order's are refused (``PurchaseOrdersWrongTerms``).

At the end of each example every open order is driven to a terminal state and every
credit is withdrawn: the escrow must then owe nothing and hold nothing more than it
held before the example — no path leaves money stuck. Each example runs inside an EVM
snapshot that is reverted afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from backend.chain.contracts import ETH, OrderState, Terms
from backend.chain.errors import ContractRevert, TransactionFailed
from backend.chain.sender import TxResult
from backend.chain.testing import Stack, certify, default_terms, device, issuer
from backend.telemetry.certificates import DeviceCertificate, sign_certificate
from tests.contracts.helpers import DAY, GAS, HOUR, cert, reading, sign
from tests.contracts.test_settlement import expected_split

pytestmark = pytest.mark.timeout(600)

S = OrderState
TERMINAL = {S.SETTLED, S.CANCELLED, S.RESOLVED, S.EXPIRED}
ARBITRATION = 30 * DAY
#: 0–4 pick one of five accounts; 5–9 pick the party the call is meant for (so that
#: half of the calls can succeed and the orders get somewhere)
CALLER = st.integers(0, 9)
SHOCK_LIMIT = 1_000
#: the second issuer's device (tests.contracts.helpers.Orders.certs' convention)
SECOND_DEVICE = 100
#: a device whose key the supplier holds, certified by the supplier itself
ROGUE_DEVICE = 666


@dataclass
class Model:
    """What the test believes one order is."""

    order_id: int
    terms: Terms
    buyer: LocalAccount
    token: str
    price: int
    deadline: int
    grace: int
    window: int
    rate: int
    cap: int
    breach_bps: int
    quorum: int = 1
    second_issuer: bool = False
    created_at: int = 0
    state: OrderState = S.CREATED
    funded: bool = False
    released: bool = False
    breached: bool = False
    shipped_at: int = 0
    delivered_at: int = 0
    disputed_at: int = 0


class EscrowMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self, stack: Stack) -> None:
        super().__init__()
        self.stack = stack
        self.a = stack.accounts
        self.snapshot_id = stack.chain.snapshot()
        self.token = stack.token.address
        self.models: dict[int, Model] = {}
        self.credits: dict[tuple[str, str], int] = {}
        # what the escrow held before this example (earlier examples are reverted, but be exact)
        self.base_owed = {t: stack.escrow.total_owed(t) for t in (ETH, self.token)}
        self.base_held = {t: self._held(t) for t in (ETH, self.token)}
        self.callers = [
            self.a.buyer,
            self.a.auditor,
            self.a.supplier,
            self.a.arbiter,
            self.a.stranger,
        ]

    # ---- plumbing ----------------------------------------------------------------------

    def _held(self, token: str) -> int:
        if token == ETH:
            return self.stack.chain.balance(self.stack.escrow.address)
        return self.stack.token.balance_of(self.stack.escrow.address)

    def _next_ts(self) -> int:
        """Pin the next block's timestamp so the model knows block.timestamp exactly."""
        ts = self.stack.chain.now() + 1
        self.stack.chain.set_next_block_timestamp(ts)
        return ts

    def _send(self, expect: str | None, fn: Any) -> TxResult | None:
        """Run ``fn``; it must succeed when ``expect`` is None, else revert with that error."""
        if expect is None:
            result: TxResult = fn()
            event(f"ok: {result.function}")
            return result
        event(f"refused: {expect}")
        try:
            fn()
        except ContractRevert as exc:
            assert exc.name == expect, f"expected {expect}, got {exc.signature}"
            return None
        except TransactionFailed:
            # The sender explains a mined revert by replaying it one block earlier; a
            # check that depends on the block time may pass there. Only such checks.
            assert expect == "PurchaseOrdersDisputeWindow", expect
            return None
        raise AssertionError(f"expected the call to revert with {expect}, but it succeeded")

    def _who(self, caller: int, right: LocalAccount) -> LocalAccount:
        return self.callers[caller] if caller < len(self.callers) else right

    def _credit(self, account: str, token: str, amount: int) -> None:
        key = (account, token)
        self.credits[key] = self.credits.get(key, 0) + amount

    def _release(self, m: Model, result: TxResult, buyer_amount: int) -> None:
        """The order's deposit became credits: check the events, update the model."""
        credited = [e.args for e in result.events if e.name == "FundsCredited"]
        assert all(c["orderId"] == m.order_id and c["token"] == m.token for c in credited)
        assert sum(c["amount"] for c in credited) == m.price, "credits must sum to the deposit"
        expected = {m.buyer.address: buyer_amount, self.a.supplier.address: m.price - buyer_amount}
        assert {c["account"]: c["amount"] for c in credited} == {
            k: v for k, v in expected.items() if v
        }
        assert not m.released
        m.released = True
        for account, amount in expected.items():
            self._credit(account, m.token, amount)

    def _settle(self, m: Model, result: TxResult) -> None:
        buyer, supplier = expected_split(
            m.price, m.delivered_at - m.deadline, m.rate, m.cap, m.breached, m.breach_bps
        )
        assert result.event("OrderSettled").args == {
            "orderId": m.order_id,
            "buyerAmount": buyer,
            "supplierAmount": supplier,
        }
        m.state = S.SETTLED
        self._release(m, result, buyer)

    def _refund(self, m: Model, result: TxResult, state: OrderState) -> None:
        m.state = state
        if m.funded:
            self._release(m, result, m.price)
        else:
            assert not [e for e in result.events if e.name == "FundsCredited"]

    def _approve(self, buyer: LocalAccount, amount: int) -> None:
        token = self.stack.token
        token._tx("mint", (buyer.address, amount), self.a.admin, gas=GAS)
        token._tx("approve", (self.stack.escrow.address, amount), buyer, gas=GAS)

    # ---- rules: creation and funding -----------------------------------------------------

    @initialize()
    def check_start(self) -> None:
        self.check_money()

    @rule(
        target=orders,
        fund=st.booleans(),
        erc20=st.booleans(),
        price=st.integers(1, 5 * 10**18),
        buyer=st.sampled_from(["buyer", "auditor"]),
        deadline=st.sampled_from([HOUR, DAY, 3 * DAY]),
        grace=st.sampled_from([0, HOUR, DAY]),
        window=st.sampled_from([0, 0, HOUR, DAY]),
        rate=st.sampled_from([0, 100, 333]),
        cap=st.sampled_from([0, 2_000, 10_000]),
        breach_bps=st.sampled_from([0, 3_000, 10_000]),
        witnesses=st.sampled_from([(1, False), (1, False), (1, True), (2, True), (0, False)]),
    )
    def create(
        self,
        fund: bool,
        erc20: bool,
        price: int,
        buyer: str,
        deadline: int,
        grace: int,
        window: int,
        rate: int,
        cap: int,
        breach_bps: int,
        witnesses: tuple[int, bool],
    ) -> int:
        quorum, second = witnesses
        who: LocalAccount = getattr(self.a, buyer)
        token = self.token if erc20 else ETH
        if erc20:
            price = price % 10**12 + 1
        now = self.stack.chain.now()
        terms: Terms = default_terms(
            now,
            self.a.arbiter.address,
            token=token,
            price=price,
            delivery_deadline=now + deadline,
            expiry_grace_secs=grace,
            dispute_window_secs=window,
            late_penalty_bps_per_hour=rate,
            late_penalty_cap_bps=cap,
            breach_refund_bps=breach_bps,
            max_shock_milli_g=SHOCK_LIMIT,
            buyer=who.address,
            supplier=self.a.supplier.address,
            second_device_issuer=issuer(2) if second else ETH,
            arrival_quorum=quorum,
        )
        if fund and erc20:
            self._approve(who, price)
        created = self._next_ts()
        po = self.stack.po
        if fund:
            result = po.create_and_fund_order(terms, by=who, gas=GAS)
        else:
            result = po.create_order(terms, by=who, gas=GAS)
        oid = int(result.value)
        self.models[oid] = Model(
            oid, terms, who, token, price, now + deadline, grace, window, rate, cap, breach_bps
        )
        m = self.models[oid]
        m.funded, m.quorum, m.second_issuer, m.created_at = fund, quorum, second, created
        return oid

    def _certs(self, m: Model) -> list[Any]:
        """The certificates of the order's witnesses: device 1 by issuer 1, and device
        100 by issuer 2 when the terms name a second issuer."""
        out = [cert(self.stack, m.order_id, 1, 1)]
        if m.second_issuer:
            out.append(cert(self.stack, m.order_id, SECOND_DEVICE, 2))
        return out

    def _supplier_expects(self, who: LocalAccount, m: Model, state: OrderState) -> str | None:
        """The error a supplier-only step from ``state`` expects when ``who`` takes it."""
        if who != self.a.supplier:
            return "PurchaseOrdersNotSupplier"
        return "PurchaseOrdersInvalidState" if m.state != state else None

    def accept(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, self.a.supplier)
        expect = self._supplier_expects(who, m, S.CREATED)
        self._next_ts()
        if self._send(
            expect, lambda: self.stack.po.accept_order(order, terms=m.terms, by=who, gas=GAS)
        ):
            m.state = S.FUNDED if m.funded else S.ACCEPTED

    def fund(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, m.buyer)
        if who != m.buyer:
            expect: str | None = "PurchaseOrdersNotBuyer"
        elif m.funded:
            expect = "PurchaseOrdersAlreadyFunded"
        elif m.state not in (S.CREATED, S.ACCEPTED):
            expect = "PurchaseOrdersInvalidState"
        else:
            expect = None
        if m.token != ETH:
            self._approve(who, m.price)
        value = m.price if m.token == ETH else 0
        self._next_ts()
        if self._send(
            expect,
            lambda: self.stack.po.fund_order(order, terms=m.terms, by=who, value=value, gas=GAS),
        ):
            m.funded = True
            if m.state == S.ACCEPTED:
                m.state = S.FUNDED

    # ---- rules: transit and delivery ------------------------------------------------------

    def ship(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, self.a.supplier)
        expect = self._supplier_expects(who, m, S.FUNDED)
        ts = self._next_ts()
        certs = self._certs(m)
        if self._send(
            expect,
            lambda: self.stack.po.ship_order(order, certs, terms=m.terms, by=who, gas=GAS),
        ):
            m.state, m.shipped_at = S.SHIPPED, ts

    def breach(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, self.a.stranger)
        if m.shipped_at == 0 or m.state != S.SHIPPED:
            expect: str | None = "QualityVerificationOrderNotInTransit"
        elif m.breached:
            expect = "QualityVerificationAlreadyBreached"
        else:
            expect = None
        # a breach by any certified device stands: the second issuer's when there is one
        c = self._certs(m)[-1]
        n = SECOND_DEVICE if m.second_issuer else 1
        r = reading(order, 1, max(m.shipped_at, 1), shock_milli_g=SHOCK_LIMIT + 1)
        shock = sign(self.stack, r, device=n)
        self._next_ts()
        if self._send(
            expect, lambda: self.stack.qv.prove_shock(order, m.terms, shock, c, by=who, gas=GAS)
        ):
            m.breached = True

    def _delivered(self, m: Model, result: TxResult, delivered_at: int) -> None:
        m.delivered_at = delivered_at
        assert result.event("OrderDelivered")["deliveredAt"] == delivered_at
        if m.window == 0:
            self._settle(m, result)
        else:
            m.state = S.DELIVERED

    def arrive(self, order: int, caller: int, offset: int) -> None:
        m = self.models[order]
        who = self._who(caller, self.a.stranger)
        ts = self.stack.chain.now() + 1
        span = ts - m.shipped_at + 1
        at = m.shipped_at + offset % span if m.shipped_at else ts
        readings = [sign(self.stack, reading(order, 2, at))]
        certs = self._certs(m)
        # with two witnesses, the second one's reading at another moment; one in five
        # calls leaves it out (the quorum is then not met)
        partial = offset % 5 == 0
        if m.second_issuer and not partial:
            at2 = m.shipped_at + (offset // 7) % span if m.shipped_at else ts
            readings.append(sign(self.stack, reading(order, 3, at2), device=SECOND_DEVICE))
        else:
            certs = certs[:1]
        provided = len(readings)
        # the readings and the quorum are checked first, then (by PurchaseOrders) the order
        if m.quorum == 0 or provided < m.quorum:
            expect: str | None = "QualityVerificationQuorumNotMet"
        elif m.shipped_at == 0 or m.state != S.SHIPPED:
            expect = "QualityVerificationOrderNotInTransit"
        else:
            expect = None
        self.stack.chain.set_next_block_timestamp(ts)
        result = self._send(
            expect,
            lambda: self.stack.qv.prove_arrival(order, m.terms, readings, certs, by=who, gas=GAS),
        )
        if result:
            self._delivered(m, result, max(r.reading.timestamp for r in readings))

    def rogue_arrival(self, order: int, offset: int) -> None:
        """The fake arrival: the supplier signs a reading in the geofence with a key it
        holds, "certified" by itself. Refused whatever the order's state or terms (the
        certificate is checked before the order)."""
        m = self.models[order]
        ts = self.stack.chain.now() + 1
        at = max(m.shipped_at, ts - offset % HOUR)
        fake = sign(self.stack, reading(order, 9, at), device=ROGUE_DEVICE)
        key = bytes(self.a.supplier.key)
        # certified by the supplier itself (not an issuer of the terms) ...
        own = certify(self.stack.domain, order, device(ROGUE_DEVICE), "0x" + key.hex())
        # ... or claiming issuer 1 with the supplier's signature
        claim = DeviceCertificate(
            order_id=order,
            device=device(ROGUE_DEVICE),
            issuer=issuer(1),
            valid_from=0,
            valid_until=own.certificate.valid_until,
        )
        forged = sign_certificate(claim, self.stack.domain, key)
        for c, name in (
            (own, "QualityVerificationUncertifiedDevice"),
            (forged, "QualityVerificationForgedCertificate"),
            (cert(self.stack, order, 1, 1), "QualityVerificationUnknownDevice"),
        ):
            expect = name
            self.stack.chain.set_next_block_timestamp(ts)
            self._send(
                expect,
                lambda c=c: self.stack.qv.prove_arrival(
                    order, m.terms, [fake], [c], by=self.a.supplier, gas=GAS
                ),
            )
            ts += 1

    def receipt(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, m.buyer)
        expect = (
            "PurchaseOrdersNotBuyer"
            if who != m.buyer
            else "PurchaseOrdersInvalidState"
            if m.state != S.SHIPPED
            else None
        )
        ts = self._next_ts()
        result = self._send(
            expect, lambda: self.stack.po.confirm_receipt(order, terms=m.terms, by=who, gas=GAS)
        )
        if result:
            self._delivered(m, result, ts)

    # ---- rules: disputes and settlement ---------------------------------------------------

    def dispute(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, m.buyer)
        ts = self.stack.chain.now() + 1
        if who not in (m.buyer, self.a.supplier):
            expect: str | None = "PurchaseOrdersNotParty"
        elif m.state != S.DELIVERED:
            expect = "PurchaseOrdersInvalidState"
        elif ts >= m.delivered_at + m.window:
            expect = "PurchaseOrdersDisputeWindow"
        else:
            expect = None
        self.stack.chain.set_next_block_timestamp(ts)
        if self._send(
            expect, lambda: self.stack.po.open_dispute(order, terms=m.terms, by=who, gas=GAS)
        ):
            m.state, m.disputed_at = S.DISPUTED, ts

    def rule_dispute(self, order: int, caller: int, share: int) -> None:
        m = self.models[order]
        who = self._who(caller, self.a.arbiter)
        amount = m.price * share // 10_000
        if who != self.a.arbiter:
            expect: str | None = "PurchaseOrdersNotArbiter"
        elif m.state != S.DISPUTED:
            expect = "PurchaseOrdersInvalidState"
        elif amount > m.price:
            expect = "PurchaseOrdersInvalidRuling"
        else:
            expect = None
        self._next_ts()
        result = self._send(
            expect,
            lambda: self.stack.po.resolve_dispute(order, amount, terms=m.terms, by=who, gas=GAS),
        )
        if result:
            m.state = S.RESOLVED
            self._release(m, result, amount)

    def settle(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, self.a.stranger)
        ts = self.stack.chain.now() + 1
        if m.state == S.DELIVERED:
            expect = "PurchaseOrdersDisputeWindow" if ts < m.delivered_at + m.window else None
        elif m.state == S.DISPUTED:
            expect = (
                "PurchaseOrdersArbitrationPending" if ts < m.disputed_at + ARBITRATION else None
            )
        else:
            expect = "PurchaseOrdersInvalidState"
        self.stack.chain.set_next_block_timestamp(ts)
        result = self._send(
            expect, lambda: self.stack.po.settle_order(order, terms=m.terms, by=who, gas=GAS)
        )
        if result:
            self._settle(m, result)

    def cancel(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, m.buyer)
        if who == m.buyer:
            expect = "PurchaseOrdersInvalidState" if m.state != S.CREATED else None
        elif who == self.a.supplier:
            ok = m.state in (S.CREATED, S.ACCEPTED, S.FUNDED)
            expect = None if ok else "PurchaseOrdersInvalidState"
        else:
            expect = "PurchaseOrdersNotParty"
        self._next_ts()
        result = self._send(
            expect, lambda: self.stack.po.cancel_order(order, terms=m.terms, by=who, gas=GAS)
        )
        if result:
            self._refund(m, result, S.CANCELLED)

    def expire(self, order: int, caller: int) -> None:
        m = self.models[order]
        who = self._who(caller, self.a.stranger)
        ts = self.stack.chain.now() + 1
        if m.state not in (S.CREATED, S.ACCEPTED, S.FUNDED, S.SHIPPED):
            expect: str | None = "PurchaseOrdersInvalidState"
        elif ts <= m.deadline + m.grace:
            expect = "PurchaseOrdersNotExpired"
        else:
            expect = None
        self.stack.chain.set_next_block_timestamp(ts)
        result = self._send(
            expect, lambda: self.stack.po.expire_order(order, terms=m.terms, by=who, gas=GAS)
        )
        if result:
            assert result.event("OrderExpired")["refunded"] == (m.price if m.funded else 0)
            self._refund(m, result, S.EXPIRED)

    @rule(
        order=orders,
        action=st.sampled_from(
            ["accept", "fund", "ship", "breach", "receipt", "dispute", "settle", "cancel", "expire"]
        ),
        caller=CALLER,
    )
    def poke(self, order: int, action: str, caller: int) -> None:
        """Any call on any order by anyone (the model predicts the outcome)."""
        getattr(self, action)(order, caller)

    @rule(order=orders, caller=CALLER, offset=st.integers(0, 10**9))
    def poke_arrival(self, order: int, caller: int, offset: int) -> None:
        self.arrive(order, caller, offset)

    @rule(order=orders, offset=st.integers(0, 10**9))
    def poke_rogue_arrival(self, order: int, offset: int) -> None:
        self.rogue_arrival(order, offset)

    @rule(
        order=orders,
        action=st.sampled_from(
            ["accept", "fund", "ship", "receipt", "dispute", "resolve", "settle", "cancel"]
            + ["expire", "shock", "arrival"]
        ),
        field=st.sampled_from(["price", "supplier", "breach_refund_bps", "arrival_quorum"]),
    )
    def poke_wrong_terms(self, order: int, action: str, field: str) -> None:
        """Any call with terms other than the order's is refused, by the right party,
        before anything else is checked (evidence: once the order is in transit; arrival:
        after the readings and the quorum)."""
        m = self.models[order]
        change: dict[str, Any] = {
            "price": {"price": m.price + 1},
            "supplier": {"supplier": self.a.stranger.address},
            "breach_refund_bps": {"breach_refund_bps": (m.breach_bps + 1) % 10_001},
            "arrival_quorum": {"arrival_quorum": (m.quorum + 1) % 2},
        }[field]
        wrong = m.terms.replace(**change)
        po, qv, a = self.stack.po, self.stack.qv, self.a
        c = cert(self.stack, order, 1, 1)
        r = sign(self.stack, reading(order, 1, max(m.shipped_at, 1), shock_milli_g=SHOCK_LIMIT + 1))
        calls = {
            "accept": lambda: po.accept_order(order, terms=wrong, by=a.supplier, gas=GAS),
            "fund": lambda: po.fund_order(order, terms=wrong, by=m.buyer, value=0, gas=GAS),
            "ship": lambda: po.ship_order(order, [c], terms=wrong, by=a.supplier, gas=GAS),
            "receipt": lambda: po.confirm_receipt(order, terms=wrong, by=m.buyer, gas=GAS),
            "dispute": lambda: po.open_dispute(order, terms=wrong, by=m.buyer, gas=GAS),
            "resolve": lambda: po.resolve_dispute(order, 0, terms=wrong, by=a.arbiter, gas=GAS),
            "settle": lambda: po.settle_order(order, terms=wrong, by=a.stranger, gas=GAS),
            "cancel": lambda: po.cancel_order(order, terms=wrong, by=m.buyer, gas=GAS),
            "expire": lambda: po.expire_order(order, terms=wrong, by=a.stranger, gas=GAS),
            "shock": lambda: qv.prove_shock(order, wrong, r, c, by=a.stranger, gas=GAS),
            "arrival": lambda: qv.prove_arrival(order, wrong, [r], [c], by=a.stranger, gas=GAS),
        }
        if action == "arrival" and (wrong.arrival_quorum == 0 or wrong.arrival_quorum > 1):
            # one reading: the quorum is checked before the order and its terms
            expect = "QualityVerificationQuorumNotMet"
        elif action in ("shock", "arrival") and m.state != S.SHIPPED:
            expect = "QualityVerificationOrderNotInTransit"
        else:
            expect = "PurchaseOrdersWrongTerms"
        self._next_ts()
        self._send(expect, calls[action])

    @rule(order=orders, caller=CALLER, share=st.integers(0, 10_500))
    def poke_ruling(self, order: int, caller: int, share: int) -> None:
        self.rule_dispute(order, caller, share)

    @rule(order=orders, how=st.integers(0, 3), offset=st.integers(0, 10**9))
    def progress_once(self, order: int, how: int, offset: int) -> None:
        self.progress(order, how, offset)

    @rule(order=orders, how=st.integers(0, 3), offset=st.integers(0, 10**9))
    def progress_twice(self, order: int, how: int, offset: int) -> None:
        self.progress(order, how, offset)
        self.progress(order, (how + 1) % 4, offset // 2)

    def progress(self, order: int, how: int, offset: int) -> None:
        """The next step of the normal life of an order, by the right party (so random
        runs reach delivery, disputes and rulings often enough)."""
        state = self.models[order].state
        right = 9
        if state == S.CREATED:
            first = self.accept if self.models[order].funded else self.fund
            (first, self.accept, self.cancel, first)[how](order, right)
        elif state == S.ACCEPTED:
            self.fund(order, right)
        elif state == S.FUNDED:
            self.ship(order, right)
        elif state == S.SHIPPED:
            if how == 0:
                self.breach(order, right)
            elif how == 1:
                self.receipt(order, right)
            else:
                self.arrive(order, right, offset)
        elif state == S.DELIVERED:
            self.dispute(order, right) if how < 3 else self.settle(order, right)
        elif state == S.DISPUTED:
            self.rule_dispute(order, right, offset % 10_001)

    # ---- rules: money out, time --------------------------------------------------------------

    @precondition(lambda self: any(self.credits.values()))
    @rule(caller=CALLER, erc20=st.booleans())
    def withdraw(self, caller: int, erc20: bool) -> None:
        who = self.callers[caller % len(self.callers)]
        token = self.token if erc20 else ETH
        owed = self.credits.get((who.address, token), 0)
        expect = "EscrowNothingToWithdraw" if owed == 0 else None
        self._next_ts()
        result = self._send(expect, lambda: self.stack.escrow.withdraw(token, by=who, gas=GAS))
        if result:
            assert result.event("FundsWithdrawn").args == {
                "account": who.address,
                "token": token,
                "amount": owed,
            }
            self.credits[(who.address, token)] = 0

    @rule(seconds=st.sampled_from([1, 600, HOUR, DAY, 4 * DAY, ARBITRATION + 1]))
    def time_passes(self, seconds: int) -> None:
        self.stack.chain.advance_time(seconds)

    # ---- invariants ------------------------------------------------------------------------

    def _owed(self, token: str) -> int:
        deposits = sum(
            m.price
            for m in self.models.values()
            if m.funded and not m.released and m.token == token
        )
        credits = sum(v for (_, t), v in self.credits.items() if t == token)
        return self.base_owed[token] + deposits + credits

    @invariant()
    def check_money(self) -> None:
        for token in (ETH, self.token):
            owed = self._owed(token)
            assert self.stack.escrow.total_owed(token) == owed, token
            assert self._held(token) - self.base_held[token] == owed - self.base_owed[token], token
        for (account, token), amount in self.credits.items():
            assert self.stack.escrow.credit_of(account, token) == amount, (account, token)

    @invariant()
    def check_orders(self) -> None:
        for oid, m in self.models.items():
            order = self.stack.po.get_order(oid)
            assert order.state is m.state, (oid, order.state, m.state)
            assert (order.funded, order.breached) == (m.funded, m.breached), oid
            assert order.terms_digest == m.terms.digest(), oid
            phase = m.delivered_at or m.shipped_at or m.created_at
            assert order.timestamp == phase, (oid, order.timestamp, phase)
            assert self.stack.po.disputed_at(oid) == m.disputed_at, oid
            # a funded order is terminal exactly when its deposit was released; an
            # unfunded one is never released
            if m.funded:
                assert (m.state in TERMINAL) is m.released, (oid, m.state)
            else:
                assert not m.released, oid

    # ---- the end: nothing can stay stuck -------------------------------------------------------

    def finish(self) -> None:
        """Drive every open order to a terminal state and withdraw every credit."""
        if self.models:
            latest = max(
                max(m.deadline + m.grace, m.delivered_at + m.window, m.disputed_at + ARBITRATION)
                for m in self.models.values()
            )
            if latest >= self.stack.chain.now():
                self.stack.chain.time_travel(latest + 1)
        for oid, m in self.models.items():
            if m.state in (S.CREATED, S.ACCEPTED, S.FUNDED, S.SHIPPED):
                self.expire(oid, 4)
            elif m.state in (S.DELIVERED, S.DISPUTED):
                self.settle(oid, 4)
            assert m.state in TERMINAL
        self.check_orders()
        for who in range(len(self.callers)):
            for erc20 in (False, True):
                if self.credits.get((self.callers[who].address, self.token if erc20 else ETH)):
                    self.withdraw(who, erc20)
        self.check_money()
        for token in (ETH, self.token):
            assert self.stack.escrow.total_owed(token) == self.base_owed[token]
            assert self._held(token) == self.base_held[token]

    def teardown(self) -> None:
        try:
            self.finish()
        finally:
            self.stack.chain.revert(self.snapshot_id)


def test_money_is_conserved_and_orders_end_once(stack: Stack) -> None:
    examples, steps = (20, 30) if stack.kind == "eth-tester" else (12, 30)
    examples = int(os.environ.get("TRUSTSHIP_INVARIANT_EXAMPLES", examples))
    run_state_machine_as_test(
        lambda: EscrowMachine(stack),  # type: ignore[arg-type,return-value]
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            derandomize=False,
        ),
    )
