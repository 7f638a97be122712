"""connect() on both providers, dev accounts, and the time/snapshot controls."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import SecretStr

from backend.chain.connection import (
    DEV_ROLES,
    TESTER_GAS_LIMIT,
    Chain,
    configured_accounts,
    connect,
    dev_private_key,
)
from backend.chain.contracts import Terms
from backend.chain.errors import ChainError, ConfigurationError, TransportError
from backend.chain.sender import RetryPolicy
from backend.chain.testing import Stack
from backend.core.settings import DEV_ORACLE_PRIVATE_KEY, Settings
from testkit.servers import free_port
from testkit.settings import dev_settings

pytestmark = pytest.mark.timeout(120)


def test_eth_tester_chain_has_funded_dev_accounts_and_a_high_gas_limit(chain: Chain) -> None:
    assert chain.kind == "eth-tester"
    assert chain.rpc_url is None
    assert chain.w3.eth.get_block("latest")["gasLimit"] == TESTER_GAS_LIMIT
    roles = dict(chain.accounts)
    assert set(roles) == {*DEV_ROLES, "oracle"}
    for role, acct in roles.items():
        assert chain.balance(acct.address) > 0, role
    assert roles["oracle"].key.hex().removeprefix("0x") == DEV_ORACLE_PRIVATE_KEY[2:]


def test_dev_keys_are_fixed() -> None:
    # Documented derivation: keccak256("trustship-dev:<role>"); changing it breaks dev setups.
    assert dev_private_key("buyer") == dev_private_key("buyer")
    assert len({dev_private_key(r) for r in DEV_ROLES}) == len(DEV_ROLES)
    assert dev_private_key("admin").startswith("0x") and len(dev_private_key("admin")) == 66


def test_one_sender_per_key(chain: Chain) -> None:
    buyer = chain.accounts.require("buyer")
    assert chain.sender(buyer) is chain.sender(buyer)
    assert chain.sender(buyer) is not chain.sender(chain.accounts.require("supplier"))


@pytest.mark.integration
def test_rpc_url_path_funds_dev_accounts_on_anvil(anvil_stack: Stack) -> None:
    chain = anvil_stack.chain
    assert chain.kind == "rpc"
    assert chain.rpc_url is not None and chain.rpc_url.startswith("http://127.0.0.1:")
    assert chain.chain_id == 31337
    for role, acct in chain.accounts:
        assert chain.balance(acct.address) >= 1000 * 10**18, role


def test_non_dev_mode_takes_keys_from_settings() -> None:
    key = "0x" + "42" * 32
    deployer = "0x" + "43" * 32
    s = Settings(_env_file=None, DEV_MODE=False, ORACLE_PRIVATE_KEY=SecretStr(key))  # type: ignore[call-arg]
    accts = configured_accounts(s)
    assert accts.oracle.key.hex().removeprefix("0x") == key[2:]
    assert accts.admin.address == accts.oracle.address  # deployer defaults to the oracle key
    assert accts.buyer is None
    with pytest.raises(ConfigurationError, match="party accounts exist only in dev mode"):
        accts.require("buyer")
    s2 = Settings(  # type: ignore[call-arg]
        _env_file=None,
        DEV_MODE=False,
        ORACLE_PRIVATE_KEY=SecretStr(key),
        DEPLOYER_PRIVATE_KEY=SecretStr(deployer),
    )
    assert configured_accounts(s2).admin.key.hex().removeprefix("0x") == deployer[2:]


def test_non_dev_mode_refuses_the_public_dev_key() -> None:
    s = Settings(_env_file=None, DEV_MODE=False)  # type: ignore[call-arg]
    with pytest.raises(
        ConfigurationError, match="^ORACLE_PRIVATE_KEY is a publicly known private key"
    ):
        configured_accounts(s)


def test_non_dev_mode_refuses_a_malformed_key() -> None:
    s = Settings(_env_file=None, DEV_MODE=False, ORACLE_PRIVATE_KEY=SecretStr("0x1234"))  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="not a valid key"):
        configured_accounts(s)


def test_unsupported_rpc_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="only http:// and https://"):
        connect(dev_settings("ws://127.0.0.1:8545"))


def test_unreachable_node_raises_transport_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    policy = RetryPolicy(attempts=3, initial_backoff=0.01)
    with pytest.raises(TransportError) as info:
        connect(dev_settings(url), retry=policy)
    assert url in str(info.value)
    assert "RPC_URL" in str(info.value)
    assert info.value.attempts == 3


# ---- time and snapshots, on both backends -------------------------------------


def test_advance_time_mines_a_block_exactly_that_much_later(stack: Stack) -> None:
    chain = stack.chain
    start = chain.now()
    height = chain.block_number
    assert chain.advance_time(7200) == start + 7200
    assert chain.now() == start + 7200
    assert chain.block_number > height


def test_time_travel_hits_an_exact_timestamp(stack: Stack) -> None:
    chain = stack.chain
    target = chain.now() + 3 * 86400 + 17
    chain.time_travel(target)
    assert chain.now() == target


def test_next_transaction_gets_the_set_timestamp(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    chain = stack.chain
    a = stack.accounts
    when = chain.now() + 1000
    chain.set_next_block_timestamp(when)
    result = stack.po.create_order(make_terms(), by=a.buyer)
    assert stack.po.get_order(result.value).timestamp == when
    assert chain.w3.eth.get_block(result.block_number)["timestamp"] == when


def test_time_cannot_go_backwards(stack: Stack) -> None:
    with pytest.raises(ChainError, match="not after the latest block"):
        stack.chain.set_next_block_timestamp(stack.chain.now())
    with pytest.raises(ChainError, match="only move time forward"):
        stack.chain.advance_time(0)


def test_mine_adds_blocks(stack: Stack) -> None:
    height = stack.chain.block_number
    stack.chain.mine(3)
    assert stack.chain.block_number == height + 3


def test_revert_restores_state_time_and_sender_nonces(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    chain = stack.chain
    a = stack.accounts
    sender = chain.sender(a.buyer)
    count, now, nonce = stack.po.order_count(), chain.now(), sender.next_nonce
    snap = chain.snapshot()
    stack.po.create_order(make_terms(), by=a.buyer)
    chain.advance_time(86400)
    assert sender.next_nonce == nonce + 1
    chain.revert(snap)
    assert stack.po.order_count() == count
    assert chain.now() == now
    assert sender.next_nonce == nonce  # resynced from the node
    # and the sender keeps working after the revert
    result = stack.po.create_order(make_terms(), by=a.buyer)
    assert result.value == count + 1


@pytest.mark.integration
def test_anvil_snapshot_can_be_reverted_only_once(anvil_stack: Stack) -> None:
    chain = anvil_stack.chain
    snap = chain.snapshot()
    chain.mine()
    chain.revert(snap)
    with pytest.raises(ChainError, match="refused"):
        chain.revert(snap)


def test_retrying_retries_transport_errors_only(chain: Chain) -> None:
    attempts: list[int] = []

    def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("connection reset by peer")
        return 5

    assert chain.retrying("flaky read", flaky) == 5
    assert len(attempts) == 3

    def broken() -> int:
        attempts.append(1)
        raise ValueError("not a transport problem")

    attempts.clear()
    with pytest.raises(ValueError, match="not a transport problem"):
        chain.retrying("broken read", broken)
    assert len(attempts) == 1
