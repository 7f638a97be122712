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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, overload

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import get_abi_output_types, to_checksum_address

from backend.chain.artifacts import STABLECOIN, Artifact, load_artifact
from backend.chain.decoding import normalize
from backend.chain.sender import PendingTx, TxResult, TxSender
from backend.domain.order import (
    ETH,
    TERMS_ABI_TYPE,
    TERMS_SPEC,
    ZERO_ADDRESS,
    Order,
    OrderState,
    Terms,
)
from backend.telemetry import Domain, Reading, SignedReading
from backend.telemetry.certificates import DeviceCertificate, SignedCertificate
from backend.telemetry.fleet import FleetProof

if TYPE_CHECKING:
    from backend.chain.connection import Chain
    from backend.chain.manifest import Deployment

Signer = LocalAccount | TxSender


def terms_from_abi(values: Sequence[Any]) -> Terms:
    """``Terms`` from the decoded struct, addresses checksummed."""
    terms = Terms.from_tuple(values)
    return terms.replace(
        **{name: to_checksum_address(getattr(terms, name)) for name in ADDRESS_FIELDS}
    )


#: The terms' address fields (checksummed when decoded)
ADDRESS_FIELDS: tuple[str, ...] = tuple(f.attr for f in TERMS_SPEC if f.sol_type == "address")


def reading_tuple(reading: Reading | SignedReading) -> tuple[int, ...]:
    r = reading.reading if isinstance(reading, SignedReading) else reading
    return r.as_tuple()


def _evidence_arrays(
    signed_readings: Sequence[SignedReading],
) -> tuple[list[tuple[int, ...]], list[bytes]]:
    """The ``readings`` and ``signatures`` arrays a proof takes, in the order given."""
    return [s.reading.as_tuple() for s in signed_readings], [s.signature for s in signed_readings]


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
        """Send ``fn(*args)`` and wait for its receipt (:meth:`TxSender.transact`)."""
        return self.chain.sender(by).wait(self.submit(fn, *args, by=by, value=value, gas=gas))

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


class _BoundOrderCall(Protocol):
    def __call__(
        self, order_id: int, *, terms: Terms | None = None, by: Signer, gas: int | None = None
    ) -> TxResult: ...


