"""TxSender: nonces, gas, receipts, revert decoding, retries — against real contracts."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
from eth_account import Account
from web3 import HTTPProvider, Web3

from backend.chain.connection import _TesterProvider
from backend.chain.contracts import OrderState, Terms
from backend.chain.decoding import AbiRegistry
from backend.chain.errors import (
    ContractRevert,
    TransactionFailed,
    TransactionRejected,
    TransportError,
    UndecodedRevert,
)
from backend.chain.sender import RetryPolicy, TxSender
from backend.chain.testing import Stack
from testkit.sending import submit_burst
from testkit.servers import free_port

pytestmark = pytest.mark.timeout(120)


class _Counting:
    """Counts requests per method and can fail the first N requests of a method with a
    connection error (fault injection in front of a real node)."""

    calls: Counter[str]
    fail: dict[str, int]

    def make_request(self, method: Any, params: Any) -> Any:
        self.calls[method] += 1
        if self.fail.get(method, 0) > 0:
            self.fail[method] -= 1
            raise requests.exceptions.ConnectionError(f"injected: connection reset during {method}")
        return super().make_request(method, params)  # type: ignore[misc]


class CountingTesterProvider(_Counting, _TesterProvider):
    def __init__(self, ethereum_tester: Any, fail: dict[str, int] | None = None) -> None:
        super().__init__(ethereum_tester)
        self.calls, self.fail = Counter(), dict(fail or {})


class CountingHTTPProvider(_Counting, HTTPProvider):
    def __init__(self, url: str, fail: dict[str, int] | None = None) -> None:
        super().__init__(url, exception_retry_configuration=None)
        self.calls, self.fail = Counter(), dict(fail or {})


def counting_sender(
    stack: Stack, account: Any, fail: dict[str, int] | None = None, **options: Any
) -> tuple[TxSender, _Counting]:
    """A TxSender for ``account`` on the stack's node, through a counting provider."""
    provider: _Counting
    if stack.chain.kind == "eth-tester":
        provider = CountingTesterProvider(stack.chain.w3.provider.ethereum_tester, fail)  # type: ignore[attr-defined]
    else:
        assert stack.chain.rpc_url is not None
        provider = CountingHTTPProvider(stack.chain.rpc_url, fail)
    sender = TxSender(Web3(provider), account, registry=stack.chain.registry, **options)  # type: ignore[arg-type]
    return sender, provider


def new_order(stack: Stack, make_terms: Callable[..., Terms], funded: bool = True) -> int:
    a = stack.accounts
    terms = make_terms()
    if funded:
        return int(stack.po.create_and_fund_order(terms, by=a.buyer).value)
    return int(stack.po.create_order(terms, by=a.buyer).value)


@pytest.fixture
def order_id(stack: Stack, make_terms: Callable[..., Terms]) -> int:
    """A funded order of the buyer with the supplier, created for the test."""
    return new_order(stack, make_terms)


# ---- nonces -------------------------------------------------------------------


