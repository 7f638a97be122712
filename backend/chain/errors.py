"""Exceptions of the chain layer (all under :class:`~backend.core.errors.TrustShipError`).

web3 raises a zoo of exception types that differ between providers (eth-tester
raises Python exceptions, an HTTP node returns JSON-RPC errors). The chain layer
turns them into the few cases a caller can act on:

* :class:`ContractRevert` — the contract refused the call; ``.name`` and ``.args``
  say which Solidity error with which arguments. Never retried.
* :class:`TransactionFailed` — a mined transaction has ``status == 0`` and the
  cause is not a decodable revert (typically out of gas).
* :class:`TransportError` — the node could not be reached (after bounded retries).
* :class:`TransactionRejected` — the node refused the transaction itself
  (insufficient funds, fee too low, ...).
* :class:`ReceiptTimeout` — a sent transaction was not mined in time.
* :class:`DeploymentError` — a deployment failed or a manifest does not match the chain.
"""

from __future__ import annotations

from typing import Any

from backend.core.errors import ArtifactError, ConfigurationError, TrustShipError

__all__ = [
    "ArtifactError",
    "ChainError",
    "ConfigurationError",
    "ContractRevert",
    "DeploymentError",
    "RETRYABLE",
    "ReceiptTimeout",
    "TransactionFailed",
    "TransactionRejected",
    "TransportError",
    "UndecodedRevert",
]


class ChainError(TrustShipError):
    """Raised when an operation on the blockchain fails (base of the chain layer's errors)."""


class TransportError(ChainError):
    """Raised when the node cannot be reached or does not answer, after bounded retries.

    ``attempts`` is how many times the request was tried.
    """

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class ReceiptTimeout(ChainError):
    """Raised when a sent transaction has no receipt within the timeout.

    The transaction may still be mined later; ``tx_hash`` identifies it.
    """

    def __init__(self, message: str, *, tx_hash: str) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


class TxDropped(ReceiptTimeout):
    """Raised when a sent transaction is no longer known to the node while its receipt
    is awaited: dropped from the pool, or gone with the blocks a reorganisation (or a
    revert to a snapshot) replaced. It will not be mined; sending it again is safe."""


class TransactionRejected(ChainError):
    """Raised when the node refuses a transaction, when it is sent or already when its
    gas is estimated (insufficient funds, fee below the base fee, gas above the block
    limit, ...).

    For insufficient funds, ``account`` is the sender, ``balance`` what it holds and
    ``value`` what the transaction sends (wei; gas comes on top); otherwise None.
    """

    def __init__(
        self,
        message: str,
        *,
        account: str | None = None,
        balance: int | None = None,
        value: int | None = None,
    ) -> None:
        super().__init__(message)
        self.account = account
        self.balance = balance
        self.value = value


class TransactionFailed(ChainError):
    """Raised when a mined transaction has ``status == 0`` without a decodable revert
    (for example it ran out of gas). ``receipt`` is the web3 receipt."""

    def __init__(self, message: str, *, tx_hash: str, receipt: Any = None) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash
        self.receipt = receipt


class ContractRevert(ChainError):
    """Raised when a contract reverts, at estimate/call time or in a mined transaction.

    ``name`` is the Solidity error's name (``"PurchaseOrdersInvalidState"``,
    ``"AccessControlUnauthorizedAccount"``, ``"Error"`` for ``require`` strings,
    ``"Panic"`` for ``assert``/arithmetic), ``args`` a dict of its decoded
    arguments by parameter name (addresses checksummed, ``bytesN`` as ``bytes``),
    ``data`` the raw revert data. ``contract`` names the contract whose ABI
    declares the error when known, ``function`` the called function, and
    ``tx_hash`` / ``receipt`` are set when the revert happened in a mined
    transaction.

    ``exc.args`` deliberately holds the decoded arguments (not the constructor
    arguments as for other exceptions), so tests can write
    ``assert exc.name == "PurchaseOrdersInvalidState"`` and
    ``assert exc.args == {"orderId": 1, "current": 3}``.
    """

    def __init__(
        self,
        name: str,
        args: dict[str, Any],
        *,
        data: bytes,
        contract: str | None = None,
        function: str | None = None,
        tx_hash: str | None = None,
        receipt: Any = None,
        message: str | None = None,
    ) -> None:
        self.name = name
        self._decoded_args = dict(args)
        self.data = data
        self.contract = contract
        self.function = function
        self.tx_hash = tx_hash
        self.receipt = receipt
        super().__init__(message or self._describe())

    # BaseException.args is a tuple of constructor arguments; this class exposes the
    # decoded Solidity arguments instead (str(), repr() and pickling still work).
    @property
    def args(self) -> dict[str, Any]:  # type: ignore[override]
        return self._decoded_args

    @property
    def signature(self) -> str:
        """``Name(arg=value, ...)`` — the error as it would read in Solidity."""
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self._decoded_args.items())
        return f"{self.name}({inner})"

    def _describe(self) -> str:
        where = f"{self.contract}." if self.contract else ""
        call = f" in {self.function}" if self.function else ""
        return f"reverted{call}: {where}{self.signature}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_revert,
            (
                type(self),
                self.name,
                self._decoded_args,
                self.data,
                self.contract,
                self.function,
                self.tx_hash,
                str(self),
            ),
        )


#: Failures after which the same call may go through when it is sent again: the node
#: could not be reached, the transaction was not mined in time, or the node refused it
#: (funds, fees). The oracle's outbox and the watcher try those again later; a revert or
#: a transaction that failed on chain is final.
RETRYABLE: tuple[type[ChainError], ...] = (TransportError, ReceiptTimeout, TransactionRejected)


class UndecodedRevert(ContractRevert):
    """Raised when a contract reverts with data that matches no error in any known ABI
    (or with no data at all). ``args == {"data": "0x..."}`` carries the raw data."""


class DeploymentError(ChainError):
    """Raised when deploying fails, or a deployment manifest is missing, unreadable,
    for another chain, or points at addresses without code."""


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


def _rebuild_revert(
    cls: type[ContractRevert],
    name: str,
    args: dict[str, Any],
    data: bytes,
    contract: str | None,
    function: str | None,
    tx_hash: str | None,
    message: str,
) -> ContractRevert:
    return cls(
        name,
        args,
        data=data,
        contract=contract,
        function=function,
        tx_hash=tx_hash,
        message=message,
    )