class _OrderCall:
    """A :class:`PurchaseOrders` method that sends ``<fn>(orderId, terms)`` (the terms as
    given, else :meth:`PurchaseOrders.terms_of`): one definition for the calls after
    creation that take nothing else."""

    def __init__(self, fn: str) -> None:
        self.fn = fn
        self.__doc__ = f"Send ``{fn}(orderId, terms)`` as ``by``."

    def __call__(
        self,
        po: PurchaseOrders,
        order_id: int,
        *,
        terms: Terms | None = None,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        """On the class, as an unbound method: ``PurchaseOrders.accept_order(po, ...)``."""
        return po._order_tx(self.fn, order_id, terms, by=by, gas=gas)

    @overload
    def __get__(self, po: None, owner: type[PurchaseOrders]) -> _OrderCall: ...
    @overload
    def __get__(self, po: PurchaseOrders, owner: type[PurchaseOrders]) -> _BoundOrderCall: ...
    def __get__(
        self, po: PurchaseOrders | None, owner: type[PurchaseOrders]
    ) -> _OrderCall | _BoundOrderCall:
        if po is None:
            return self

        def call(
            order_id: int, *, terms: Terms | None = None, by: Signer, gas: int | None = None
        ) -> TxResult:
            return self(po, order_id, terms=terms, by=by, gas=gas)

        call.__doc__ = self.__doc__
        return call


class PurchaseOrders(ContractWrapper):
    """Every call that needs an order's terms takes them: the contract stores only their
    digest and refuses terms that do not match (``PurchaseOrdersWrongTerms``)."""

    NAME = "PurchaseOrders"

    def __init__(self, chain: Chain, address: str, artifact: Artifact | None = None) -> None:
        super().__init__(chain, address, artifact)
        self._terms: dict[int, Terms] = {}

    # ---- transactions ----
    def create_order(self, terms: Terms, *, by: Signer, gas: int | None = None) -> TxResult:
        """Create an order (state Created; ``terms.buyer`` sends); ``result.value`` is its id."""
        result = self._tx("createOrder", (terms.as_tuple(),), by, gas=gas)
        result.value = result.event("OrderCreated")["orderId"]
        self._terms[int(result.value)] = terms
        return result

    def create_and_fund_order(
        self, terms: Terms, *, by: Signer, value: int | None = None, gas: int | None = None
    ) -> TxResult:
        """Create and fund in one call.

        ETH orders send ``terms.price``; for an ERC-20 order approve the Escrow first.
        """
        if value is None:
            value = terms.price if terms.is_eth else 0
        result = self._tx("createAndFundOrder", (terms.as_tuple(),), by, value=value, gas=gas)
        result.value = result.event("OrderCreated")["orderId"]
        self._terms[int(result.value)] = terms
        return result

    def terms_of(self, order_id: int) -> Terms:
        """An order's terms: from this wrapper's memory (orders it created or was told of),
        else from the order's ``OrderCreated`` event (the contract stores only a digest)."""
        terms = self._terms.get(order_id)
        if terms is None:
            logs = self.contract.events.OrderCreated().get_logs(
                from_block=0, argument_filters={"orderId": order_id}
            )
            if not logs:
                raise LookupError(f"no OrderCreated event for order {order_id}")
            terms = terms_from_abi(tuple(logs[-1]["args"]["terms"].values()))
            self._terms[order_id] = terms
        return terms

    def remember_terms(self, order_id: int, terms: Terms) -> None:
        """Tell the wrapper an order's terms (e.g. from the store), saving the event look-up."""
        self._terms[order_id] = terms

    def _order_tx(
        self,
        fn: str,
        order_id: int,
        terms: Terms | None,
        *extra: Any,
        by: Signer,
        value: int = 0,
        gas: int | None = None,
    ) -> TxResult:
        t = terms if terms is not None else self.terms_of(order_id)
        return self._tx(fn, (order_id, t.as_tuple(), *extra), by, value=value, gas=gas)

    accept_order = _OrderCall("acceptOrder")

    def fund_order(
        self,
        order_id: int,
        *,
        terms: Terms | None = None,
        by: Signer,
        value: int | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Fund an order (ETH: sends the price unless ``value`` is given)."""
        t = terms if terms is not None else self.terms_of(order_id)
        if value is None:
            value = t.price if t.is_eth else 0
        return self._order_tx("fundOrder", order_id, t, by=by, value=value, gas=gas)

    def ship_order(
        self,
        order_id: int,
        certificates: Sequence[SignedCertificate],
        *,
        terms: Terms | None = None,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        """Ship with the certified devices travelling with the goods (one certificate each)."""
        certs = [c.as_tuple() for c in certificates]
        return self._order_tx("shipOrder", order_id, terms, certs, by=by, gas=gas)

    ship = ship_order

    confirm_receipt = _OrderCall("confirmReceipt")

    open_dispute = _OrderCall("openDispute")

    def resolve_dispute(
        self,
        order_id: int,
        buyer_amount: int,
        *,
        terms: Terms | None = None,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        return self._order_tx("resolveDispute", order_id, terms, buyer_amount, by=by, gas=gas)

    settle_order = _OrderCall("settleOrder")

    cancel_order = _OrderCall("cancelOrder")

    expire_order = _OrderCall("expireOrder")

    def record_breach(self, order_id: int, *, by: Signer, gas: int | None = None) -> TxResult:
        """Only QualityVerification may call this; exposed for access-control tests."""
        return self._tx("recordBreach", (order_id,), by, gas=gas)

    def record_delivery(
        self,
        order_id: int,
        delivered_at: int,
        confirmed_by: str,
        *,
        earliest_at: int | None = None,
        terms: Terms | None = None,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        """Only QualityVerification may call this; exposed for access-control tests.
        ``earliest_at``: the earliest arrival reading's time (default ``delivered_at``)."""
        return self._order_tx(
            "recordDelivery",
            order_id,
            terms,
            delivered_at if earliest_at is None else earliest_at,
            delivered_at,
            to_checksum_address(confirmed_by),
            by=by,
            gas=gas,
        )

    # ---- views ----
    def get_order(self, order_id: int, *, block: int | str = "latest") -> Order:
        digest, state, funded, breached, timestamp = self.view("getOrder", order_id, block=block)
        return Order(
            order_id=order_id,
            terms_digest=bytes(digest),
            state=OrderState(state),
            funded=bool(funded),
            breached=bool(breached),
            timestamp=int(timestamp),
        )

    def order_state(self, order_id: int) -> OrderState:
        return self.get_order(order_id).state

    def disputed_at(self, order_id: int) -> int:
        return int(self.view("disputedAt", order_id))

    def order_count(self) -> int:
        return int(self.view("orderCount"))

    def hash_terms(self, terms: Terms) -> bytes:
        return bytes(self.view("hashTerms", terms.as_tuple()))

    def preview_settlement(
        self, order_id: int, delivered_at: int, *, terms: Terms | None = None
    ) -> tuple[int, int]:
        t = terms if terms is not None else self.terms_of(order_id)
        buyer, supplier = self.view("previewSettlement", order_id, t.as_tuple(), delivered_at)
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

    # ---- transactions ----
    def bind_devices(
        self,
        order_id: int,
        device_issuer: str,
        second_device_issuer: str,
        certificates: Sequence[SignedCertificate],
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        """Only PurchaseOrders may call this; exposed for access-control tests."""
        return self._tx(
            "bindDevices",
            (
                order_id,
                to_checksum_address(device_issuer),
                to_checksum_address(second_device_issuer),
                [c.as_tuple() for c in certificates],
            ),
            by,
            gas=gas,
        )

    def revoke_device(self, device: str, *, by: Signer, gas: int | None = None) -> TxResult:
        """The caller (an issuer) revokes ``device``: its readings from now on no longer count."""
        return self._tx("revokeDevice", (to_checksum_address(device),), by, gas=gas)

    def open_fleet_log(self, committer: str, *, by: Signer, gas: int | None = None) -> TxResult:
        """Write ``committer``'s log slots once, ahead of its first root, so that no root
        pays for a fresh slot (``openFleetLog``; anyone may pay for it)."""
        return self._tx("openFleetLog", (to_checksum_address(committer),), by, gas=gas)

    def commit_fleet_root(
        self,
        batch_seq: int,
        root: bytes,
        reading_count: int,
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        """Append a window's root to the sender's fleet log."""
        return self._tx("commitFleetRoot", (batch_seq, root, reading_count), by, gas=gas)

    def submit_commit_fleet_root(
        self,
        batch_seq: int,
        root: bytes,
        reading_count: int,
        *,
        by: Signer,
        gas: int | None = None,
    ) -> PendingTx:
        """As :meth:`commit_fleet_root` without waiting for the receipt."""
        return self.submit("commitFleetRoot", batch_seq, root, reading_count, by=by, gas=gas)

    def prove_excursion(
        self,
        order_id: int,
        terms: Terms,
        signed_readings: Sequence[SignedReading],
        certificate: SignedCertificate,
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        readings, signatures = _evidence_arrays(signed_readings)
        return self._tx(
            "proveExcursion",
            (order_id, terms.as_tuple(), readings, signatures, certificate.as_tuple()),
            by,
            gas=gas,
        )

    def prove_shock(
        self,
        order_id: int,
        terms: Terms,
        signed: SignedReading,
        certificate: SignedCertificate,
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        return self._tx(
            "proveShock",
            (
                order_id,
                terms.as_tuple(),
                signed.reading.as_tuple(),
                signed.signature,
                certificate.as_tuple(),
            ),
            by,
            gas=gas,
        )

    def prove_arrival(
        self,
        order_id: int,
        terms: Terms,
        signed_readings: Sequence[SignedReading],
        certificates: Sequence[SignedCertificate],
        *,
        by: Signer,
        gas: int | None = None,
    ) -> TxResult:
        """Arrival from one reading per device (as many issuers as ``terms.arrival_quorum``)."""
        return self._tx(
            "proveArrival",
            (
                order_id,
                terms.as_tuple(),
                *_evidence_arrays(signed_readings),
                [c.as_tuple() for c in certificates],
            ),
            by,
            gas=gas,
        )

    # ---- views ----
    def domain(self) -> Domain:
        """The EIP-712 domain devices sign readings (and issuers certificates) for."""
        return Domain(chain_id=self.chain.chain_id, verifying_contract=self.address)

    def eip712_domain(self) -> tuple[Any, ...]:
        return tuple(self.view("eip712Domain"))

    def hash_reading(self, reading: Reading | SignedReading) -> bytes:
        return bytes(self.view("hashReading", reading_tuple(reading)))

    def hash_certificate(self, certificate: DeviceCertificate) -> bytes:
        return bytes(self.view("hashCertificate", certificate.as_tuple()))

    def fleet_leaf(self, order_id: int, device: str, digest: bytes, leaf_index: int) -> bytes:
        return bytes(
            self.view("fleetLeaf", order_id, to_checksum_address(device), digest, leaf_index)
        )

    def fleet_log_entry(self, batch_seq: int, root: bytes, count: int) -> bytes:
        return bytes(self.view("fleetLogEntry", batch_seq, root, count))

    def revoked_at(self, issuer: str, device: str) -> int:
        return int(self.view("revokedAt", to_checksum_address(issuer), to_checksum_address(device)))

    def fleet_log(self, committer: str) -> tuple[int, int]:
        """(last batch seq, number of roots) of a committer's log."""
        last, size = self.view("fleetLog", to_checksum_address(committer))
        return int(last), int(size)

    def fleet_log_root(self, committer: str) -> bytes:
        return bytes(self.view("fleetLogRoot", to_checksum_address(committer)))

    def verify_fleet_reading(
        self,
        committer: str,
        terms: Terms,
        signed: SignedReading,
        certificate: SignedCertificate,
        proof: FleetProof,
    ) -> bool:
        return bool(
            self.view(
                "verifyFleetReading",
                to_checksum_address(committer),
                terms.as_tuple(),
                signed.reading.as_tuple(),
                signed.signature,
                certificate.as_tuple(),
                proof.as_tuple(),
            )
        )

    def purchase_orders(self) -> str:
        return str(self.view("purchaseOrders"))


class Escrow(ContractWrapper):
    NAME = "Escrow"

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
        token: str,
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
                to_checksum_address(token),
                to_checksum_address(buyer),
                buyer_amount,
                to_checksum_address(supplier),
                supplier_amount,
            ),
            by,
            gas=gas,
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
    "TERMS_ABI_TYPE",
    "Contracts",
    "Escrow",
    "FleetProof",
    "Order",
    "OrderState",
    "PurchaseOrders",
    "QualityVerification",
    "Stablecoin",
    "Terms",
    "terms_from_abi",
]