def test_many_sends_without_waiting_keep_nonces_in_order(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    a = stack.accounts
    sender = stack.chain.sender(a.buyer)
    start = sender.next_nonce
    data = stack.po.calldata("createOrder", make_terms().as_tuple())
    gas = sender.estimate_gas(stack.po.address, data)
    pendings = [
        sender.submit(stack.po.address, data, gas=gas, function="createOrder") for _ in range(30)
    ]
    assert [p.nonce for p in pendings] == list(range(start, start + 30))
    results = sender.wait_all()
    assert len(results) == 30
    assert all(r.receipt["status"] == 1 for r in results)  # type: ignore[union-attr]
    ids = [r.event("OrderCreated")["orderId"] for r in results]  # type: ignore[union-attr]
    assert ids == sorted(ids) and len(set(ids)) == 30
    assert sender.next_nonce == start + 30
    assert stack.chain.w3.eth.get_transaction_count(a.buyer.address) == start + 30
    assert sender.in_flight == 0


def test_in_flight_transactions_are_bounded(stack: Stack, make_terms: Callable[..., Terms]) -> None:
    a = stack.accounts
    sender = stack.chain.sender(a.buyer)
    data = stack.po.calldata("createOrder", make_terms().as_tuple())
    peak, results = submit_burst(sender, stack.po.address, data, count=12, bound=4, gas=400_000)
    assert peak == 4
    assert len(results) == 12


def test_nonce_resyncs_after_another_process_used_the_key(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    a = stack.accounts
    ours = stack.chain.sender(a.buyer)
    ours.next_nonce  # noqa: B018 - initialise the local nonce
    # "another process": an independent sender with the same key, same node
    theirs = TxSender(stack.chain.w3, a.buyer, registry=stack.chain.registry)
    terms = make_terms()
    theirs.transact(stack.po.address, stack.po.calldata("createOrder", terms.as_tuple()))
    resyncs = ours.stats["nonce_resyncs"]
    result = stack.po.create_order(terms, by=a.buyer)  # stale nonce → resync
    assert ours.stats["nonce_resyncs"] == resyncs + 1
    assert result.receipt["status"] == 1
    assert ours.next_nonce == stack.chain.w3.eth.get_transaction_count(a.buyer.address)


# ---- gas and receipts -----------------------------------------------------------


def test_gas_is_estimated_once_with_a_margin_or_taken_as_given(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    a = stack.accounts
    sender, provider = counting_sender(stack, a.stranger)
    data = stack.po.calldata("createOrder", make_terms(buyer=a.stranger.address).as_tuple())
    raw_estimate = stack.chain.w3.eth.estimate_gas(
        {"from": a.stranger.address, "to": stack.po.address, "data": data}
    )
    estimated = sender.transact(stack.po.address, data)
    tx = stack.chain.w3.eth.get_transaction(estimated.tx_hash)  # type: ignore[arg-type]
    assert tx["gas"] == int(raw_estimate * sender.gas_margin) + 1
    assert provider.calls["eth_estimateGas"] == 1
    fixed = sender.transact(stack.po.address, data, gas=500_000)
    assert stack.chain.w3.eth.get_transaction(fixed.tx_hash)["gas"] == 500_000  # type: ignore[arg-type]
    assert provider.calls["eth_estimateGas"] == 1  # not estimated again
    assert tx["type"] == 2 and tx["maxFeePerGas"] >= tx["maxPriorityFeePerGas"] > 0


def test_mined_revert_with_status_0_raises_the_decoded_error(stack: Stack, order_id: int) -> None:
    a = stack.accounts
    # fixed gas skips estimation, so the revert happens in a mined transaction
    with pytest.raises(ContractRevert) as info:
        certs = stack.certificates(order_id, [a.stranger.address])
        stack.po.ship_order(order_id, certs, by=a.supplier, gas=300_000)
    exc = info.value
    assert exc.name == "PurchaseOrdersInvalidState"
    assert exc.args == {"orderId": order_id, "current": OrderState.CREATED}
    assert exc.tx_hash is not None and exc.receipt is not None
    assert exc.receipt["status"] == 0
    assert exc.contract == "PurchaseOrders"
    assert exc.function == "PurchaseOrders.shipOrder"
    # the failed transaction is mined: the nonce moved on and the next send works
    assert stack.po.accept_order(order_id, by=a.supplier).receipt["status"] == 1


def test_out_of_gas_is_a_transaction_failure_with_a_hint(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    a = stack.accounts
    with pytest.raises(TransactionFailed, match="ran out of gas") as info:
        stack.po.create_order(make_terms(), by=a.buyer, gas=60_000)
    assert info.value.receipt["status"] == 0
    assert info.value.receipt["gasUsed"] == 60_000


def test_node_refusal_is_transaction_rejected(stack: Stack) -> None:
    poor = Account.from_key("0x" + "77" * 32)  # never funded
    with pytest.raises(TransactionRejected, match="refused by the node when sent") as info:
        stack.chain.sender(poor).transact(stack.accounts.buyer.address, b"", value=1, gas=21_000)
    assert (info.value.account, info.value.balance, info.value.value) == (poor.address, 0, 1)
    assert f"{poor.address} holds 0 wei and the transaction sends 1 wei plus gas" in str(info.value)


def test_insufficient_funds_at_gas_estimation_is_transaction_rejected(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    """anvil answers eth_estimateGas with -32003 "Insufficient funds"; eth-tester with a
    ValidationError: both are the node refusing the transaction, before it is sent."""
    a = stack.accounts
    balance = stack.chain.balance(a.buyer.address)
    price = balance + 10**18
    sent = stack.chain.sender(a.buyer).stats["sent"]
    with pytest.raises(TransactionRejected, match="refused by the node at gas estimation") as info:
        stack.po.create_and_fund_order(make_terms(price=price), by=a.buyer)
    rejected = info.value
    assert (rejected.account, rejected.balance, rejected.value) == (a.buyer.address, balance, price)
    assert "createAndFundOrder" in str(rejected)
    assert stack.chain.sender(a.buyer).stats["sent"] == sent  # nothing was sent


# ---- revert decoding ------------------------------------------------------------


def test_custom_error_with_enum_arg_at_estimate_time(stack: Stack, order_id: int) -> None:
    a = stack.accounts
    stack.po.accept_order(order_id, by=a.supplier)
    with pytest.raises(ContractRevert) as info:
        stack.po.accept_order(order_id, by=a.supplier)
    assert info.value.name == "PurchaseOrdersInvalidState"
    assert info.value.args == {"orderId": order_id, "current": OrderState.FUNDED}
    assert info.value.tx_hash is None  # refused at estimate time: nothing was sent
    assert "PurchaseOrders.PurchaseOrdersInvalidState(orderId=" in str(info.value)


def test_custom_error_with_address_and_string_args(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    a = stack.accounts
    order_id = new_order(stack, make_terms, funded=False)
    with pytest.raises(ContractRevert) as info:
        stack.po.accept_order(order_id, by=a.stranger)
    assert info.value.name == "PurchaseOrdersNotSupplier"
    assert info.value.args == {"orderId": order_id, "caller": a.stranger.address}
    with pytest.raises(ContractRevert) as bad_terms:
        stack.po.create_order(make_terms(price=0), by=a.buyer)
    assert bad_terms.value.name == "PurchaseOrdersInvalidTerms"
    assert bad_terms.value.args == {"field": "price"}


def test_access_error_with_address_args_is_decoded(stack: Stack, order_id: int) -> None:
    a = stack.accounts
    with pytest.raises(ContractRevert) as info:
        stack.po.record_breach(order_id, by=a.stranger, gas=100_000)
    assert info.value.name == "PurchaseOrdersNotQualityVerification"
    assert info.value.args == {"caller": a.stranger.address}


def test_revert_matching_no_known_abi_carries_the_raw_data(stack: Stack, order_id: int) -> None:
    a = stack.accounts
    blind = TxSender(stack.chain.w3, a.stranger, registry=AbiRegistry())  # knows no errors
    data = stack.po.calldata("acceptOrder", order_id, stack.po.terms_of(order_id).as_tuple())
    with pytest.raises(UndecodedRevert) as info:
        blind.transact(stack.po.address, data)
    raw = info.value.args["data"]
    assert raw.startswith("0x") and len(raw) > 10
    assert info.value.name == "UndecodedRevert"
    assert raw in str(info.value) and "matches no error" in str(info.value)
    assert isinstance(info.value, ContractRevert)


def test_contract_revert_survives_pickling(stack: Stack, order_id: int) -> None:
    a = stack.accounts
    with pytest.raises(ContractRevert) as info:
        stack.po.accept_order(order_id, by=a.buyer)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.name, copy.args, str(copy)) == (info.value.name, info.value.args, str(info.value))


# ---- retries ----------------------------------------------------------------------


def test_closed_port_raises_transport_error_after_bounded_retries() -> None:
    provider = CountingHTTPProvider(f"http://127.0.0.1:{free_port()}")
    slept: list[float] = []
    sender = TxSender(
        Web3(provider),
        Account.from_key("0x" + "55" * 32),
        registry=AbiRegistry(),
        retry=RetryPolicy(attempts=5, initial_backoff=0.1, multiplier=2.0, max_backoff=0.3),
        sleep=slept.append,
    )
    with pytest.raises(TransportError) as info:
        sender.transact("0x" + "00" * 19 + "01", b"", gas=21_000)
    assert info.value.attempts == 5
    assert sum(provider.calls.values()) == 5  # exactly the bounded attempts, nothing more
    assert slept == [0.1, 0.2, 0.3, 0.3]  # exponential backoff, capped


def test_transport_errors_are_retried_and_the_transaction_lands_once(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    a = stack.accounts
    sender, provider = counting_sender(
        stack,
        a.stranger,
        fail={"eth_sendRawTransaction": 2, "eth_getTransactionReceipt": 1},
        retry=RetryPolicy(attempts=4, initial_backoff=0.001),
    )
    start = sender.next_nonce
    result = stack.po.create_order(make_terms(buyer=a.stranger.address), by=sender)
    assert result.receipt["status"] == 1
    assert provider.calls["eth_sendRawTransaction"] == 3
    assert sender.stats["rpc_retries"] == 3
    assert stack.chain.w3.eth.get_transaction_count(a.stranger.address) == start + 1


def test_a_revert_is_never_retried(stack: Stack, order_id: int) -> None:
    a = stack.accounts
    sender, provider = counting_sender(stack, a.stranger)
    with pytest.raises(ContractRevert):
        stack.po.accept_order(order_id, by=sender)  # estimate reverts
    assert provider.calls["eth_estimateGas"] == 1
    assert provider.calls["eth_sendRawTransaction"] == 0
    with pytest.raises(ContractRevert):
        stack.po.accept_order(order_id, by=sender, gas=200_000)  # mined revert
    assert provider.calls["eth_sendRawTransaction"] == 1
    assert sender.stats["rpc_retries"] == 0


@pytest.mark.integration
def test_threads_sharing_a_sender_share_blocks_on_an_interval_mined_chain() -> None:
    """A thread waiting for its receipt does not hold the sender: on a chain that
    mines once a second, eight threads' transactions land in one or two blocks
    (not eight, one after the other)."""
    from concurrent.futures import ThreadPoolExecutor

    from backend.chain.connection import ANVIL_FUNDER_KEY
    from testkit.servers import start_anvil

    anvil = start_anvil("--block-time", "1")
    try:
        sender = TxSender(
            Web3(HTTPProvider(anvil.extra["url"])),
            Account.from_key(ANVIL_FUNDER_KEY),
            registry=AbiRegistry(),
        )
        to = "0x" + "ab" * 20  # a plain account (low addresses are precompiles)
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(
                pool.map(lambda v: sender.transact(to, b"", value=v, gas=21_000), range(1, 9))
            )
        blocks = {r.block_number for r in results}
        assert len(blocks) <= 2, sorted(blocks)
        nonces = sorted(int(sender.w3.eth.get_transaction(r.tx_hash)["nonce"]) for r in results)
        assert nonces == list(range(nonces[0], nonces[0] + 8))
        assert sender.in_flight == 0
    finally:
        anvil.stop()


@pytest.mark.integration
def test_a_transaction_the_node_dropped_ends_the_wait_and_frees_its_nonce() -> None:
    """A transaction gone from the node while its receipt is awaited (dropped from the
    pool here; a reorganisation takes mined ones the same way) ends the wait within
    seconds as TxDropped, not after the receipt timeout, and the next transaction
    takes its nonce instead of waiting behind a gap forever."""
    import time

    from backend.chain.connection import ANVIL_FUNDER_KEY
    from backend.chain.errors import TxDropped
    from testkit.servers import start_anvil

    anvil = start_anvil("--no-mining")
    try:
        w3 = Web3(HTTPProvider(anvil.extra["url"]))
        sender = TxSender(w3, Account.from_key(ANVIL_FUNDER_KEY), registry=AbiRegistry())
        to = "0x" + "ab" * 20
        pending = sender.submit(to, b"", value=1, gas=21_000)
        w3.provider.make_request("anvil_dropTransaction", [pending.tx_hash])  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(TxDropped) as dropped:
            sender.wait(pending, timeout=60)
        assert time.monotonic() - started < 10, "ended long before the receipt timeout"
        assert dropped.value.tx_hash == pending.tx_hash
        assert sender.in_flight == 0
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        again = sender.transact(to, b"", value=1, gas=21_000)
        assert int(w3.eth.get_transaction(again.tx_hash)["nonce"]) == pending.nonce
    finally:
        anvil.stop()
