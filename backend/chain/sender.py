"""The only module that sends transactions.

:class:`TxSender` owns one key. It

* keeps its own nonce: read once from the node's *pending* count, then
  incremented locally; resynchronised when the node says the nonce is wrong
  (another process used the key, or the chain was reverted to a snapshot);
* always passes explicit gas — the caller's fixed gas, or one ``eth_estimateGas``
  with a safety margin — and explicit EIP-1559 fees (legacy ``gasPrice`` on
  chains without a base fee);
* signs locally with eth_account and sends the raw transaction;
* waits for the receipt with a timeout and treats ``status == 0`` as failure; a
  transaction the node no longer knows while its receipt is awaited (dropped, or
  gone with replaced blocks) ends the wait within seconds as
  :class:`~backend.chain.errors.TxDropped`, and the nonce is read again;
* retries with exponential backoff only on transport errors (connection refused
  or reset, timeouts, HTTP 5xx/429), never on a revert or a refusal;
* turns every revert (at estimate time, at call time, or replayed from a failed
  receipt) into :class:`~backend.chain.errors.ContractRevert` naming the
  Solidity error and its arguments, decoded against all contract ABIs;
* can send many transactions without waiting for each (:meth:`TxSender.submit`
  then :meth:`TxSender.wait_all`), with a bound on the transactions in flight
  (MEASURED.md: anvil's automine stalls when flooded).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypedDict, TypeVar, Unpack

import requests
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from eth_utils.exceptions import ValidationError as EthValidationError
from web3 import Web3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TooManyRequests,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

from backend.chain.decoding import AbiRegistry, DecodedEvent, default_registry
from backend.chain.errors import (
    ChainError,
    ContractRevert,
    ReceiptTimeout,
    TransactionFailed,
    TransactionRejected,
    TransportError,
    TxDropped,
)

logger = logging.getLogger(__name__)

#: While a receipt is awaited, how often to ask whether the node still knows the
#: transaction; twice unknown in a row and it is :class:`TxDropped`.
DROP_CHECK_SECS = 1.0

T = TypeVar("T")

GWEI = 10**9
DEFAULT_PRIORITY_FEE = 1 * GWEI


@dataclass(frozen=True)
class RetryPolicy:
    """How transport errors are retried: ``attempts`` tries in all, sleeping
    ``initial_backoff`` seconds and multiplying by ``multiplier`` up to ``max_backoff``."""

    attempts: int = 5
    initial_backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 2.0

    def delays(self) -> Iterable[float]:
        delay = self.initial_backoff
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(self.max_backoff, delay * self.multiplier)


def is_transport_error(exc: BaseException) -> bool:
    """True for errors that say nothing about the transaction, only about reaching the node."""
    if isinstance(exc, (ContractLogicError, TransactionNotFound)):
        return False
    if isinstance(exc, requests.exceptions.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status >= 500 or status == 429
    return isinstance(
        exc,
        (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
            ProviderConnectionError,
            RequestTimedOut,
            TooManyRequests,
            ConnectionError,
            TimeoutError,
        ),
    )


def short_reason(exc: BaseException) -> str:
    """A one-line reason for a transport error (requests' messages run to paragraphs)."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
    if m:
        return m.group(1).strip()
    if "Read timed out" in text or isinstance(exc, (requests.exceptions.Timeout, TimeoutError)):
        return "timed out"
    return f"{type(exc).__name__}: {text[:200]}"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, Web3RPCError):
        error = (exc.rpc_response or {}).get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        return str(exc.message)
    return str(exc)


def _is_nonce_error(exc: BaseException) -> bool:
    text = _error_text(exc).lower()
    return (
        "nonce too low" in text
        or "nonce too high" in text
        or "invalid transaction nonce" in text  # eth-tester
        or "invalid nonce" in text
    )


def _is_already_known(exc: BaseException) -> bool:
    text = _error_text(exc).lower()
    return "already known" in text or "known transaction" in text or "already imported" in text


def _is_funds_error(exc: BaseException) -> bool:
    text = _error_text(exc).lower()
    # anvil and geth: "insufficient funds for gas * price + value"; eth-tester: "does not have
    # enough balance" (estimation) or "cannot afford txn gas" (sending)
    return any(s in text for s in ("insufficient funds", "enough balance", "cannot afford"))


