"""Helpers for the contract suite: drive orders to a state, sign readings, assert reverts.

Everything goes through the product's chain layer (``backend.chain``): the typed
wrappers, the one transaction sender and its decoded :class:`ContractRevert`. Set-up
steps pass an explicit gas limit (MEASURED.md: estimation doubles the cost of a
transaction); the calls a test is about usually let the sender estimate, like the
product does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from backend.chain.contracts import ETH, OrderState, Terms
from backend.chain.errors import ContractRevert
from backend.chain.sender import TxResult
from backend.chain.testing import Stack, certify, device_key, issuer_key
from backend.telemetry import Reading, SignedReading, device_address, sign_reading
from backend.telemetry.certificates import SignedCertificate

#: gas for set-up transactions (no estimate round trip)
GAS = 2_000_000
HOUR = 3600
DAY = 24 * HOUR
#: a reading inside the default terms' 2–8 °C
GOOD_TEMP = 500


# ---- reverts and "changes nothing" ------------------------------------------------------


@contextmanager
def reverts(name: str, **args: Any) -> Iterator[pytest.ExceptionInfo[ContractRevert]]:
    """Expect a :class:`ContractRevert` named ``name`` with exactly ``args``."""
    with pytest.raises(ContractRevert) as info:
        yield info
    err = info.value
    assert err.name == name, f"expected {name}{args}, got {err.signature}"
    assert err.args == args, f"expected {name}{args}, got {err.signature}"


@dataclass(frozen=True)
class World:
    """Everything the contracts hold that a refused call must leave unchanged."""

    orders: tuple[Any, ...]
    owed: tuple[int, int]
    contract_eth: tuple[int, int, int]
    contract_tokens: int
    credits: tuple[int, ...]
    order_count: int


def world(stack: Stack, order_ids: Sequence[int] = ()) -> World:
    a = stack.accounts
    people = (a.buyer, a.supplier, a.arbiter, a.stranger)
    token = stack.token.address
    return World(
        orders=tuple(stack.po.get_order(i) for i in order_ids),
        owed=(stack.escrow.total_owed(ETH), stack.escrow.total_owed(token)),
        contract_eth=tuple(
            stack.chain.balance(c.address) for c in (stack.po, stack.qv, stack.escrow)
        ),  # type: ignore[arg-type]
        contract_tokens=stack.token.balance_of(stack.escrow.address),
        credits=tuple(stack.escrow.credit_of(p.address, t) for p in people for t in (ETH, token)),
        order_count=stack.po.order_count(),
    )


def logs_since(stack: Stack, block: int) -> list[Any]:
    """Every log any contract emitted in blocks after ``block``."""
    latest = stack.chain.block_number
    if latest <= block:
        return []
    return list(stack.chain.w3.eth.get_logs({"fromBlock": block + 1, "toBlock": latest}))


@contextmanager
def changes_nothing(stack: Stack, *order_ids: int) -> Iterator[None]:
    """The block inside must leave the contracts' state as it was and emit no event."""
    before = world(stack, order_ids)
    start = stack.chain.block_number
    yield
    assert logs_since(stack, start) == []
    assert world(stack, order_ids) == before


@contextmanager
def refused(stack: Stack, order_ids: Sequence[int], name: str, **args: Any) -> Iterator[None]:
    """``reverts`` + ``changes_nothing``: the named error, and no trace of the call."""
    with changes_nothing(stack, *order_ids), reverts(name, **args):
        yield


