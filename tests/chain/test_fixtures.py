"""The shared fixtures themselves: layering, isolation between tests, both backends."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backend.chain.contracts import OrderState, Terms
from backend.chain.testing import Stack

pytestmark = pytest.mark.timeout(120)


def _create(stack: Stack, make_terms: Callable[..., Terms]) -> int:
    a = stack.accounts
    return int(stack.po.create_order(make_terms(), by=a.buyer).value)


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_starts_from_the_same_chain_state(
    stack: Stack, make_terms: Callable[..., Terms], attempt: int
) -> None:
    # Both attempts must see the same order count: the first one's order is reverted.
    before = stack.po.order_count()
    order_id = _create(stack, make_terms)
    assert order_id == before + 1
    assert stack.po.order_count() == before + 1
    assert stack.po.get_order(order_id).state is OrderState.CREATED


def test_stack_is_wired(stack: Stack) -> None:
    assert stack.escrow.purchase_orders() == stack.po.address
    assert stack.qv.purchase_orders() == stack.po.address
    assert stack.po.escrow() == stack.escrow.address
    assert stack.po.quality_verification() == stack.qv.address
    # no roles: the oracle is a trusted fleet-log committer by the manifest
    assert stack.deployment.oracles == [stack.accounts.oracle.address]
    assert stack.deployment.token == stack.token.address


def test_make_terms_are_relative_to_chain_time(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    terms = make_terms(price=123)
    assert terms.price == 123
    assert terms.delivery_deadline > stack.chain.now()
    assert terms.arbiter == stack.accounts.arbiter.address
    with pytest.raises(TypeError, match="unknown Terms field"):
        make_terms(prize=1)


def test_domain_matches_the_contract(stack: Stack, domain) -> None:  # type: ignore[no-untyped-def]
    assert domain.verifying_contract == stack.qv.address
    assert domain.chain_id == stack.chain.chain_id
    fields = stack.qv.eip712_domain()
    # (fields, name, version, chainId, verifyingContract, salt, extensions)
    assert fields[1:5] == ("TrustShip Telemetry", "1", stack.chain.chain_id, stack.qv.address)


def test_device_keys_are_deterministic_and_distinct(
    device_key: Callable[[int], str], device_address: Callable[[int], str]
) -> None:
    assert device_key(1) == device_key(1)
    assert len({device_key(n) for n in range(50)}) == 50
    assert device_address(1) != device_address(2)
    assert device_address(1).startswith("0x") and len(device_address(1)) == 42


def test_accounts_are_funded_and_distinct(stack: Stack, accounts) -> None:  # type: ignore[no-untyped-def]
    addresses = [
        accounts.admin,
        accounts.oracle,
        accounts.buyer,
        accounts.supplier,
        accounts.arbiter,
        accounts.auditor,
        accounts.stranger,
    ]
    assert len({a.address for a in addresses}) == 7
    for acct in addresses:
        assert stack.chain.balance(acct.address) >= 1000 * 10**18
