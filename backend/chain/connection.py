"""One way to reach a chain: :func:`connect` returns a :class:`Chain`.

* ``RPC_URL`` unset → an in-process eth-tester (py-evm) chain: no server, a
  60M block gas limit, the dev accounts funded in the genesis block.
* ``RPC_URL`` set → an HTTP JSON-RPC node (anvil, or any EVM network). In dev
  mode the dev accounts are funded with ``anvil_setBalance`` (or transfers from
  anvil's well-known first account); otherwise the keys come from the settings.

Everything above this module (deployment, contract wrappers, the oracle) uses the
same code path on both: web3 calls plus :class:`~backend.chain.sender.TxSender`.
The :class:`Chain` also carries the test controls — snapshot/revert and setting
the block time — for both providers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCEndpoint, RPCResponse

from backend.chain.decoding import AbiRegistry, default_registry
from backend.chain.errors import ChainError, ConfigurationError, TransportError
from backend.chain.sender import RetryPolicy, TxSender, short_reason

# One definition of the dev keys (backend/core/keys.py), re-exported for the chain layer.
from backend.core.keys import DEV_ROLES as DEV_ROLES
from backend.core.keys import WELL_KNOWN_PRIVATE_KEYS
from backend.core.keys import dev_private_key as dev_private_key
from backend.core.settings import Settings

logger = logging.getLogger(__name__)

ETHER = 10**18
#: eth-tester's block gas limit (py-evm's default 30M is tight for deploying three
#: contracts with OpenZeppelin in one block and for large evidence batches).
TESTER_GAS_LIMIT = 60_000_000
#: What each dev account holds on a fresh dev chain.
DEV_BALANCE = 1_000_000 * ETHER
#: Below this a dev account on an RPC dev node is topped up to DEV_BALANCE.
DEV_MIN_BALANCE = 1_000 * ETHER
#: anvil's first default account (public, from the "test test ... junk" mnemonic):
#: the fallback funder when the node has no anvil_setBalance.
ANVIL_FUNDER_KEY = WELL_KNOWN_PRIVATE_KEYS[0]


ChainKind = Literal["eth-tester", "rpc"]
T = TypeVar("T")


@dataclass(frozen=True)
class Accounts:
    """The accounts a process acts as. Party accounts exist only in dev mode."""

    admin: LocalAccount
    oracle: LocalAccount
    buyer: LocalAccount | None = None
    supplier: LocalAccount | None = None
    arbiter: LocalAccount | None = None
    auditor: LocalAccount | None = None
    stranger: LocalAccount | None = None

    def __iter__(self) -> Iterator[tuple[str, LocalAccount]]:
        for f in fields(self):
            acct = getattr(self, f.name)
            if acct is not None:
                yield f.name, acct

    def require(self, role: str) -> LocalAccount:
        acct: LocalAccount | None = getattr(self, role, None)
        if acct is None:
            raise ConfigurationError(
                f"no {role} account: party accounts exist only in dev mode (DEV_MODE=true)"
            )
        return acct


def dev_accounts(settings: Settings) -> Accounts:
    keys = {role: Account.from_key(dev_private_key(role)) for role in DEV_ROLES}
    oracle = Account.from_key(settings.ORACLE_PRIVATE_KEY.get_secret_value())
    return Accounts(oracle=oracle, **keys)


def configured_accounts(settings: Settings) -> Accounts:
    """Accounts outside dev mode: the oracle key, and the deployer key (default: the oracle's)."""
    settings.check_secrets()
    try:
        oracle = Account.from_key(settings.ORACLE_PRIVATE_KEY.get_secret_value())
        deployer_secret = getattr(settings, "DEPLOYER_PRIVATE_KEY", None)
        admin = Account.from_key(deployer_secret.get_secret_value()) if deployer_secret else oracle
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"a configured private key is not a valid key: {exc}") from None
    return Accounts(admin=admin, oracle=oracle)


# ---------------------------------------------------------------------------
# eth-tester with revert data preserved
# ---------------------------------------------------------------------------


