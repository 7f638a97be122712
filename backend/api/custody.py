"""Custodial transaction sending: the API signs as the calling party (dev mode).

Each API party with a ``private_key`` gets the chain layer's one
:class:`~backend.chain.sender.TxSender` for that account; calls are encoded
from the committed ABIs and sent through it, so nonces, gas, retries and revert
decoding follow the chain layer's rules. A revert becomes an
:class:`~backend.api.errors.ApiError` naming the Solidity error; transport and
node failures become 502/504.

After each mined transaction ``after_tx(block_number)`` runs — ``serve`` and the
tests pass the indexer's catch-up there — so the order state in the answer (read
from the database) already reflects the transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from backend.api.errors import ApiError, revert_error
from backend.api.parties import Party
from backend.api.queries import OrderRecord
from backend.api.schemas import CertificateIn, ComponentHealth, Terms
from backend.chain.connection import Chain
from backend.chain.contracts import Escrow, PurchaseOrders, Stablecoin
from backend.chain.contracts import Terms as ChainTerms
from backend.chain.errors import (
    ChainError,
    ContractRevert,
    ReceiptTimeout,
    TransactionFailed,
    TransactionRejected,
    TransportError,
    TxDropped,
)
from backend.chain.guard import ChainGuard
from backend.chain.sender import TxResult
from backend.domain.contract_errors import ContractError
from backend.domain.fields import camel
from backend.domain.order import STATE_LABELS
from backend.telemetry.certificates import DeviceCertificate, SignedCertificate

log = logging.getLogger(__name__)

# The contract's OrderState enum (None = 0), for readable InvalidState messages.
_STATE_NAMES = STATE_LABELS


@dataclass(frozen=True)
class Sent:
    """A mined transaction: its hash, block, and what it produced."""

    tx_hash: str
    block_number: int
    order_id: int | None = None
    amount: int | None = None


def _order_call(method: str) -> Callable[[Custodian, Party, OrderRecord], Sent]:
    """A :class:`Custodian` method that sends ``PurchaseOrders.<method>(order.id, terms)``
    as the calling party (every call after creation carries the order's terms)."""

    def send(self: Custodian, party: Party, order: OrderRecord) -> Sent:
        call = getattr(self.purchase_orders, method)
        terms = order_terms(order)
        return self._sent(
            self._run(party, camel(method), lambda by: call(order.id, terms=terms, by=by))
        )

    send.__doc__ = f"Send ``{camel(method)}(orderId, terms)`` as ``party``."
    return send


def chain_terms(t: Terms, *, buyer: str, supplier: str) -> ChainTerms:
    """The API's terms (and the parties) as the chain layer's ``Terms``."""
    fields = t.model_dump()
    fields["price"] = int(fields["price"])
    return ChainTerms(buyer=buyer, supplier=supplier, **fields)


def order_terms(order: OrderRecord) -> ChainTerms:
    """An indexed order's terms (every call after creation carries them)."""
    return ChainTerms.of(order)


def certificate(c: CertificateIn) -> SignedCertificate:
    return SignedCertificate(
        DeviceCertificate(
            order_id=c.order_id,
            device=c.device,
            issuer=c.issuer,
            valid_from=c.valid_from,
            valid_until=c.valid_until,
        ),
        bytes.fromhex(c.signature[2:]),
    )


def _revert_message(exc: ContractRevert) -> str:
    args = exc.args
    if exc.name == ContractError.PurchaseOrdersInvalidState and isinstance(
        args.get("current"), int
    ):
        current = args["current"]
        name = _STATE_NAMES[current] if 0 <= current < len(_STATE_NAMES) else str(current)
        fn = f" to {exc.function}" if exc.function else ""
        return f"order {args.get('orderId')} is {name}: the contract refused the call{fn}"
    return str(exc)


def api_error_from_chain(exc: ChainError) -> ApiError:
    """Map a chain-layer failure to the API's error answer."""
    if isinstance(exc, ContractRevert):
        err = revert_error(exc.name, exc.args, _revert_message(exc))
        current = exc.args.get("current")
        if err.args_ is not None and isinstance(current, int) and 0 <= current < len(_STATE_NAMES):
            err.args_["current_state"] = _STATE_NAMES[current]
        return err
    if isinstance(exc, ReceiptTimeout | TransactionFailed):  # sent: the answer names its hash
        if isinstance(exc, ReceiptTimeout):
            status, code = 504, "tx_timeout"
            message = (
                str(exc)  # it says the transaction will not be mined, and to send it again
                if isinstance(exc, TxDropped)
                else f"transaction {exc.tx_hash} was sent but not mined in time; "
                "it may still be mined"
            )
        else:
            status, code, message = 502, "tx_failed", f"transaction {exc.tx_hash} failed: {exc}"
        return ApiError(status, code, message, args={"tx_hash": exc.tx_hash})
    if isinstance(exc, TransportError):
        return ApiError(502, "chain_unavailable", f"the chain node cannot be reached: {exc}")
    if isinstance(exc, TransactionRejected):
        funds = None
        if exc.account is not None:  # insufficient funds: who holds how much, against what
            funds = {
                "account": exc.account,
                "balance": None if exc.balance is None else str(exc.balance),
                "value": None if exc.value is None else str(exc.value),
            }
        return ApiError(502, "tx_rejected", f"the node refused the transaction: {exc}", args=funds)
    return ApiError(502, "chain_error", str(exc))


class Custodian:
    """Sends PurchaseOrders / Escrow transactions as API parties (typed chain wrappers)."""

    def __init__(
        self,
        chain: Chain,
        purchase_orders: PurchaseOrders,
        escrow: Escrow,
        *,
        after_tx: Callable[[int], None] | None = None,
        guard: ChainGuard | None = None,
    ) -> None:
        self.chain = chain
        #: Writes are refused once the guard has found the chain reset.
        self.guard = guard
        self.purchase_orders = purchase_orders
        self.escrow = escrow
        self.after_tx = after_tx
        self._accounts: dict[str, LocalAccount] = {}
        self._lock = threading.Lock()
        self._funding_locks: dict[tuple[str, str], threading.Lock] = {}

    # --- plumbing -------------------------------------------------------------------

    def _signer(self, party: Party) -> LocalAccount:
        if party.private_key is None:
            raise ApiError(
                403,
                "no_signing_key",
                f"party {party.name!r} has no custodial account: it can read but not send",
            )
        with self._lock:
            account = self._accounts.get(party.name)
            if account is None:
                account = Account.from_key(party.private_key.get_secret_value())
                self._accounts[party.name] = account
        return account

    def _run(self, party: Party, what: str, call: Callable[[LocalAccount], TxResult]) -> TxResult:
        """Send one transaction as ``party``; chain failures become API errors."""
        if self.guard is not None and self.guard.is_reset:
            raise ApiError(
                503, "chain_reset", f"nothing is sent to this chain: {self.guard.state.detail}"
            )
        signer = self._signer(party)
        try:
            result = call(signer)
        except ChainError as exc:
            log.info("%s by %s refused: %s", what, party.name, exc)
            raise api_error_from_chain(exc) from None
        log.info(
            "%s by %s mined in block %d (%s)", what, party.name, result.block_number, result.tx_hash
        )
        if self.after_tx is not None:
            self.after_tx(result.block_number)
        return result

    @staticmethod
    def _sent(result: TxResult, **extra: Any) -> Sent:
        return Sent(tx_hash=result.tx_hash, block_number=result.block_number, **extra)

    def _approve(self, party: Party, token: str, amount: int) -> None:
        coin = Stablecoin(self.chain, token)
        self._run(party, "approve", lambda by: coin.approve(self.escrow.address, amount, by=by))

    def _paying(
        self,
        party: Party,
        terms: ChainTerms,
        what: str,
        call: Callable[[LocalAccount], TxResult],
    ) -> TxResult:
        """Send ``call``, by which ``party`` pays the price of ``terms`` into escrow: ETH
        goes with the call (the wrapper sends the price); an ERC-20 price is approved
        first, the approval and the call under the party's funding lock."""
        if terms.is_eth:
            return self._run(party, what, call)
        with self._funding(party, terms.token):
            self._approve(party, terms.token, terms.price)
            return self._run(party, what, call)

    def _funding(self, party: Party, token: str) -> threading.Lock:
        """Held from a party's ERC-20 ``approve`` until the escrow has pulled that amount.

        ``approve`` sets the allowance, it does not add to it: two concurrent funding
        requests of one party would overwrite each other's allowance, and the second
        ``transferFrom`` would revert with ERC20InsufficientAllowance.
        """
        with self._lock:
            key = (party.name, token.lower())
            lock = self._funding_locks.get(key)
            if lock is None:
                lock = self._funding_locks[key] = threading.Lock()
        return lock

    # --- PurchaseOrders -------------------------------------------------------------

    def create_order(self, party: Party, supplier: str, terms: Terms, fund: bool) -> Sent:
        t = chain_terms(terms, buyer=self._signer(party).address, supplier=supplier)
        po = self.purchase_orders
        if fund:
            result = self._paying(
                party, t, "createAndFundOrder", lambda by: po.create_and_fund_order(t, by=by)
            )
        else:
            result = self._run(party, "createOrder", lambda by: po.create_order(t, by=by))
        return self._sent(result, order_id=int(result.value))

    # The calls that take nothing but the order (and its terms), by the PurchaseOrders
    # wrapper's method (the Solidity function is its camelCase name).
    accept = _order_call("accept_order")
    confirm_receipt = _order_call("confirm_receipt")
    open_dispute = _order_call("open_dispute")
    settle = _order_call("settle_order")
    cancel = _order_call("cancel_order")
    expire = _order_call("expire_order")

    def fund(self, party: Party, order: OrderRecord) -> Sent:
        po = self.purchase_orders
        t = order_terms(order)
        return self._sent(
            self._paying(party, t, "fundOrder", lambda by: po.fund_order(order.id, terms=t, by=by))
        )

    def ship(self, party: Party, order: OrderRecord, certificates: Sequence[CertificateIn]) -> Sent:
        po = self.purchase_orders
        certs = [certificate(c) for c in certificates]
        t = order_terms(order)
        return self._sent(
            self._run(party, "shipOrder", lambda by: po.ship_order(order.id, certs, terms=t, by=by))
        )

    def resolve_dispute(self, party: Party, order: OrderRecord, buyer_amount: int) -> Sent:
        po = self.purchase_orders
        return self._sent(
            self._run(
                party,
                "resolveDispute",
                lambda by: po.resolve_dispute(
                    order.id, buyer_amount, terms=order_terms(order), by=by
                ),
            )
        )

    # --- Escrow ---------------------------------------------------------------------

    def withdraw(self, party: Party, token: str) -> Sent:
        result = self._run(party, "withdraw", lambda by: self.escrow.withdraw(token, by=by))
        amount = sum(int(e["amount"]) for e in result.events_named("FundsWithdrawn"))
        return self._sent(result, amount=amount)

    # --- health ---------------------------------------------------------------------

    def health(self) -> ComponentHealth:
        if self.guard is not None:
            try:
                state = self.guard.check()
            except Exception as exc:
                return ComponentHealth(status="down", detail=f"{type(exc).__name__}: {exc}"[:300])
            if state.status == "reset":
                return ComponentHealth(status="error", detail=f"chain reset: {state.detail}")
        try:
            block = self.chain.block_number
        except Exception as exc:
            return ComponentHealth(status="down", detail=f"{type(exc).__name__}: {exc}"[:300])
        return ComponentHealth(
            status="ok", detail=f"{self.chain.kind} chain {self.chain.chain_id}, block {block}"
        )
