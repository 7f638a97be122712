"""Concurrent custodial writes of one party: ERC-20 funding must not interleave.

``approve`` sets the allowance (it does not add to it), so two create-and-fund
requests of one buyer whose approve/transferFrom pairs interleave leave the
first one with the second one's allowance. The custodian holds one funding at a
time per party and token; ETH orders are not held up by it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backend.api.custody import Custodian
from backend.api.parties import PartyRegistry
from backend.api.schemas import Terms
from backend.chain.testing import Stack
from backend.domain.order import TERMS_BODY_ATTRS


def test_concurrent_erc20_orders_of_one_buyer_are_all_funded(
    deployment: Stack, parties: PartyRegistry
) -> None:
    stack = deployment
    buyer = parties.by_name("buyer")
    token = stack.token
    prices = [5_000_000, 3_000_000, 4_000_000, 2_000_000]
    token.mint(buyer.address, sum(prices), by=stack.accounts.admin)
    custodian = Custodian(stack.chain, stack.po, stack.escrow)

    # widen the window between a funding's approve and its transferFrom, so that
    # without the custodian's lock the other threads' approves land inside it
    approve = custodian._approve
    approvals: list[int] = []
    guard = threading.Lock()

    def slow_approve(party: Any, token_address: str, amount: int) -> None:
        approve(party, token_address, amount)
        with guard:
            approvals.append(amount)
        time.sleep(0.2)

    custodian._approve = slow_approve  # type: ignore[method-assign]

    def create(price: int) -> int:
        t = stack.make_terms(price=price, token=token.address)
        body = {n: getattr(t, n) for n in TERMS_BODY_ATTRS}  # the parties: caller, supplier
        terms = Terms.model_validate({**body, "price": str(price)})  # money is a string
        sent = custodian.create_order(buyer, stack.accounts.supplier.address, terms, fund=True)
        assert sent.order_id is not None
        return sent.order_id

    with ThreadPoolExecutor(max_workers=len(prices)) as pool:
        ids = list(pool.map(create, prices))

    assert sorted(approvals) == sorted(prices)
    for order_id, price in zip(ids, prices, strict=True):
        assert stack.po.get_order(order_id).funded
        (deposit,) = stack.escrow.contract.events.FundsDeposited().get_logs(
            from_block=0, argument_filters={"orderId": order_id}
        )
        assert deposit["args"]["amount"] == price
    assert token.balance_of(buyer.address) == 0