def _tester_backend(accounts: Accounts, balance: int = DEV_BALANCE) -> Any:
    """A PyEVMBackend whose eth_call keeps the raw revert data (stock eth-tester turns
    it into a string, losing custom errors)."""
    from eth_tester import PyEVMBackend
    from eth_tester.backends.pyevm.main import (
        EVMSpoofTransaction,
        _execute_and_revert_transaction,
    )
    from eth_tester.exceptions import TransactionFailed

    class _Backend(PyEVMBackend):  # type: ignore[misc]
        def call(self, transaction: dict[str, Any], block_number: Any = "latest") -> bytes:
            tx = dict(transaction)
            tx.setdefault("gas", self._max_available_gas())
            unsigned = self._get_normalized_and_unsigned_evm_transaction(tx, block_number)
            spoofed = EVMSpoofTransaction(unsigned, from_=transaction["from"])
            computation = _execute_and_revert_transaction(self.chain, spoofed, block_number)
            if computation.is_error:
                raise TransactionFailed(computation._error)
            return bytes(computation.output)

    state = PyEVMBackend.generate_genesis_state(num_accounts=3)
    for _, acct in accounts:
        state[bytes.fromhex(acct.address[2:])] = {
            "balance": balance,
            "nonce": 0,
            "code": b"",
            "storage": {},
        }
    params = PyEVMBackend.generate_genesis_params({"gas_limit": TESTER_GAS_LIMIT})
    return _Backend(genesis_parameters=params, genesis_state=state)


