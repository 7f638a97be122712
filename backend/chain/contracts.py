"""Typed Python wrappers for the TrustShip contracts.

Every external function has a method. State-changing methods take ``by=`` (the
account, or its :class:`~backend.chain.sender.TxSender`) and send through the
chain's one sender for that key; they return a
:class:`~backend.chain.sender.TxResult` with the decoded events (and ``.value``
for functions that return something, e.g. the new order id). Views return
the records of :mod:`backend.domain` that mirror the Solidity structs (``Terms``,
``Order``, ``OrderState``: defined there, re-exported here). Reverts raise
:class:`~backend.chain.errors.ContractRevert`.

Units are DESIGN.md §2's integers throughout; readings go in as
:class:`backend.telemetry.SignedReading`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import get_abi_output_types, to_checksum_address

from backend.chain.artifacts import STABLECOIN, Artifact, load_artifact
from backend.chain.decoding import normalize
from backend.chain.sender import PendingTx, TxResult, TxSender
from backend.domain.order import ETH, ZERO_ADDRESS, Order, OrderState, Terms
from backend.telemetry import Domain, Reading, SignedReading

if TYPE_CHECKING:
    from backend.chain.connection import Chain
    from backend.chain.manifest import Deployment

Signer = LocalAccount | TxSender


@dataclass(frozen=True)
class Deposit:
    """Mirror of ``IEscrow.Deposit``."""

    token: str
    amount: int
    released: bool


def terms_from_abi(values: Sequence[Any]) -> Terms:
    """``Terms`` from the decoded struct, addresses checksummed."""
    terms = Terms.from_tuple(values)
    return terms.replace(
        token=to_checksum_address(terms.token), arbiter=to_checksum_address(terms.arbiter)
    )


def reading_tuple(reading: Reading | SignedReading) -> tuple[int, ...]:
    r = reading.reading if isinstance(reading, SignedReading) else reading
    return r.as_tuple()


class ContractWrapper:
    """Common plumbing: encode a call, send it as an account, decode views."""

    NAME: ClassVar[str]

    def __init__(self, chain: Chain, address: str, artifact: Artifact | None = None) -> None:
        self.chain = chain
        self.address = to_checksum_address(address)
        self.artifact = artifact or load_artifact(self.NAME)
        self.contract = chain.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        self._functions = {e["name"]: e for e in self.artifact.abi_entries("function")}
        chain.registry.register_address(self.address, self.NAME)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address})"

    def calldata(self, fn: str, *args: Any) -> bytes:
        """ABI-encoded call data for ``fn(*args)`` (for :meth:`TxSender.submit`)."""
        return bytes.fromhex(self.contract.encode_abi(fn, args=list(args))[2:])

    def _tx(
        self, fn: str, args: Sequence[Any], by: Signer, *, value: int = 0, gas: int | None = None
    ) -> TxResult:
        return self.chain.sender(by).transact(
            self.address,
            self.calldata(fn, *args),
            value=value,
            gas=gas,
            function=f"{self.NAME}.{fn}",
        )

    def submit(
        self, fn: str, *args: Any, by: Signer, value: int = 0, gas: int | None = None
    ) -> PendingTx:
        """Send ``fn(*args)`` without waiting (collect with ``chain.sender(by).wait_all()``)."""
        return self.chain.sender(by).submit(
            self.address,
            self.calldata(fn, *args),
            value=value,
            gas=gas,
            function=f"{self.NAME}.{fn}",
        )

    def view(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        """Call a view function; one return value is returned bare, several as a tuple."""
        entry = self._functions[fn]
        raw = self.chain.call(
            self.address, self.calldata(fn, *args), function=f"{self.NAME}.{fn}", block=block
        )
        types = get_abi_output_types(entry)  # type: ignore[arg-type]
        values = tuple(normalize(v, t) for v, t in zip(abi_decode(types, raw), types, strict=True))
        return values[0] if len(values) == 1 else values

    # AccessControl, common to the three contracts
    def default_admin_role(self) -> bytes:
        return bytes(self.view("DEFAULT_ADMIN_ROLE"))

    def has_role(self, role: bytes, account: str) -> bool:
        return bool(self.view("hasRole", role, to_checksum_address(account)))

    def get_role_admin(self, role: bytes) -> bytes:
        return bytes(self.view("getRoleAdmin", role))

    def supports_interface(self, interface_id: bytes) -> bool:
        return bool(self.view("supportsInterface", interface_id))

    def grant_role(
        self, role: bytes, account: str, *, by: Signer, gas: int | None = None
    ) -> TxResult:
        return self._tx("grantRole", (role, to_checksum_address(account)), by, gas=gas)

    def revoke_role(
        self, role: bytes, account: str, *, by: Signer, gas: int | None = None
    ) -> TxResult:
        return self._tx("revokeRole", (role, to_checksum_address(account)), by, gas=gas)

    def renounce_role(self, role: bytes, *, by: Signer, gas: int | None = None) -> TxResult:
        who = by.address if isinstance(by, TxSender) else by.address
        return self._tx("renounceRole", (role, who), by, gas=gas)


class PurchaseOrders(ContractWrapper):
    NAME = "PurchaseOrders"

    # ---- transactions ----
    def create_order(
        self, supplier: str, terms: Terms, *, by: Signer, gas: int | None = None
    ) -> TxResult:
        """Create an order (state Created); ``result.value`` is the order id."""
        result = self._tx(
            "createOrder", (to_checksum_address(supplier), terms.as_tuple()), by, gas=gas
        )
        result.value = result.event("OrderCreated")["orderId"]
        return result

    def create_and_fund_order(
        self,
        supplier: str,
        terms: Terms,
        *,
        by: Signer,
        value: int | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Create and fund in one call.

        ETH orders send ``terms.price``; for an ERC-20 order approve the Escrow first.
        """
        if value is None:
            value = terms.price if terms.is_eth else 0
        result = self._tx(
            "createAndFundOrder",
            (to_checksum_address(supplier), terms.as_tuple()),
            by,
            value=value,
            gas=gas,
        )
        result.value = result.event("OrderCreated")["orderId"]
        return result

    def accept_order(self, order_id: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("acceptOrder", (order_id,), by, gas=gas)

    def fund_order(
        self, order_id: int, *, by: Signer, value: int | None = None, gas: int | None = None
    ) -> TxResult:
        """Fund an order (ETH: sends the price unless ``value`` is given)."""
        if value is None:
            terms = self.get_order(order_id).terms
            value = terms.price if terms.is_eth else 0
        return self._tx("fundOrder", (order_id,), by, value=value, gas=gas)

    def ship_order(
        self, order_id: int, devices: Sequence[str], *, by: Signer, gas: int | None = None
    ) -> TxResult:
        return self._tx(
            "shipOrder", (order_id, [to_checksum_address(d) for d in devices]), by, gas=gas
        )

    ship = ship_order

    def confirm_receipt(self, order_id: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("confirmReceipt", (order_id,), by, gas=gas)

    def open_dispute(self, order_id: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("openDispute", (order_id,), by, gas=gas)

    def resolve_dispute(
        self, order_id: int, buyer_amount: int, *, by: Signer, gas: int | None = None
    ) -> TxResult:
        return self._tx("resolveDispute", (order_id, buyer_amount), by, gas=gas)

    def settle_order(self, order_id: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("settleOrder", (order_id,), by, gas=gas)

    def cancel_order(self, order_id: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("cancelOrder", (order_id,), by, gas=gas)

    def expire_order(self, order_id: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("expireOrder", (order_id,), by, gas=gas)

    def record_breach(self, order_id: int, *, by: Signer, gas: int | None = None) -> TxResult:
        """Only QualityVerification may call this; exposed for access-control tests."""
        return self._tx("recordBreach", (order_id,), by, gas=gas)

    def record_delivery(
        self,
        order_id: int,
        delivered_at: int,
        confirmed_by: str,
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        """Only QualityVerification may call this; exposed for access-control tests."""
        return self._tx(
            "recordDelivery",
            (order_id, delivered_at, to_checksum_address(confirmed_by)),
            by,
            gas=gas,
        )

    # ---- views ----
    def get_order(self, order_id: int, *, block: int | str = "latest") -> Order:
        raw = self.view("getOrder", order_id, block=block)
        buyer, supplier, state, funded, breached, created, shipped, delivered, disputed, terms = raw
        return Order(
            order_id=order_id,
            buyer=to_checksum_address(buyer),
            supplier=to_checksum_address(supplier),
            state=OrderState(state),
            funded=bool(funded),
            breached=bool(breached),
            created_at=created,
            shipped_at=shipped,
            delivered_at=delivered,
            disputed_at=disputed,
            terms=terms_from_abi(terms),
        )

    def order_state(self, order_id: int) -> OrderState:
        return self.get_order(order_id).state

    def order_count(self) -> int:
        return int(self.view("orderCount"))

    def preview_settlement(self, order_id: int, delivered_at: int) -> tuple[int, int]:
        buyer, supplier = self.view("previewSettlement", order_id, delivered_at)
        return int(buyer), int(supplier)

    def arbitration_period(self) -> int:
        return int(self.view("ARBITRATION_PERIOD"))

    def max_price(self) -> int:
        return int(self.view("MAX_PRICE"))

    def escrow(self) -> str:
        """The Escrow's address."""
        return str(self.view("escrow"))

    def quality_verification(self) -> str:
        """The QualityVerification's address."""
        return str(self.view("qualityVerification"))

    escrow_address = escrow
    quality_verification_address = quality_verification


class QualityVerification(ContractWrapper):
    NAME = "QualityVerification"

    # ---- admin ----
    def set_purchase_orders(self, address: str, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("setPurchaseOrders", (to_checksum_address(address),), by, gas=gas)

    def oracle_role(self) -> bytes:
        return bytes(self.view("ORACLE_ROLE"))

    def grant_oracle(self, account: str, *, by: Signer, gas: int | None = None) -> TxResult:
        return self.grant_role(self.oracle_role(), account, by=by, gas=gas)

    def is_oracle(self, account: str) -> bool:
        return self.has_role(self.oracle_role(), account)

    # ---- transactions ----
    def bind_devices(
        self, order_id: int, devices: Sequence[str], *, by: Signer, gas: int | None = None
    ) -> TxResult:
        """Only PurchaseOrders may call this; exposed for access-control tests."""
        return self._tx(
            "bindDevices", (order_id, [to_checksum_address(d) for d in devices]), by, gas=gas
        )

    def commit_readings(
        self,
        order_id: int,
        batch_seq: int,
        root: bytes,
        reading_count: int,
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        return self._tx("commitReadings", (order_id, batch_seq, root, reading_count), by, gas=gas)

    def submit_commit_readings(
        self,
        order_id: int,
        batch_seq: int,
        root: bytes,
        reading_count: int,
        *,
        by: Signer,
        gas: int | None = None,
    ) -> PendingTx:
        """As :meth:`commit_readings` without waiting for the receipt."""
        return self.submit(
            "commitReadings", order_id, batch_seq, root, reading_count, by=by, gas=gas
        )

    def prove_excursion(
        self,
        order_id: int,
        signed_readings: Sequence[SignedReading],
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        readings = [s.reading.as_tuple() for s in signed_readings]
        signatures = [s.signature for s in signed_readings]
        return self._tx("proveExcursion", (order_id, readings, signatures), by, gas=gas)

    def prove_shock(
        self, order_id: int, signed: SignedReading, *, by: Signer, gas: int | None = None
    ) -> TxResult:
        return self._tx(
            "proveShock", (order_id, signed.reading.as_tuple(), signed.signature), by, gas=gas
        )

    def prove_arrival(
        self, order_id: int, signed: SignedReading, *, by: Signer, gas: int | None = None
    ) -> TxResult:
        return self._tx(
            "proveArrival", (order_id, signed.reading.as_tuple(), signed.signature), by, gas=gas
        )

    # ---- views ----
    def domain(self) -> Domain:
        """The EIP-712 domain devices sign readings for."""
        return Domain(chain_id=self.chain.chain_id, verifying_contract=self.address)

    def eip712_domain(self) -> tuple[Any, ...]:
        return tuple(self.view("eip712Domain"))

    def hash_reading(self, reading: Reading | SignedReading) -> bytes:
        return bytes(self.view("hashReading", reading_tuple(reading)))

    def is_device_bound(self, order_id: int, device: str) -> bool:
        return bool(self.view("isDeviceBound", order_id, to_checksum_address(device)))

    def device_count(self, order_id: int) -> int:
        return int(self.view("deviceCount", order_id))

    def last_batch_seq(self, order_id: int) -> int:
        return int(self.view("lastBatchSeq", order_id))

    def batch_root(self, order_id: int, batch_seq: int) -> bytes:
        return bytes(self.view("batchRoot", order_id, batch_seq))

    def verify_committed_reading(
        self, order_id: int, batch_seq: int, signed: SignedReading, proof: Sequence[bytes]
    ) -> bool:
        return bool(
            self.view(
                "verifyCommittedReading",
                order_id,
                batch_seq,
                signed.reading.as_tuple(),
                signed.signature,
                list(proof),
            )
        )

    def purchase_orders(self) -> str:
        return str(self.view("purchaseOrders"))


class Escrow(ContractWrapper):
    NAME = "Escrow"

    def set_purchase_orders(self, address: str, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("setPurchaseOrders", (to_checksum_address(address),), by, gas=gas)

    def withdraw(self, token: str = ETH, *, by: Signer, gas: int | None = None) -> TxResult:
        """Withdraw the caller's whole credit in ``token`` (ETH by default)."""
        return self._tx("withdraw", (to_checksum_address(token),), by, gas=gas)

    def deposit(
        self,
        order_id: int,
        payer: str,
        token: str,
        amount: int,
        *,
        by: Signer,
        value: int = 0,
        gas: int | None = None,
    ) -> TxResult:
        """Only PurchaseOrders may call this; exposed for access-control tests."""
        return self._tx(
            "deposit",
            (order_id, to_checksum_address(payer), to_checksum_address(token), amount),
            by,
            value=value,
            gas=gas,
        )

    def release(
        self,
        order_id: int,
        buyer: str,
        buyer_amount: int,
        supplier: str,
        supplier_amount: int,
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        """Only PurchaseOrders may call this; exposed for access-control tests."""
        return self._tx(
            "release",
            (
                order_id,
                to_checksum_address(buyer),
                buyer_amount,
                to_checksum_address(supplier),
                supplier_amount,
            ),
            by,
            gas=gas,
        )

    def deposit_of(self, order_id: int) -> Deposit:
        token, amount, released = self.view("depositOf", order_id)
        return Deposit(
            token=to_checksum_address(token), amount=int(amount), released=bool(released)
        )

    def credit_of(self, account: str, token: str = ETH) -> int:
        return int(self.view("creditOf", to_checksum_address(account), to_checksum_address(token)))

    def total_owed(self, token: str = ETH) -> int:
        return int(self.view("totalOwed", to_checksum_address(token)))

    def purchase_orders(self) -> str:
        return str(self.view("purchaseOrders"))

    def max_amount(self) -> int:
        return int(self.view("MAX_AMOUNT"))


class Stablecoin(ContractWrapper):
    """The dev-only ERC-20 (``TestStablecoin``: 6 decimals, anyone may mint)."""

    NAME = STABLECOIN

    def mint(self, to: str, amount: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("mint", (to_checksum_address(to), amount), by, gas=gas)

    def approve(self, spender: str, amount: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("approve", (to_checksum_address(spender), amount), by, gas=gas)

    def transfer(self, to: str, amount: int, *, by: Signer, gas: int | None = None) -> TxResult:
        return self._tx("transfer", (to_checksum_address(to), amount), by, gas=gas)

    def transfer_from(
        self, owner: str, to: str, amount: int, *, by: Signer, gas: int | None = None
    ) -> TxResult:
        return self._tx(
            "transferFrom",
            (to_checksum_address(owner), to_checksum_address(to), amount),
            by,
            gas=gas,
        )

    def name(self) -> str:
        return str(self.view("name"))

    def symbol(self) -> str:
        return str(self.view("symbol"))

    def balance_of(self, account: str) -> int:
        return int(self.view("balanceOf", to_checksum_address(account)))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self.view("allowance", to_checksum_address(owner), to_checksum_address(spender)))

    def decimals(self) -> int:
        return int(self.view("decimals"))

    def total_supply(self) -> int:
        return int(self.view("totalSupply"))


@dataclass
class Contracts:
    """The deployed TrustShip contracts of one deployment, wrapped."""

    purchase_orders: PurchaseOrders
    quality: QualityVerification
    escrow: Escrow
    token: Stablecoin | None = None

    @property
    def po(self) -> PurchaseOrders:
        return self.purchase_orders

    @property
    def qv(self) -> QualityVerification:
        return self.quality

    @classmethod
    def from_deployment(cls, chain: Chain, deployment: Deployment) -> Contracts:
        a = deployment.addresses
        token = Stablecoin(chain, deployment.token) if deployment.token else None
        return cls(
            purchase_orders=PurchaseOrders(chain, a["PurchaseOrders"]),
            quality=QualityVerification(chain, a["QualityVerification"]),
            escrow=Escrow(chain, a["Escrow"]),
            token=token,
        )


__all__ = [
    "ETH",
    "ZERO_ADDRESS",
    "Contracts",
    "Deposit",
    "Escrow",
    "Order",
    "OrderState",
    "PurchaseOrders",
    "QualityVerification",
    "Stablecoin",
    "Terms",
    "terms_from_abi",
]