def _is_fee_error(exc: BaseException) -> bool:
    text = _error_text(exc).lower()
    return "base fee" in text or "basefee" in text or "fee cap" in text or "underpriced" in text


def revert_data(exc: BaseException) -> tuple[bytes, str | None]:
    """The raw revert data carried by a web3 or eth-tester exception, and a reason text."""
    data: Any = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str):
        text = data.removeprefix("Reverted ").strip()
        if text.startswith("0x"):
            try:
                return bytes.fromhex(text[2:]), None
            except ValueError:
                pass
        return b"", text
    if isinstance(data, (bytes, bytearray)):
        return bytes(data), None
    first = exc.args[0] if exc.args else None
    if isinstance(first, BaseException) and first.args:
        first = first.args[0]
    if isinstance(first, (bytes, bytearray)):
        return bytes(first), None
    return b"", str(getattr(exc, "message", None) or first or exc)


@dataclass
class TxResult:
    """A mined, successful transaction and the events it emitted."""

    tx_hash: str
    receipt: Mapping[str, Any]
    events: list[DecodedEvent]
    function: str | None = None
    #: a wrapper-specific result, e.g. the new order id of ``create_order``
    value: Any = None

    @property
    def gas_used(self) -> int:
        return int(self.receipt["gasUsed"])

    @property
    def block_number(self) -> int:
        return int(self.receipt["blockNumber"])

    @property
    def contract_address(self) -> str | None:
        addr = self.receipt.get("contractAddress")
        return to_checksum_address(addr) if addr else None

    @property
    def effective_gas_price(self) -> int:
        return int(self.receipt.get("effectiveGasPrice") or 0)

    def events_named(self, name: str) -> list[DecodedEvent]:
        return [e for e in self.events if e.name == name]

    def event(self, name: str) -> DecodedEvent:
        """The one event called ``name`` (LookupError when there are none or several)."""
        found = self.events_named(name)
        if len(found) != 1:
            emitted = ", ".join(e.name for e in self.events) or "none"
            raise LookupError(f"expected one {name} event, found {len(found)} (emitted: {emitted})")
        return found[0]


@dataclass
class PendingTx:
    """A transaction sent and not yet confirmed by this sender."""

    tx_hash: str
    nonce: int
    to: str | None
    data: bytes
    value: int
    gas: int
    function: str | None
    sent_at: float
    outcome: TxResult | ChainError | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.outcome is not None


class SendOptions(TypedDict, total=False):
    """The keyword options of :meth:`TxSender.submit` (and what :meth:`TxSender.transact`
    passes on to it): the wei sent, a gas limit (else estimated), the function's name for
    errors."""

    value: int
    gas: int | None
    function: str | None


