"""A chain reorganisation under the running oracle (anvil, mosquitto from the deploy
config, PostgreSQL, ``python -m backend.oracle``).

The cold-chain breach scenario is published in three parts. After the first, the
oracle's first commitments are done; the chain is snapshotted there (the fork).
The second part carries the excursion: the oracle commits its readings and proves
the breach on-chain. Then the blocks after the fork are replaced (anvil reverts to
the snapshot and mines a new branch): the commitments and the breach proof are gone
from the chain. The oracle must notice, rewind its index, send those actions again
(and not the ones done before the fork), and after the last part the order must
settle exactly as the terms say, each fleet root and the proof once on the final chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.chain.contracts import OrderState
from backend.store.models import CommitmentRow, OrderRow, OutboxRow, ReadingRow
from iot_simulator import Fleet, Message, publish
from testkit.waiting import wait_for
from tests.integration.oracle_stack import (
    CrashStack,
    assert_every_reading_stored_once,
    assert_nothing_twice_on_chain,
    assert_settled_as_expected,
    oracle_stack,
    outbox_summary,
    wait_until_done,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DAY = 86_400
#: The scenario's compressor fails two days out, for 8 h (scenarios/cold_chain_breach.yaml,
#: ``at_s: 172800``): the first part ends a day before, the second a day after.
FIRST_PART_END_S = 1 * DAY
SECOND_PART_END_S = 3 * DAY


def _part(fleet: Fleet, start_s: int, end_s: int) -> Iterator[Message]:
    return (m for m in fleet.messages() if start_s <= m.offset_s < end_s)


def _publish(stack: CrashStack, fleet: Fleet, start_s: int, end_s: float) -> None:
    stats = publish(
        fleet,
        stack.device_url,
        speed=float("inf"),
        progress=False,
        connection="device",
        messages=_part(fleet, start_s, int(min(end_s, 2**62))),
    )
    assert stats.refused == 0


def _quiet(stack: CrashStack) -> bool:
    """Every stored reading in a commitment, every commitment and outbox entry done."""
    with Session(stack.engine) as s:
        statuses = list(s.scalars(select(CommitmentRow.status)))
        unfinished = s.scalar(select(func.count()).where(OutboxRow.status != "done"))
        uncommitted = s.scalar(select(func.count()).where(ReadingRow.batch_seq.is_(None)))
    return bool(statuses) and set(statuses) == {"done"} and not unfinished and not uncommitted


def _breached_on_chain(stack: CrashStack, order_id: int) -> bool:
    return bool(stack.driver.contracts.po.get_order(order_id).breached)


def _indexed_breached(stack: CrashStack, order_id: int) -> bool:
    with Session(stack.engine) as s:
        return bool(s.scalar(select(OrderRow.breached).where(OrderRow.id == order_id)))


def test_a_reorganisation_under_the_running_oracle_is_sent_again(tmp_path: Path) -> None:
    with oracle_stack("postgresql", tmp_path) as stack:
        stack.oracle.start()
        stack.oracle.wait_subscribed()
        (fleet,) = stack.open_and_ship(["cold_chain_breach.yaml"])
        (order_id,) = stack.order_ids()
        stack.move_clock_past_the_voyages()

        # 1. before the fork: the first commitments are done and stay done
        _publish(stack, fleet, 0, FIRST_PART_END_S)
        assert wait_for(lambda: _quiet(stack), timeout=60), outbox_summary(stack.engine)
        with Session(stack.engine) as s:
            before_fork = {int(i) for i in s.scalars(select(OutboxRow.id))}
        fork_snapshot = stack.chain.snapshot()
        fork_block = stack.chain.block_number

        # 2. after the fork: the excursion is committed and proven on-chain
        _publish(stack, fleet, FIRST_PART_END_S, SECOND_PART_END_S)
        assert wait_for(lambda: _indexed_breached(stack, order_id), timeout=90), (
            f"{outbox_summary(stack.engine)}\n{stack.oracle.tail()}"
        )
        assert _breached_on_chain(stack, order_id)
        assert wait_for(lambda: _quiet(stack), timeout=60), outbox_summary(stack.engine)
        with Session(stack.engine) as s:
            after_fork = {
                int(i): str(k)
                for i, k in s.execute(
                    select(OutboxRow.id, OutboxRow.kind).where(OutboxRow.status == "done")
                )
                if int(i) not in before_fork
            }
        assert "prove_excursion" in after_fork.values() and "commit_batch" in after_fork.values()

        # 3. the blocks after the fork are replaced by another branch
        stack.chain.revert(fork_snapshot)
        stack.chain.mine(3)
        assert stack.chain.block_number == fork_block + 3
        assert not _breached_on_chain(stack, order_id)  # the proof left with its blocks
        stack.oracle.wait_for("chain reorganisation", timeout=60)
        # the oracle proves the breach again on the new branch, and the index follows
        assert wait_for(
            lambda: _breached_on_chain(stack, order_id) and _indexed_breached(stack, order_id),
            timeout=90,
        ), f"{outbox_summary(stack.engine)}\n{stack.oracle.tail()}"

        # 4. the rest of the voyage: arrival, settlement
        _publish(stack, fleet, SECOND_PART_END_S, float("inf"))
        wait_until_done(stack, timeout=150)
        out = stack.oracle.output()
        stack.oracle.stop()

        with Session(stack.engine) as s:
            rows = {
                int(r.id): r
                for r in s.scalars(select(OutboxRow).where(OutboxRow.id.in_(after_fork)))
            }
            resent = {i for i, r in rows.items() if "reorganisation" in (r.last_error or "")}
            kept = s.scalars(
                select(OutboxRow.last_error).where(OutboxRow.id.in_(before_fork))
            ).all()
        # every action done after the fork was sent again; none of those done before it
        assert resent == set(after_fork), (resent, after_fork)
        assert not any("reorganisation" in (e or "") for e in kept)
        assert "sent again: the blocks after" in out
        assert stack.driver.contracts.po.get_order(order_id).state == OrderState.SETTLED
        assert_every_reading_stored_once(stack)
        assert_nothing_twice_on_chain(stack)  # each fleet root once, in order; one proof
        assert_settled_as_expected(stack)
