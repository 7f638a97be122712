"""Escrow: access checks, every custom error with its arguments, pull payments, and a
reentrancy attack through a malicious receiver — on eth-tester and anvil.

Errors that PurchaseOrders never lets through (a zero amount, a double deposit, a bad
split ...) are reached on a second Escrow whose "PurchaseOrders" is a plain account,
so the defence in depth is tested too.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from backend.chain.artifacts import load_artifact
from backend.chain.contracts import ETH, ContractWrapper, Escrow, OrderState
from backend.chain.deploy import deploy_contract
from backend.chain.errors import ContractRevert, DeploymentError
from backend.chain.sender import TxResult
from backend.chain.testing import Stack
from tests.contracts.helpers import GAS, Orders, events, refused, reverts

pytestmark = pytest.mark.timeout(300)

MAX_AMOUNT = 2**88 - 1
TERMINAL = {
    OrderState.SETTLED,
    OrderState.RESOLVED,
    OrderState.CANCELLED,
    OrderState.EXPIRED,
}


class Receiver(ContractWrapper):
    """contracts/test/ReentrantReceiver.sol: re-enters Escrow.withdraw from receive()."""

    NAME = "ReentrantReceiver"

    def execute(self, target: str, value: int, data: bytes, *, by) -> TxResult:  # type: ignore[no-untyped-def]
        return self._tx("execute", (target, value, data), by, value=value, gas=GAS)

    def attack(self, *, by, gas: int | None = GAS) -> TxResult:  # type: ignore[no-untyped-def]
        return self._tx("attack", (), by, gas=gas)

    def set_reject_payments(self, reject: bool, *, by) -> TxResult:  # type: ignore[no-untyped-def]
        return self._tx("setRejectPayments", (reject,), by, gas=GAS)


@pytest.fixture
def loose_escrow(stack: Stack) -> Escrow:
    """A second Escrow whose PurchaseOrders is the stranger's account."""
    a = stack.accounts
    address, _, _ = deploy_contract(
        stack.chain, load_artifact("Escrow"), [a.stranger.address], by=a.admin
    )
    escrow = Escrow(stack.chain, address)
    assert escrow.purchase_orders() == a.stranger.address
    return escrow


def _receiver(stack: Stack) -> Receiver:
    address, _, _ = deploy_contract(
        stack.chain,
        load_artifact("ReentrantReceiver"),
        [stack.escrow.address],
        by=stack.accounts.admin,
    )
    return Receiver(stack.chain, address)


# ---- wiring and access ------------------------------------------------------------------


#: Escrow's whole external interface: nothing to configure, no admin, no role
ESCROW_FUNCTIONS = {
    "MAX_AMOUNT",
    "creditOf",
    "deposit",
    "purchaseOrders",
    "release",
    "totalOwed",
    "withdraw",
}


def test_escrow_has_no_admin_and_is_bound_to_its_purchase_orders(stack: Stack) -> None:
    """What replaced the admin-wired, set-once PurchaseOrders: an immutable address, and
    no function that could change it or grant anyone a role."""
    abi = load_artifact("Escrow").abi
    functions = {x["name"] for x in abi if x["type"] == "function"}
    assert functions == ESCROW_FUNCTIONS
    assert not [x for x in abi if x["type"] in ("receive", "fallback")]
    ctor = next(x for x in abi if x["type"] == "constructor")
    assert [i["type"] for i in ctor["inputs"]] == ["address"]
    assert stack.escrow.purchase_orders() == stack.po.address
    assert stack.po.escrow() == stack.escrow.address


def test_purchase_orders_refuses_an_escrow_deployed_for_another(stack: Stack) -> None:
    """PurchaseOrders' constructor checks both dependencies name it (the miswiring the
    old set-once wiring guarded against)."""
    a = stack.accounts
    other, _, _ = deploy_contract(
        stack.chain, load_artifact("Escrow"), [a.stranger.address], by=a.admin
    )
    with pytest.raises(DeploymentError) as info:
        deploy_contract(
            stack.chain, load_artifact("PurchaseOrders"), [other, stack.qv.address], by=a.admin
        )
    cause = info.value.__cause__
    assert isinstance(cause, ContractRevert)
    assert cause.name == "PurchaseOrdersMiswired"
    assert cause.args == {"dependency": other, "itsPurchaseOrders": a.stranger.address}


@pytest.mark.parametrize("who", ["admin", "buyer", "supplier", "stranger"])
def test_only_purchase_orders_deposits_and_releases(stack: Stack, orders: Orders, who: str) -> None:
    caller = getattr(stack.accounts, who)
    oid = orders.funded(price=1_000)
    with refused(stack, [oid], "EscrowNotPurchaseOrders", caller=caller.address):
        stack.escrow.deposit(oid + 1, caller.address, ETH, 5, by=caller, value=5)
    with refused(stack, [oid], "EscrowNotPurchaseOrders", caller=caller.address):
        stack.escrow.release(oid, ETH, caller.address, 1_000, caller.address, 0, by=caller)