class _TesterProvider(EthereumTesterProvider):
    """EthereumTesterProvider that answers reverts like a JSON-RPC node does
    (``error.data`` = the raw revert data as hex), so one decoder serves both.

    py-evm is not thread-safe, and the embedded stack (demo, replay, serve without
    RPC_URL) reaches it from several threads (oracle outbox and indexer, API, driver):
    every request holds :attr:`lock`, and so do the Chain's time and snapshot controls.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.RLock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self.lock:
            return self._make_request(method, params)

    def _make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method not in ("eth_call", "eth_estimateGas"):
            return super().make_request(method, params)
        from eth_tester.exceptions import TransactionFailed

        delegator = self.api_endpoints["eth"][method[4:]]  # type: ignore[index]
        self._current_request_id += 1
        request_id = repr(self._current_request_id)
        try:
            result = delegator(self.ethereum_tester, params)
        except TransactionFailed as exc:
            err: Any = exc.args[0] if exc.args else None
            raw: Any = err.args[0] if isinstance(err, BaseException) and err.args else err
            if isinstance(raw, (bytes, bytearray)):
                error = {
                    "code": 3,
                    "message": "execution reverted",
                    "data": "0x" + bytes(raw).hex(),
                }
            else:
                error = {"code": -32000, "message": f"execution failed: {raw}"}
            return cast(RPCResponse, {"jsonrpc": "2.0", "id": request_id, "error": error})
        return cast(RPCResponse, {"jsonrpc": "2.0", "id": request_id, "result": result})


# ---------------------------------------------------------------------------
# Chain
# ---------------------------------------------------------------------------


class Chain:
    """A connected chain: web3, chain id, accounts, one TxSender per key, and test controls."""

    def __init__(
        self,
        w3: Web3,
        *,
        kind: ChainKind,
        accounts: Accounts,
        rpc_url: str | None = None,
        registry: AbiRegistry | None = None,
        sender_options: dict[str, Any] | None = None,
    ) -> None:
        self.w3 = w3
        self.kind: ChainKind = kind
        self.accounts = accounts
        self.rpc_url = rpc_url
        self.registry = registry if registry is not None else default_registry()
        self.sender_options = dict(sender_options or {})
        self._senders: dict[str, TxSender] = {}
        self._transport = TxSender(
            w3, accounts.admin, registry=self.registry, **self.sender_options
        )
        self.chain_id: int = self._transport.chain_id

    def __repr__(self) -> str:
        where = self.rpc_url or "in-process"
        return f"Chain({self.kind}, chain_id={self.chain_id}, {where})"

    # ---- senders -------------------------------------------------------------

    def sender(self, account: LocalAccount | TxSender) -> TxSender:
        """The one TxSender of ``account`` on this chain (created on first use)."""
        if isinstance(account, TxSender):
            return account
        key = account.address.lower()
        sender = self._senders.get(key)
        if sender is None:
            sender = TxSender(
                self.w3,
                account,
                registry=self.registry,
                chain_id=self.chain_id,
                **self.sender_options,
            )
            self._senders[key] = sender
        return sender

    def rewound(self) -> None:
        """A reorganisation replaced recent blocks: transactions of every sender may have
        left the chain with them, so each reads its next nonce from the node again."""
        for sender in list(self._senders.values()):
            sender.resync_nonce()

    def retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a node request), retrying only transport errors with the
        senders' backoff policy; raises TransportError when the node stays unreachable.
        ``what`` names the request in logs and errors."""
        return self._transport._rpc(what, fn)

    _rpc = retrying

    def request(self, method: str, *params: Any) -> Any:
        """A raw JSON-RPC call (retrying transport errors); raises ChainError on an RPC error."""
        response = self._rpc(
            method, lambda: self.w3.provider.make_request(RPCEndpoint(method), list(params))
        )
        if "error" in response and response["error"]:
            raise ChainError(f"{method} failed: {response['error']}")
        return response.get("result")

    # ---- reads ---------------------------------------------------------------

    def call(
        self, to: str, data: bytes, *, function: str | None = None, block: int | str = "latest"
    ) -> bytes:
        """``eth_call`` (from the admin account); a revert raises ContractRevert."""
        return self._transport.call(to, data, function=function, block=block)

    @property
    def block_number(self) -> int:
        return int(self._rpc("eth_blockNumber", lambda: self.w3.eth.block_number))

    def now(self) -> int:
        """The latest block's timestamp (the contracts' ``block.timestamp`` of the last block)."""
        return int(
            self._rpc("eth_getBlockByNumber", lambda: self.w3.eth.get_block("latest"))["timestamp"]
        )

    def block_hash(self, number: int) -> str | None:
        """The 0x-hex hash of block ``number``, or None when the chain has no such block."""
        from web3.exceptions import BlockNotFound

        def get() -> Any:
            try:
                return self.w3.eth.get_block(number)
            except BlockNotFound:
                return None

        block = self._rpc("eth_getBlockByNumber", get)
        return None if block is None else "0x" + bytes(block["hash"]).hex()

    def balance(self, address: str) -> int:
        return int(
            self._rpc(
                "eth_getBalance", lambda: self.w3.eth.get_balance(to_checksum_address(address))
            )
        )

    def code_at(self, address: str) -> bytes:
        return bytes(
            self._rpc("eth_getCode", lambda: self.w3.eth.get_code(to_checksum_address(address)))
        )

    # ---- test controls: time -------------------------------------------------

    def _tester(self) -> Any:
        return self.w3.provider.ethereum_tester  # type: ignore[attr-defined]

    def _lock(self) -> Any:
        """The in-process chain's lock (a no-op context for a JSON-RPC node)."""
        return getattr(self.w3.provider, "lock", contextlib.nullcontext())

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""
        if self.kind == "eth-tester":
            with self._lock():
                self._tester().mine_blocks(blocks)
        else:
            for _ in range(blocks):
                self.request("evm_mine")

    def set_next_block_timestamp(self, timestamp: int) -> None:
        """The next mined block (e.g. the next transaction's) gets exactly ``timestamp``."""
        latest = self.now()
        if timestamp <= latest:
            raise ChainError(f"timestamp {timestamp} is not after the latest block's {latest}")
        if self.kind == "eth-tester":
            with self._lock():
                backend = self._tester().backend
                backend.chain.header = backend.chain.header.copy(timestamp=timestamp)
        else:
            self.request("evm_setNextBlockTimestamp", timestamp)

    def time_travel(self, timestamp: int) -> None:
        """Mine a block with exactly ``timestamp`` (must be after the latest block)."""
        self.set_next_block_timestamp(timestamp)
        self.mine()

    def advance_time(self, seconds: int) -> int:
        """Mine a block ``seconds`` after the latest one; returns its timestamp."""
        if seconds < 1:
            raise ChainError(f"can only move time forward, not by {seconds}s")
        target = self.now() + seconds
        self.time_travel(target)
        return target

    # ---- test controls: snapshots --------------------------------------------

    def snapshot(self) -> Any:
        """Take a snapshot of the chain state; pass the id to :meth:`revert`."""
        if self.kind == "eth-tester":
            with self._lock():
                return self._tester().take_snapshot()
        return self.request("evm_snapshot")

    def revert(self, snapshot_id: Any) -> None:
        """Return the chain to a snapshot; every sender forgets its nonce and in-flight txs.

        On anvil a snapshot id can be reverted to only once.
        """
        if self.kind == "eth-tester":
            with self._lock():
                self._tester().revert_to_snapshot(snapshot_id)
        elif not self.request("evm_revert", snapshot_id):
            raise ChainError(f"evm_revert({snapshot_id}) refused: unknown or already used snapshot")
        for sender in (*self._senders.values(), self._transport):
            sender.forget_in_flight()
            sender._nonce = None
            sender._fees = None

    # ---- funding -------------------------------------------------------------

    def fund(self, address: str, amount: int) -> None:
        """Give ``address`` at least ``amount`` wei (dev chains only)."""
        address = to_checksum_address(address)
        have = self.balance(address)
        if have >= amount:
            return
        if self.kind == "rpc":
            for method in ("anvil_setBalance", "hardhat_setBalance"):
                try:
                    self.request(method, address, hex(amount))
                    return
                except ChainError as exc:
                    logger.debug("%s unavailable: %s", method, exc)
            funder = self.sender(Account.from_key(ANVIL_FUNDER_KEY))
        else:
            funder = self.sender(self.accounts.admin)
        if self.balance(funder.address) < amount - have:
            raise ConfigurationError(
                f"cannot fund {address} on {self}: no anvil_setBalance and {funder.address} "
                "holds too little. Fund the accounts yourself or run against anvil."
            )
        funder.transact(address, b"", value=amount - have, gas=21_000, function="fund")


