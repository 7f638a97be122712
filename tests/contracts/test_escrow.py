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
from backend.chain.contracts import ETH, ContractWrapper, Escrow
from backend.chain.deploy import deploy_contract
from backend.chain.sender import TxResult
from backend.chain.testing import Stack
from tests.contracts.helpers import GAS, Orders, events, refused, reverts

pytestmark = pytest.mark.timeout(300)

MAX_AMOUNT = 2**88 - 1


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
        stack.chain, load_artifact("Escrow"), [a.admin.address], by=a.admin
    )
    escrow = Escrow(stack.chain, address)
    result = escrow.set_purchase_orders(a.stranger.address, by=a.admin)
    assert events(result) == [("PurchaseOrdersSet", {"purchaseOrders": a.stranger.address})]
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


def test_purchase_orders_is_set_once_by_the_admin(stack: Stack) -> None:
    a = stack.accounts
    role = stack.escrow.default_admin_role()
    with refused(
        stack, [], "AccessControlUnauthorizedAccount", account=a.stranger.address, neededRole=role
    ):
        stack.escrow.set_purchase_orders(a.stranger.address, by=a.stranger)
    with refused(stack, [], "EscrowAlreadyInitialized"):
        stack.escrow.set_purchase_orders(a.stranger.address, by=a.admin)
    assert stack.escrow.purchase_orders() == stack.po.address


@pytest.mark.parametrize("who", ["admin", "buyer", "supplier", "stranger"])
def test_only_purchase_orders_deposits_and_releases(stack: Stack, orders: Orders, who: str) -> None:
    caller = getattr(stack.accounts, who)
    oid = orders.funded(price=1_000)
    with refused(stack, [oid], "EscrowNotPurchaseOrders", caller=caller.address):
        stack.escrow.deposit(oid + 1, caller.address, ETH, 5, by=caller, value=5)
    with refused(stack, [oid], "EscrowNotPurchaseOrders", caller=caller.address):
        stack.escrow.release(oid, caller.address, 1_000, caller.address, 0, by=caller)


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
    with reverts("EscrowAlreadyFunded", orderId=1):
        esc.deposit(1, a.buyer.address, ETH, 10, by=po, value=10)
    assert esc.total_owed(ETH) == 10


def test_loose_escrow_release_errors(stack: Stack, loose_escrow: Escrow) -> None:
    a = stack.accounts
    po = a.stranger
    esc = loose_escrow
    b, s = a.buyer.address, a.supplier.address
    with reverts("EscrowNotFunded", orderId=7):
        esc.release(7, b, 0, s, 0, by=po)
    esc.deposit(7, b, ETH, 100, by=po, value=100)
    with reverts("EscrowInvalidSplit", orderId=7, total=99, deposit=100):
        esc.release(7, b, 50, s, 49, by=po)
    with reverts("EscrowInvalidSplit", orderId=7, total=101, deposit=100):
        esc.release(7, b, 50, s, 51, by=po)
    with reverts("EscrowInvalidSplit", orderId=7, total=201, deposit=100):
        esc.release(7, b, 101, s, 100, by=po)
    # a sum that would overflow saturates instead of panicking
    with reverts("EscrowInvalidSplit", orderId=7, total=2**256 - 1, deposit=100):
        esc.release(7, b, 2**256 - 1, s, 5, by=po)

    result = esc.release(7, b, 0, s, 100, by=po)
    assert events(result) == [
        ("FundsCredited", {"orderId": 7, "account": s, "token": ETH, "amount": 100})
    ]
    dep = esc.deposit_of(7)
    assert (dep.amount, dep.released) == (100, True)
    with reverts("EscrowAlreadyReleased", orderId=7):
        esc.release(7, b, 0, s, 100, by=po)
    assert esc.total_owed(ETH) == 100 == esc.credit_of(s)


# ---- reentrancy -------------------------------------------------------------------------


def test_reentrant_receiver_cannot_withdraw_twice(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    attacker = _receiver(stack)
    # an honest order keeps 5 ETH in escrow that the attacker would like to drain
    honest = orders.funded(price=5 * 10**18)
    # the attacker is the buyer of an order that the supplier cancels: 1 ETH credit
    terms = orders.terms(price=10**18)
    data = stack.po.calldata("createAndFundOrder", a.supplier.address, terms.as_tuple())
    attacker.execute(stack.po.address, 10**18, data, by=a.stranger)
    oid = stack.po.order_count()
    assert stack.po.get_order(oid).buyer == attacker.address
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
    assert stack.escrow.deposit_of(honest).amount == 5 * 10**18
    with refused(
        stack, [honest, oid], "EscrowNothingToWithdraw", account=attacker.address, token=ETH
    ):
        attacker.attack(by=a.stranger, gas=None)


def test_receiver_that_rejects_payment_keeps_its_credit(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    attacker = _receiver(stack)
    terms = orders.terms(price=777)
    data = stack.po.calldata("createAndFundOrder", a.supplier.address, terms.as_tuple())
    attacker.execute(stack.po.address, 777, data, by=a.stranger)
    oid = stack.po.order_count()
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
