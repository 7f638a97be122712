"""What the chain says of an order, read by the watcher itself (never the operator's API).

Terms come from the order's ``OrderCreated`` event (the contract stores their digest
only), the state, breach flag and shipment time from ``getOrder``, the bound devices
from ``DeviceBound`` events with each device's certificate decoded from the
``shipOrder`` transaction that carried it, and revocations from
``QualityVerification.revokedAt``. A device counts as a witness exactly as the
contract counts it (:class:`backend.oracle.rules.Witness`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_typing import HexStr

from backend.chain.connection import Chain
from backend.chain.contracts import Contracts
from backend.domain.order import OrderState, Terms
from backend.indexer.chain import certificate_from_abi
from backend.oracle.rules import OrderTerms, Witness
from backend.telemetry.certificates import SignedCertificate


@dataclass(frozen=True, slots=True)
class Binding:
    """A device bound to the order, with the certificate it was bound with."""

    device: str
    certificate: SignedCertificate
    revoked_at: int | None

    @property
    def witness(self) -> Witness:
        c = self.certificate.certificate
        return Witness(c.issuer, c.valid_from, c.valid_until, self.revoked_at)


@dataclass(frozen=True, slots=True)
class OrderView:
    order_id: int
    terms: Terms
    state: OrderState
    breached: bool
    #: 0 before shipment
    shipped_at: int
    bindings: dict[str, Binding] = field(default_factory=dict)

    @property
    def rules(self) -> OrderTerms:
        return OrderTerms.from_terms(
            self.order_id, self.state.label, self.breached, self.shipped_at, self.terms
        )

    @property
    def in_transit(self) -> bool:
        return self.state == OrderState.SHIPPED


class ChainView:
    """Reads orders from the chain (``from_block``: the deployment's first block)."""

    def __init__(self, chain: Chain, contracts: Contracts, from_block: int = 0) -> None:
        self.chain = chain
        self.contracts = contracts
        self.from_block = from_block
        self._bindings: dict[int, dict[str, Binding]] = {}
        self._shipped_at: dict[int, int] = {}

    def _read_bindings(self, order_id: int) -> dict[str, Binding]:
        qv, po = self.contracts.quality, self.contracts.purchase_orders
        logs = qv.contract.events.DeviceBound().get_logs(
            from_block=self.from_block, argument_filters={"orderId": order_id}
        )
        certificates: dict[str, SignedCertificate] = {}
        for tx_hash in dict.fromkeys(log["transactionHash"] for log in logs):
            tx = self.chain.w3.eth.get_transaction(HexStr(tx_hash.hex()))
            fn, params = po.contract.decode_function_input(tx["input"])
            if fn.fn_name == "shipOrder":
                for value in params["certificates"]:
                    cert = certificate_from_abi(value)
                    certificates[cert.certificate.device] = cert
        out: dict[str, Binding] = {}
        for log in logs:
            device = str(log["args"]["device"])
            found = certificates.get(device)
            if found is not None:  # bound through a contract wallet: no calldata to read
                out[device] = Binding(device, found, None)
        return out

    def order(self, order_id: int) -> OrderView:
        """The order as the chain has it now (bindings read once, revocations each time)."""
        po, qv = self.contracts.purchase_orders, self.contracts.quality
        terms = po.terms_of(order_id)
        order = po.get_order(order_id)
        if order.state == OrderState.SHIPPED:
            self._shipped_at[order_id] = order.timestamp
        bindings = self._bindings.get(order_id)
        if bindings is None and order.state >= OrderState.SHIPPED:
            bindings = self._read_bindings(order_id)
            self._bindings[order_id] = bindings
        current: dict[str, Binding] = {}
        for device, b in (bindings or {}).items():
            revoked = qv.revoked_at(b.certificate.certificate.issuer, device)
            current[device] = Binding(device, b.certificate, revoked or None)
        return OrderView(
            order_id,
            terms,
            order.state,
            order.breached,
            self._shipped_at.get(order_id, 0),
            current,
        )
