"""The chain layer against a real anvil: `trustship deploy`, manifests across
processes and restarts, real transport faults, and a burst of transactions."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from backend.chain.connection import connect
from backend.chain.contracts import Contracts, OrderState
from backend.chain.deploy import deploy_from_settings, load_deployment
from backend.chain.errors import ContractRevert, DeploymentError
from backend.chain.sender import RetryPolicy, TxSender
from backend.chain.testing import Stack, default_terms
from testkit.sending import submit_burst
from testkit.servers import Server, start_anvil
from testkit.settings import dev_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def anvil() -> Iterator[Server]:
    server = start_anvil()
    try:
        yield server
    finally:
        server.stop()


class FaultyProxy:
    """An HTTP proxy in front of a node that can cut the connection for the next N
    requests of a method, either before forwarding them or after the node answered."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.seen: Counter[str] = Counter()
        self.drop_before: Counter[str] = Counter()
        self.drop_after: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                method = json.loads(body).get("method", "?")
                proxy.seen[method] += 1
                if proxy.drop_before[method] > 0:
                    proxy.drop_before[method] -= 1
                    self.close_connection = True
                    return  # no response: the client sees the connection close
                answer = requests.post(
                    proxy.upstream,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                if proxy.drop_after[method] > 0:
                    proxy.drop_after[method] -= 1
                    self.close_connection = True
                    return  # the node acted, the client never hears about it
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(anvil_stack: Stack) -> Iterator[FaultyProxy]:
    assert anvil_stack.chain.rpc_url is not None
    p = FaultyProxy(anvil_stack.chain.rpc_url)
    yield p
    p.close()


def test_trustship_deploy_writes_a_manifest_another_process_can_use(
    anvil: Server, tmp_path: Path
) -> None:
    settings = dev_settings(anvil.extra["url"])
    settings.DEPLOYMENT_FILE = tmp_path / "var" / "deployment.json"
    deployment = deploy_from_settings(settings)
    assert settings.DEPLOYMENT_FILE.exists()

    # "another process": a new connection that only has the manifest
    other = connect(dev_settings(anvil.extra["url"]))
    loaded = load_deployment(settings.DEPLOYMENT_FILE, other)
    assert loaded == deployment
    c = Contracts.from_deployment(other, loaded)
    a = other.accounts
    order_id = c.po.create_and_fund_order(
        default_terms(
            other.now(),
            a.require("arbiter").address,
            buyer=a.require("buyer").address,
            supplier=a.require("supplier").address,
        ),
        by=a.require("buyer"),
    ).value
    assert c.po.order_state(order_id) is OrderState.CREATED
    assert loaded.oracles == [a.oracle.address]  # the fleet-log committers readers trust


def test_manifest_is_refused_after_the_node_was_reset(anvil: Server, tmp_path: Path) -> None:
    settings = dev_settings(anvil.extra["url"])
    settings.DEPLOYMENT_FILE = tmp_path / "deployment.json"
    deploy_from_settings(settings)
    fresh = start_anvil()  # same chain id 31337, empty state
    try:
        with pytest.raises(DeploymentError, match="no contract code at"):
            load_deployment(settings.DEPLOYMENT_FILE, connect(dev_settings(fresh.extra["url"])))
    finally:
        fresh.stop()


def test_deploy_keep_existing_keeps_contracts_that_are_on_the_chain(
    anvil: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # docker-compose.yml's one-shot deployer runs again on every `up` and `run`: it must
    # not replace the contracts the running server, its database and the manifest share
    settings = dev_settings(anvil.extra["url"])
    settings.DEPLOYMENT_FILE = tmp_path / "deployment.json"
    first = deploy_from_settings(settings, keep_existing=True)  # nothing to keep yet
    chain = connect(dev_settings(anvil.extra["url"]))
    nonce = chain.w3.eth.get_transaction_count(first.deployer)
    capsys.readouterr()
    again = deploy_from_settings(settings, keep_existing=True)
    assert again == first
    assert "kept" in capsys.readouterr().out
    assert chain.w3.eth.get_transaction_count(first.deployer) == nonce  # sent nothing
    assert load_deployment(settings.DEPLOYMENT_FILE, chain) == first
    # without the flag `trustship deploy` deploys a new set, as before
    assert deploy_from_settings(settings).purchase_orders != first.purchase_orders


def test_deploy_keep_existing_deploys_on_a_reset_node(anvil: Server, tmp_path: Path) -> None:
    settings = dev_settings(anvil.extra["url"])
    settings.DEPLOYMENT_FILE = tmp_path / "deployment.json"
    deploy_from_settings(settings)
    fresh = start_anvil()  # same chain id, empty state: the manifest points at nothing
    try:
        settings = dev_settings(fresh.extra["url"])
        settings.DEPLOYMENT_FILE = tmp_path / "deployment.json"
        redeployed = deploy_from_settings(settings, keep_existing=True)
        assert load_deployment(settings.DEPLOYMENT_FILE, connect(settings)) == redeployed
    finally:
        fresh.stop()


@pytest.fixture
def via_proxy(anvil_stack: Stack, proxy: FaultyProxy) -> TxSender:
    """The stranger's sender, reaching the node through ``proxy`` (four attempts)."""
    from web3 import HTTPProvider, Web3

    w3 = Web3(HTTPProvider(proxy.url, exception_retry_configuration=None))
    return TxSender(
        w3,
        anvil_stack.accounts.stranger,
        registry=anvil_stack.chain.registry,
        retry=RetryPolicy(attempts=4, initial_backoff=0.01),
    )


def test_connection_cut_before_the_node_saw_the_transaction(
    anvil_stack: Stack, proxy: FaultyProxy, via_proxy: TxSender
) -> None:
    a = anvil_stack.accounts
    start = via_proxy.next_nonce
    proxy.drop_before["eth_sendRawTransaction"] = 2
    terms = anvil_stack.make_terms(buyer=a.stranger.address)  # the sender is the buyer
    result = anvil_stack.po.create_order(terms, by=via_proxy)
    assert result.receipt["status"] == 1
    assert proxy.seen["eth_sendRawTransaction"] == 3
    assert anvil_stack.chain.w3.eth.get_transaction_count(a.stranger.address) == start + 1


def test_connection_cut_after_the_node_took_the_transaction(
    anvil_stack: Stack, proxy: FaultyProxy, via_proxy: TxSender
) -> None:
    a = anvil_stack.accounts
    start = via_proxy.next_nonce
    count = anvil_stack.po.order_count()
    # anvil mined it on the first attempt; the resend is "nonce too low" / "already known"
    proxy.drop_after["eth_sendRawTransaction"] = 1
    terms = anvil_stack.make_terms(buyer=a.stranger.address)  # the sender is the buyer
    result = anvil_stack.po.create_order(terms, by=via_proxy)
    assert result.receipt["status"] == 1
    assert anvil_stack.po.order_count() == count + 1  # exactly once
    assert anvil_stack.chain.w3.eth.get_transaction_count(a.stranger.address) == start + 1
    assert via_proxy.next_nonce == start + 1
    assert via_proxy.stats["rpc_retries"] == 1
    assert via_proxy.stats["nonce_resyncs"] == 0  # recognised its own transaction, no resync


def test_a_revert_through_the_proxy_is_sent_once(anvil_stack: Stack, proxy: FaultyProxy) -> None:
    from web3 import HTTPProvider, Web3

    a = anvil_stack.accounts
    w3 = Web3(HTTPProvider(proxy.url, exception_retry_configuration=None))
    sender = TxSender(w3, a.stranger, registry=anvil_stack.chain.registry)
    with pytest.raises(ContractRevert) as info:
        # no such order: the terms sent do not matter, the order check comes first
        anvil_stack.po.accept_order(10**9, terms=anvil_stack.make_terms(), by=sender)
    assert info.value.name == "PurchaseOrdersUnknownOrder"
    assert info.value.args == {"orderId": 10**9}
    assert proxy.seen["eth_estimateGas"] == 1
    assert proxy.seen["eth_sendRawTransaction"] == 0


def test_burst_of_transactions_with_bounded_in_flight(anvil_stack: Stack) -> None:
    a = anvil_stack.accounts
    sender = anvil_stack.chain.sender(a.buyer)
    data = anvil_stack.po.calldata("createOrder", anvil_stack.make_terms().as_tuple())
    before = anvil_stack.po.order_count()
    to = anvil_stack.po.address
    peak, results = submit_burst(sender, to, data, count=200, bound=16, gas=300_000)
    assert peak <= 16
    assert len(results) == 200
    assert anvil_stack.po.order_count() == before + 200