def events(result: TxResult, contract: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, args), ...]`` in log order (optionally only one contract's)."""
    return [
        (e.name, dict(e.args)) for e in result.events if contract is None or e.contract == contract
    ]


def delivered(order_id: int, at: int, by: str, late: int = 0) -> tuple[str, dict[str, Any]]:
    """The ``OrderDelivered`` event as :func:`events` lists it."""
    args = {"orderId": order_id, "deliveredAt": at, "lateSeconds": late, "confirmedBy": by}
    return "OrderDelivered", args


def credited(
    order_id: int, account: str, amount: int, token: str = ETH
) -> tuple[str, dict[str, Any]]:
    """The escrow's ``FundsCredited`` event as :func:`events` lists it."""
    return "FundsCredited", {
        "orderId": order_id,
        "account": account,
        "token": token,
        "amount": amount,
    }


# ---- readings ---------------------------------------------------------------------------


def reading(order_id: int, seq: int, timestamp: int, **fields: int) -> Reading:
    """A reading with sensible defaults (in range, at the default destination)."""
    lat, lon = fields.pop("lat", 51_950_000), fields.pop("lon", 4_050_000)
    values = {
        "temperature_centi_c": GOOD_TEMP,
        "humidity_permille": 500,
        "shock_milli_g": 0,
        "latitude_e6": lat,
        "longitude_e6": lon,
        "flags": 0,
    }
    values.update(fields)
    return Reading(order_id=order_id, seq=seq, timestamp=timestamp, **values)


def sign(stack: Stack, r: Reading, device: int = 1) -> SignedReading:
    key = device_key(device)
    return SignedReading(r, device_address(key), sign_reading(r, stack.domain, key))


def dev(n: int) -> str:
    return device_address(device_key(n))


# ---- orders -----------------------------------------------------------------------------


def cert(
    stack: Stack, order_id: int, device: int = 1, issuer: int = 1, **window: int
) -> SignedCertificate:
    """Device ``device`` certified for ``order_id`` by test issuer ``issuer``."""
    return certify(stack.domain, order_id, dev(device), issuer_key(issuer), **window)


class Orders:
    """Drive orders of one stack through their states (set-up, fixed gas)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.a = stack.accounts

    def terms(self, **overrides: Any) -> Terms:
        return self.stack.make_terms(**overrides)

    def terms_of(self, order_id: int) -> Terms:
        return self.stack.po.terms_of(order_id)

    def token_terms(self, **overrides: Any) -> Terms:
        overrides.setdefault("price", 1_000 * 10**6)
        return self.terms(token=self.stack.token.address, **overrides)

    def approve(self, amount: int, buyer: LocalAccount | None = None) -> None:
        buyer = buyer or self.a.buyer
        self.stack.token.mint(buyer.address, amount, by=buyer)
        self.stack.token.approve(self.stack.escrow.address, amount, by=buyer)

    def created(self, terms: Terms | None = None, **overrides: Any) -> int:
        terms = terms or self.terms(**overrides)
        return int(self.stack.po.create_order(terms, by=self.a.buyer, gas=GAS).value)

    def funded(self, terms: Terms | None = None, **overrides: Any) -> int:
        """Created with the deposit in escrow, then accepted: state Funded."""
        terms = terms or self.terms(**overrides)
        if not terms.is_eth:
            self.approve(terms.price)
        order_id = int(self.stack.po.create_and_fund_order(terms, by=self.a.buyer, gas=GAS).value)
        self.stack.po.accept_order(order_id, by=self.a.supplier, gas=GAS)
        return order_id

    def certs(self, order_id: int, devices: Sequence[int] = (1,)) -> list[SignedCertificate]:
        """Certificates for ``devices``: by issuer 2 for devices >= 100 when the order has a
        second issuer (device 100, 101, ... are the second issuer's), else by issuer 1."""
        second = int(self.terms_of(order_id).second_device_issuer, 16) != 0
        return [cert(self.stack, order_id, n, 2 if second and n >= 100 else 1) for n in devices]

    def shipped(
        self, terms: Terms | None = None, devices: Sequence[int] = (1,), **overrides: Any
    ) -> int:
        order_id = self.funded(terms, **overrides)
        self.stack.po.ship_order(
            order_id, self.certs(order_id, devices), by=self.a.supplier, gas=GAS
        )
        return order_id

    def delivered(self, terms: Terms | None = None, **overrides: Any) -> int:
        """Shipped and confirmed by the buyer (state Delivered with a dispute window,
        Settled without one)."""
        order_id = self.shipped(terms, **overrides)
        self.stack.chain.advance_time(HOUR)
        self.stack.po.confirm_receipt(order_id, by=self.a.buyer, gas=GAS)
        return order_id

    def disputed(self, **overrides: Any) -> int:
        overrides.setdefault("dispute_window_secs", DAY)
        order_id = self.delivered(**overrides)
        self.stack.po.open_dispute(order_id, by=self.a.buyer, gas=GAS)
        return order_id

    def state(self, order_id: int) -> OrderState:
        return self.stack.po.get_order(order_id).state