class TxSender:
    """Sends transactions for one account (see the module docstring for the rules).

    Thread-safe: nonce allocation and sending happen under one lock, so several
    threads may share a sender (the product uses one sender per key).
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        registry: AbiRegistry | None = None,
        chain_id: int | None = None,
        gas_margin: float = 1.25,
        priority_fee: int | None = None,
        receipt_timeout: float = 120.0,
        max_poll_interval: float = 0.5,
        max_in_flight: int = 64,
        retry: RetryPolicy | None = None,
        fee_refresh_secs: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.w3 = w3
        self.account = account
        self.registry = registry if registry is not None else default_registry()
        self.gas_margin = gas_margin
        self.receipt_timeout = receipt_timeout
        self.max_poll_interval = max_poll_interval
        self.max_in_flight = max_in_flight
        self.retry = retry or RetryPolicy()
        self.fee_refresh_secs = fee_refresh_secs
        self._priority_fee_setting = priority_fee
        self._sleep = sleep
        self._lock = threading.RLock()
        self._chain_id = chain_id
        self._nonce: int | None = None
        self._fees: dict[str, int] | None = None
        self._fees_at = 0.0
        self._in_flight: deque[PendingTx] = deque()
        self._finished: list[PendingTx] = []
        #: counters for benchmarks and tests
        self.stats: dict[str, int] = {
            "sent": 0,
            "rpc_retries": 0,
            "nonce_resyncs": 0,
            "estimates": 0,
            "reverts": 0,
        }

    # ---- identity, nonce ----------------------------------------------------

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._rpc("eth_chainId", lambda: int(self.w3.eth.chain_id))
        return self._chain_id

    @property
    def next_nonce(self) -> int:
        """The nonce the next transaction will use (read from the node the first time)."""
        with self._lock:
            if self._nonce is None:
                self._nonce = self._pending_count()
            return self._nonce

    def _pending_count(self) -> int:
        return self._rpc(
            "eth_getTransactionCount",
            lambda: int(self.w3.eth.get_transaction_count(self.account.address, "pending")),
        )

    def resync_nonce(self) -> int:
        """Forget the local nonce and read the node's pending count (after a snapshot
        revert, or when another process used the key)."""
        with self._lock:
            self._nonce = self._pending_count()
            self._fees = None
            self.stats["nonce_resyncs"] += 1
            logger.debug("nonce of %s resynced to %d", self.address, self._nonce)
            return self._nonce

    def forget_in_flight(self) -> None:
        """Drop transactions in flight without waiting (after a snapshot revert removed them)."""
        with self._lock:
            self._in_flight.clear()
            self._finished.clear()

    # ---- transport ----------------------------------------------------------

    def _rpc(self, what: str, fn: Callable[[], T]) -> T:
        """Run one node request, retrying only transport errors with backoff."""
        delays = iter(self.retry.delays())
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:
                if not is_transport_error(exc):
                    raise
                delay = next(delays, None)
                if delay is None:
                    endpoint = (
                        getattr(self.w3.provider, "endpoint_uri", None)
                        or type(self.w3.provider).__name__
                    )
                    raise TransportError(
                        f"{what}: the node at {endpoint} did not answer after {attempt} attempts "
                        f"({short_reason(exc)}). Is it running, and is RPC_URL right?",
                        attempts=attempt,
                    ) from exc
                self.stats["rpc_retries"] += 1
                logger.warning(
                    "%s failed (%s); retry %d in %.2fs", what, short_reason(exc), attempt, delay
                )
                self._sleep(delay)

    # ---- fees ---------------------------------------------------------------

    def _fee_fields(self, refresh: bool = False) -> dict[str, int]:
        now = time.monotonic()
        if refresh or self._fees is None or now - self._fees_at > self.fee_refresh_secs:
            block = self._rpc("eth_getBlockByNumber", lambda: self.w3.eth.get_block("latest"))
            base_fee = block.get("baseFeePerGas")
            if base_fee is None:
                gas_price = self._rpc("eth_gasPrice", lambda: int(self.w3.eth.gas_price))
                self._fees = {"gasPrice": gas_price}
            else:
                tip = self._priority_fee()
                self._fees = {
                    "maxPriorityFeePerGas": tip,
                    "maxFeePerGas": 2 * int(base_fee) + tip,
                }
            self._fees_at = now
        return dict(self._fees)

    def _priority_fee(self) -> int:
        if self._priority_fee_setting is not None:
            return self._priority_fee_setting
        try:
            tip = self._rpc("eth_maxPriorityFeePerGas", lambda: int(self.w3.eth.max_priority_fee))
        except (Web3RPCError, ValueError, NotImplementedError):
            tip = DEFAULT_PRIORITY_FEE
        # dev chains answer 0 or huge values; keep the tip sane and non-zero
        tip = max(1, tip)
        self._priority_fee_setting = tip
        return tip

    # ---- reads ----------------------------------------------------------------

    def _call_params(self, to: str | None, data: bytes, value: int) -> dict[str, Any]:
        params: dict[str, Any] = {"from": self.account.address, "data": data, "value": value}
        if to is not None:
            params["to"] = to
        return params

    def _revert(
        self, exc: BaseException, function: str | None, *, to: str | None = None, **kw: Any
    ) -> ContractRevert:
        data, reason = revert_data(exc)
        contract = self.registry.addresses.get(to.lower()) if to else None
        self.stats["reverts"] += 1
        return self.registry.decode_revert(
            data, function=function, contract_hint=contract, reason=reason, **kw
        )

    def call(
        self,
        to: str,
        data: bytes,
        *,
        value: int = 0,
        function: str | None = None,
        block: int | str = "latest",
    ) -> bytes:
        """``eth_call`` from this account; a revert raises :class:`ContractRevert`."""
        try:
            return bytes(
                self._rpc(
                    "eth_call",
                    lambda: self.w3.eth.call(self._call_params(to, data, value), block),  # type: ignore[arg-type]
                )
            )
        except ContractLogicError as exc:
            raise self._revert(exc, function, to=to) from None
        except Exception as exc:
            if _looks_like_tester_revert(exc):
                raise self._revert(exc, function, to=to) from None
            raise

    def estimate_gas(
        self, to: str | None, data: bytes, *, value: int = 0, function: str | None = None
    ) -> int:
        """``eth_estimateGas`` times the margin; a revert raises :class:`ContractRevert`."""
        self.stats["estimates"] += 1
        try:
            estimate = self._rpc(
                "eth_estimateGas",
                lambda: int(self.w3.eth.estimate_gas(self._call_params(to, data, value))),  # type: ignore[arg-type]
            )
        except ContractLogicError as exc:
            raise self._revert(exc, function, to=to) from None
        except (Web3Exception, EthValidationError, ValueError) as exc:
            if _looks_like_tester_revert(exc):
                raise self._revert(exc, function, to=to) from None
            # The node will not run it at all (insufficient funds, gas above the block
            # limit ...): the same refusal it would give when the transaction is sent.
            raise self._rejected(exc, function, value, "at gas estimation") from exc
        return int(estimate * self.gas_margin) + 1

    def _rejected(
        self, exc: BaseException, function: str | None, value: int, stage: str
    ) -> TransactionRejected:
        """The node's refusal as a TransactionRejected a person can act on: for
        insufficient funds, who holds how much against what the transaction sends."""
        message = (
            f"{function or 'transaction'} from {self.address} refused by the node {stage}: "
            f"{_error_text(exc)}"
        )
        if not _is_funds_error(exc):
            return TransactionRejected(message)
        try:
            balance: int | None = self._rpc(
                "eth_getBalance", lambda: int(self.w3.eth.get_balance(self.account.address))
            )
        except ChainError:
            balance = None
        if balance is not None:
            message += (
                f"; {self.address} holds {balance} wei and the transaction sends {value} wei "
                "plus gas: fund the account or lower the amount"
            )
        return TransactionRejected(message, account=self.address, balance=balance, value=value)

    # ---- sending --------------------------------------------------------------

    def transact(
        self,
        to: str | None,
        data: bytes,
        *,
        timeout: float | None = None,
        **send: Unpack[SendOptions],
    ) -> TxResult:
        """Send one transaction (``send``: as :meth:`submit` takes them) and wait for its
        receipt.

        Raises :class:`ContractRevert` (estimate or receipt), :class:`TransactionFailed`,
        :class:`TransactionRejected`, :class:`ReceiptTimeout` or :class:`TransportError`.
        """
        return self.wait(self.submit(to, data, **send), timeout=timeout)

    def deploy(
        self,
        bytecode: bytes,
        constructor_args: bytes = b"",
        *,
        value: int = 0,
        gas: int | None = None,
        name: str = "contract",
    ) -> TxResult:
        """Deploy a contract (creation code + ABI-encoded constructor arguments)."""
        result = self.transact(
            None, bytecode + constructor_args, value=value, gas=gas, function=f"deploy {name}"
        )
        if not result.contract_address:
            raise TransactionFailed(
                f"deploying {name} mined without a contract address",
                tx_hash=result.tx_hash,
                receipt=result.receipt,
            )
        return result

    def submit(
        self,
        to: str | None,
        data: bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        function: str | None = None,
    ) -> PendingTx:
        """Sign and send a transaction without waiting for its receipt.

        When ``max_in_flight`` transactions are already unconfirmed, first waits for
        the oldest one. Reverts found by gas estimation raise here; reverts in the
        receipt surface in :meth:`wait` / :meth:`wait_all`.
        """
        if to is not None:
            to = to_checksum_address(to)
        with self._lock:
            while len(self._in_flight) >= self.max_in_flight:
                oldest = self._in_flight[0]
                self._settle(oldest, self.receipt_timeout)
            if gas is None:
                gas = self.estimate_gas(to, data, value=value, function=function)
            pending = self._sign_and_send(to, data, value, gas, function)
            self._in_flight.append(pending)
            return pending

    def _sign_and_send(
        self, to: str | None, data: bytes, value: int, gas: int, function: str | None
    ) -> PendingTx:
        nonce_retry_done = False
        fee_retry_done = False
        refresh_fees = False
        while True:
            nonce = self.next_nonce
            tx: dict[str, Any] = {
                "chainId": self.chain_id,
                "nonce": nonce,
                "gas": gas,
                "value": value,
                "data": data,
                **self._fee_fields(refresh=refresh_fees),
            }
            if to is not None:
                tx["to"] = to
            if "maxFeePerGas" in tx:
                tx["type"] = 2
            raw = bytes(self.account.sign_transaction(tx).raw_transaction)
            tx_hash = "0x" + keccak(raw).hex()
            try:
                self._rpc("eth_sendRawTransaction", partial(self.w3.eth.send_raw_transaction, raw))
            except TransportError:
                # The node may or may not have the transaction. Keep the nonce
                # unknown so the next send reads it again.
                self._nonce = None
                raise
            except Exception as exc:
                if _is_already_known(exc):
                    pass  # an earlier attempt reached the node: same bytes, same hash
                elif _is_nonce_error(exc):
                    if self._known(tx_hash):
                        pass
                    elif not nonce_retry_done:
                        nonce_retry_done = True
                        logger.info(
                            "nonce %d of %s rejected (%s); resyncing",
                            nonce,
                            self.address,
                            _error_text(exc),
                        )
                        self.resync_nonce()
                        continue
                    else:
                        raise TransactionRejected(
                            f"{function or 'transaction'}: nonce {nonce} rejected twice: "
                            f"{_error_text(exc)}"
                        ) from exc
                elif _is_fee_error(exc) and not fee_retry_done:
                    fee_retry_done = True
                    refresh_fees = True
                    continue
                elif isinstance(exc, ContractLogicError) or _looks_like_tester_revert(exc):
                    raise self._revert(exc, function, to=to) from None
                else:
                    raise self._rejected(exc, function, value, "when sent") from exc
            self._nonce = nonce + 1
            self.stats["sent"] += 1
            return PendingTx(
                tx_hash=tx_hash,
                nonce=nonce,
                to=to,
                data=data,
                value=value,
                gas=gas,
                function=function,
                sent_at=time.monotonic(),
            )

    def _known(self, tx_hash: str) -> bool:
        try:
            self._rpc("eth_getTransactionByHash", lambda: self.w3.eth.get_transaction(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        except Exception as exc:  # eth-tester raises its own not-found error
            if is_transport_error(exc) or isinstance(exc, TransportError):
                raise
            return False
        return True

    # ---- receipts -------------------------------------------------------------

    def wait(self, pending: PendingTx, timeout: float | None = None) -> TxResult:
        """Wait for ``pending``'s receipt; raise its failure as an exception.

        The receipt is polled without holding the sender's lock, so other threads
        keep submitting while this one waits: their transactions share the next
        block instead of each waiting for the previous one to be mined.
        """
        if not pending.done:
            fetched = self._fetch_outcome(
                pending, self.receipt_timeout if timeout is None else timeout
            )
            with self._lock:
                self._record(pending, fetched)
        with self._lock:
            if pending in self._finished:
                self._finished.remove(pending)
        outcome = pending.outcome
        if isinstance(outcome, ChainError):
            raise outcome
        assert outcome is not None
        return outcome

    def wait_all(
        self, *, raise_on_failure: bool = True, timeout: float | None = None
    ) -> list[TxResult | ChainError]:
        """Wait for every transaction submitted since the last ``wait_all``, in send order.

        Returns their outcomes (a :class:`TxResult` or the :class:`ChainError` of a
        failure). With ``raise_on_failure`` the first failure is raised after all
        outcomes are known, so no transaction is left unobserved.
        """
        with self._lock:
            for pending in list(self._in_flight):
                self._settle(pending, self.receipt_timeout if timeout is None else timeout)
            done, self._finished = self._finished, []
        outcomes = [p.outcome for p in done if p.outcome is not None]
        if raise_on_failure:
            for outcome in outcomes:
                if isinstance(outcome, ChainError):
                    raise outcome
        return outcomes

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _settle(self, pending: PendingTx, timeout: float) -> None:
        """Fetch the receipt of ``pending`` and record its outcome (never raises a
        transaction failure; a timeout or transport error is recorded too)."""
        if pending.done:
            return
        self._record(pending, self._fetch_outcome(pending, timeout))

    def _fetch_outcome(self, pending: PendingTx, timeout: float) -> TxResult | ChainError:
        """The outcome of ``pending`` from its receipt (needs no lock)."""
        try:
            receipt = self._wait_receipt(pending.tx_hash, timeout)
            return self._outcome(pending, receipt)
        except (ReceiptTimeout, TransportError) as exc:
            return exc

    def _record(self, pending: PendingTx, outcome: TxResult | ChainError) -> None:
        """Record an outcome under the lock (once: another thread may have settled it)."""
        if pending.done:
            return
        pending.outcome = outcome
        if pending in self._in_flight:
            self._in_flight.remove(pending)
        self._finished.append(pending)
        if isinstance(outcome, TxDropped):
            self._nonce = None  # its nonce may be free again: ask the node

    def _wait_receipt(self, tx_hash: str, timeout: float) -> Mapping[str, Any]:
        start = time.monotonic()
        deadline = start + timeout
        check_at, unknown = start + DROP_CHECK_SECS, 0
        interval = 0.005
        while True:
            try:
                receipt = self._rpc(
                    "eth_getTransactionReceipt",
                    lambda: self.w3.eth.get_transaction_receipt(tx_hash),  # type: ignore[arg-type]
                )
                if receipt is not None:
                    return receipt
            except TransactionNotFound:
                pass
            now = time.monotonic()
            if now >= check_at:
                check_at = now + DROP_CHECK_SECS
                unknown = unknown + 1 if not self._known(tx_hash) else 0
                if unknown >= 2:
                    raise TxDropped(
                        f"transaction {tx_hash} is no longer known to the node (dropped, or "
                        "gone with replaced blocks): it will not be mined; send it again",
                        tx_hash=tx_hash,
                    )
            if now >= deadline:
                raise ReceiptTimeout(
                    f"no receipt for {tx_hash} after {timeout:.0f}s; it may still be mined "
                    "(is the node mining?)",
                    tx_hash=tx_hash,
                )
            self._sleep(interval)
            interval = min(self.max_poll_interval, interval * 1.5)

    def _outcome(self, pending: PendingTx, receipt: Mapping[str, Any]) -> TxResult | ChainError:
        if int(receipt["status"]) == 1:
            return TxResult(
                tx_hash=pending.tx_hash,
                receipt=receipt,
                events=self.registry.decode_logs(receipt.get("logs", [])),
                function=pending.function,
            )
        return self._explain_failure(pending, receipt)

    def _explain_failure(self, pending: PendingTx, receipt: Mapping[str, Any]) -> ChainError:
        """Replay a failed transaction one block earlier to learn its revert reason."""
        block = int(receipt["blockNumber"])
        params = self._call_params(pending.to, pending.data, pending.value)
        params["gas"] = pending.gas
        gas_used = int(receipt["gasUsed"])
        what = pending.function or "transaction"
        out_of_gas = gas_used >= pending.gas
        hint = "; it ran out of gas: pass more gas" if out_of_gas else ""
        try:
            self._rpc("eth_call", lambda: self.w3.eth.call(params, max(block - 1, 0)))  # type: ignore[arg-type]
        except TransportError as exc:
            return exc
        except Exception as exc:
            if not out_of_gas and (
                isinstance(exc, ContractLogicError) or _looks_like_tester_revert(exc)
            ):
                return self._revert(
                    exc, pending.function, to=pending.to, tx_hash=pending.tx_hash, receipt=receipt
                )
            return TransactionFailed(
                f"{what} {pending.tx_hash} failed in block {block} (gas used {gas_used} of "
                f"{pending.gas}){hint} ({_error_text(exc)})",
                tx_hash=pending.tx_hash,
                receipt=receipt,
            )
        return TransactionFailed(
            f"{what} {pending.tx_hash} failed in block {block} with status 0 (gas used "
            f"{gas_used} of {pending.gas}){hint}; replaying it does not revert",
            tx_hash=pending.tx_hash,
            receipt=receipt,
        )


def _looks_like_tester_revert(exc: BaseException) -> bool:
    """eth-tester's own TransactionFailed (when it bypasses our provider's translation)."""
    return type(exc).__name__ == "TransactionFailed" and type(exc).__module__.startswith(
        "eth_tester"
    )