def connect(
    settings: Settings | None = None,
    *,
    rpc_url: str | None = None,
    retry: RetryPolicy | None = None,
    request_timeout: float = 30.0,
    dev_balance: int = DEV_BALANCE,
    **sender_options: Any,
) -> Chain:
    """Connect to the chain the settings name (eth-tester when ``RPC_URL`` is unset).

    ``rpc_url`` overrides the settings. ``dev_balance`` is what each account holds in
    the genesis block of a new in-process chain (tests that need richer accounts).
    ``sender_options`` are passed to every :class:`TxSender` (``receipt_timeout``,
    ``max_in_flight``, ``gas_margin`` ...).
    """
    settings = settings or Settings()
    url = rpc_url if rpc_url is not None else settings.RPC_URL
    if retry is not None:
        sender_options["retry"] = retry
    if not url:
        accounts = dev_accounts(settings)
        if not settings.DEV_MODE:
            logger.warning("RPC_URL is unset: using the in-process eth-tester chain with dev keys")
        w3 = Web3(_TesterProvider(_tester_backend(accounts, dev_balance)))
        chain = Chain(w3, kind="eth-tester", accounts=accounts, sender_options=sender_options)
        logger.info("connected to in-process eth-tester (chain id %d)", chain.chain_id)
        return chain

    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"RPC_URL={url!r}: only http:// and https:// JSON-RPC URLs are supported"
        )
    accounts = dev_accounts(settings) if settings.DEV_MODE else configured_accounts(settings)
    # No web3-level retries: TxSender retries transport errors itself, so attempts are bounded
    # and counted in one place.
    provider = HTTPProvider(
        url, request_kwargs={"timeout": request_timeout}, exception_retry_configuration=None
    )
    w3 = Web3(provider)
    try:
        chain = Chain(w3, kind="rpc", accounts=accounts, rpc_url=url, sender_options=sender_options)
    except TransportError as exc:
        cause = exc.__cause__ or exc
        raise TransportError(
            f"cannot reach the chain at RPC_URL={url} after {exc.attempts} attempts "
            f"({short_reason(cause)}): start the node (e.g. `anvil`) or fix RPC_URL",
            attempts=exc.attempts,
        ) from exc
    if settings.DEV_MODE:
        for role, acct in accounts:
            if chain.balance(acct.address) < DEV_MIN_BALANCE:
                chain.fund(acct.address, DEV_BALANCE)
                logger.info("funded dev %s %s", role, acct.address)
    logger.info("connected to %s (chain id %d)", url, chain.chain_id)
    return chain