def test_withdraw_without_credit(stack: Stack) -> None:
    a = stack.accounts
    with refused(stack, [], "EscrowNothingToWithdraw", account=a.stranger.address, token=ETH):
        stack.escrow.withdraw(ETH, by=a.stranger)
    token = stack.token.address
    with refused(stack, [], "EscrowNothingToWithdraw", account=a.buyer.address, token=token):
        stack.escrow.withdraw(token, by=a.buyer)


def test_credit_in_one_token_is_not_withdrawable_in_another(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded(price=1_000)
    stack.po.cancel_order(oid, by=a.supplier, gas=GAS)
    assert stack.escrow.credit_of(a.buyer.address, ETH) == 1_000
    token = stack.token.address
    with refused(stack, [oid], "EscrowNothingToWithdraw", account=a.buyer.address, token=token):
        stack.escrow.withdraw(token, by=a.buyer)
    result = stack.escrow.withdraw(ETH, by=a.buyer)
    assert events(result) == [
        ("FundsWithdrawn", {"account": a.buyer.address, "token": ETH, "amount": 1_000})
    ]
    with refused(stack, [oid], "EscrowNothingToWithdraw", account=a.buyer.address, token=ETH):
        stack.escrow.withdraw(ETH, by=a.buyer)


# ---- the defence in depth (reached through a loose Escrow) --------------------------------


def test_loose_escrow_deposit_errors(stack: Stack, loose_escrow: Escrow) -> None:
    a = stack.accounts
    po = a.stranger
    esc = loose_escrow
    with reverts("EscrowInvalidAmount", orderId=1, amount=0):
        esc.deposit(1, a.buyer.address, ETH, 0, by=po)
    with reverts("EscrowInvalidAmount", orderId=1, amount=MAX_AMOUNT + 1):
        esc.deposit(1, a.buyer.address, ETH, MAX_AMOUNT + 1, by=po)
    with reverts("EscrowInsufficientDeposit", orderId=1, required=10, provided=9):
        esc.deposit(1, a.buyer.address, ETH, 10, by=po, value=9)
    with reverts("EscrowUnexpectedValue", orderId=1, value=10):
        esc.deposit(1, a.buyer.address, stack.token.address, 10, by=po, value=10)

    result = esc.deposit(1, a.buyer.address, ETH, 10, by=po, value=10)
    assert events(result) == [
        ("FundsDeposited", {"orderId": 1, "payer": a.buyer.address, "token": ETH, "amount": 10})
    ]
    assert esc.total_owed(ETH) == 10
    assert stack.chain.balance(esc.address) == 10


def test_loose_escrow_release_credits_each_nonzero_part(stack: Stack, loose_escrow: Escrow) -> None:
    """Escrow keeps no per-order record: it credits what its PurchaseOrders releases.
    That PurchaseOrders releases each funded order once, for its price, is checked in
    test_each_funded_order_is_released_once_for_its_price (and the state machine)."""
    a = stack.accounts
    po = a.stranger
    esc = loose_escrow
    b, s = a.buyer.address, a.supplier.address
    esc.deposit(7, b, ETH, 100, by=po, value=100)
    result = esc.release(7, ETH, b, 0, s, 100, by=po)
    assert events(result) == [
        ("FundsCredited", {"orderId": 7, "account": s, "token": ETH, "amount": 100})
    ]
    assert esc.total_owed(ETH) == 100 == esc.credit_of(s)
    assert esc.credit_of(b) == 0
    result = esc.release(7, ETH, b, 0, s, 0, by=po)
    assert events(result) == []
    assert esc.total_owed(ETH) == 100 == esc.credit_of(s)


@pytest.mark.parametrize("path", ["settle", "ruling", "cancel", "expire", "unfunded"])
def test_each_funded_order_is_released_once_for_its_price(
    stack: Stack, orders: Orders, path: str
) -> None:
    """What Escrow's removed checks (double deposit, release without a deposit, a split
    that does not add up, a second release) guarded: PurchaseOrders never asks for them."""
    a = stack.accounts
    price = 1_000
    if path == "settle":
        oid = orders.delivered(price=price)
    elif path == "ruling":
        oid = orders.disputed(price=price)
        stack.po.resolve_dispute(oid, 333, by=a.arbiter, gas=GAS)
    elif path == "cancel":
        oid = orders.funded(price=price)
        stack.po.cancel_order(oid, by=a.supplier, gas=GAS)
    elif path == "expire":
        oid = orders.shipped(price=price)
        terms = orders.terms_of(oid)
        stack.chain.set_next_block_timestamp(terms.delivery_deadline + terms.expiry_grace_secs + 1)
        stack.po.expire_order(oid, by=a.stranger, gas=GAS)
    else:
        oid = orders.created(price=price)
        stack.po.cancel_order(oid, by=a.buyer, gas=GAS)
    credited = [
        e.args["amount"]
        for e in stack.escrow.contract.events.FundsCredited().get_logs(
            from_block=0, argument_filters={"orderId": oid}
        )
    ]
    assert sum(credited) == (0 if path == "unfunded" else price)
    deposits = stack.escrow.contract.events.FundsDeposited().get_logs(
        from_block=0, argument_filters={"orderId": oid}
    )
    assert len(deposits) == (0 if path == "unfunded" else 1)
    assert stack.escrow.total_owed(ETH) == stack.chain.balance(stack.escrow.address)
    # no second release on any path: every call that releases is refused by its state
    state = orders.state(oid)
    assert state in TERMINAL
    with refused(stack, [oid], "PurchaseOrdersInvalidState", orderId=oid, current=state):
        stack.po.settle_order(oid, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "PurchaseOrdersInvalidState", orderId=oid, current=state):
        stack.po.cancel_order(oid, by=a.supplier, gas=GAS)
    with refused(stack, [oid], "PurchaseOrdersInvalidState", orderId=oid, current=state):
        stack.po.expire_order(oid, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "PurchaseOrdersInvalidState", orderId=oid, current=state):
        stack.po.resolve_dispute(oid, 0, by=a.arbiter, gas=GAS)
    with refused(stack, [oid], "PurchaseOrdersInvalidState", orderId=oid, current=state):
        stack.po.accept_order(oid, by=a.supplier, gas=GAS)
    if path == "unfunded":
        with refused(stack, [oid], "PurchaseOrdersInvalidState", orderId=oid, current=state):
            stack.po.fund_order(oid, by=a.buyer, gas=GAS)
    else:
        with refused(stack, [oid], "PurchaseOrdersAlreadyFunded", orderId=oid):
            stack.po.fund_order(oid, by=a.buyer, gas=GAS)


# ---- reentrancy -------------------------------------------------------------------------


def test_reentrant_receiver_cannot_withdraw_twice(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    attacker = _receiver(stack)
    # an honest order keeps 5 ETH in escrow that the attacker would like to drain
    honest = orders.funded(price=5 * 10**18)
    # the attacker is the buyer of an order that the supplier cancels: 1 ETH credit
    terms = orders.terms(price=10**18)
    terms = terms.replace(buyer=attacker.address)
    data = stack.po.calldata("createAndFundOrder", terms.as_tuple())
    attacker.execute(stack.po.address, 10**18, data, by=a.stranger)
    oid = stack.po.order_count()
    stack.po.remember_terms(oid, terms)
    assert stack.po.get_order(oid).terms_digest == terms.digest()
    stack.po.cancel_order(oid, by=a.supplier, gas=GAS)
    assert stack.escrow.credit_of(attacker.address) == 10**18
    owed = stack.escrow.total_owed(ETH)
    assert stack.chain.balance(stack.escrow.address) == owed

    result = attacker.attack(by=a.stranger)
    # paid exactly once, the re-entry was refused by the guard
    assert events(result, "Escrow") == [
        ("FundsWithdrawn", {"account": attacker.address, "token": ETH, "amount": 10**18})
    ]
    assert attacker.view("received") == 10**18
    assert attacker.view("reentryAttempts") == 1
    assert attacker.view("reentrySucceeded") is False
    assert (
        bytes(attacker.view("lastReentryError"))
        == keccak(text="ReentrancyGuardReentrantCall()")[:4]
    )
    assert stack.chain.balance(attacker.address) == 10**18
    # the escrow still owes exactly the rest, and holds it
    assert stack.escrow.credit_of(attacker.address) == 0
    assert stack.escrow.total_owed(ETH) == owed - 10**18
    assert stack.chain.balance(stack.escrow.address) == owed - 10**18
    assert stack.po.get_order(honest).funded
    assert orders.state(honest) == OrderState.FUNDED
    with refused(
        stack, [honest, oid], "EscrowNothingToWithdraw", account=attacker.address, token=ETH
    ):
        attacker.attack(by=a.stranger, gas=None)


def test_receiver_that_rejects_payment_keeps_its_credit(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    attacker = _receiver(stack)
    terms = orders.terms(price=777)
    terms = terms.replace(buyer=attacker.address)
    data = stack.po.calldata("createAndFundOrder", terms.as_tuple())
    attacker.execute(stack.po.address, 777, data, by=a.stranger)
    oid = stack.po.order_count()
    stack.po.remember_terms(oid, terms)
    stack.po.cancel_order(oid, by=a.supplier, gas=GAS)
    attacker.set_reject_payments(True, by=a.stranger)
    with refused(stack, [oid], "EscrowTransferFailed", account=attacker.address, amount=777):
        attacker.attack(by=a.stranger, gas=None)
    assert stack.escrow.credit_of(attacker.address) == 777
    # once it accepts payments again, the credit is still there
    attacker.set_reject_payments(False, by=a.stranger)
    attacker.attack(by=a.stranger)
    assert attacker.view("received") == 777
    assert stack.escrow.credit_of(attacker.address) == 0
