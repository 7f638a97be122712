"""The outbox runs different orders' chain actions side by side (``concurrency``),
each order's own entries still one after the other, proofs before commitments; the
fleet's roots go one at a time, in batch order (a later root first would make the
earlier stale)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.domain.actions import FLEET, ChainAction
from backend.oracle.metrics import Metrics
from backend.oracle.outbox import OutboxWorker
from backend.store import repositories as repo
from tests.oracle.test_latency_paths import enqueue


class Overlapping:
    """Proofs meet at a barrier: they succeed only when ``parties`` run at once."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=5.0)
        self.ran: list[str] = []
        self.lock = threading.Lock()

    def head_block(self) -> int | None:
        return None

    def execute(self, action: ChainAction, session: Session) -> bytes | None:
        if action.kind != "commit_batch":
            self.barrier.wait()  # BrokenBarrierError (a retry) when run one at a time
        seq = getattr(action, "batch_seq", None)
        with self.lock:
            self.ran.append(f"{action.kind}:{action.order_id if seq is None else seq}")
        return b"\x02" * 32


def statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as s:
        rows = [row for order_id in (FLEET, 1, 2, 3) for row in repo.outbox_for(s, order_id)]
    return {row.dedup_key: row.status for row in rows}


@pytest.fixture
def queued(sqlite_engine: Engine) -> Engine:
    for n in (1, 2, 3):
        enqueue(sqlite_engine, "commit_batch", n, f"commit:{n}")  # fleet root n
        enqueue(sqlite_engine, "prove_arrival", n, f"arrival:{n}")
    return sqlite_engine


def test_orders_run_side_by_side_each_in_its_own_order(queued: Engine) -> None:
    executor = Overlapping(parties=3)
    outbox = OutboxWorker(queued, executor, metrics=Metrics(), concurrency=4)
    assert outbox.run_once() == 4  # the three proofs together, and the first root
    assert outbox.run_once() == 1 and outbox.run_once() == 1
    assert len(statuses(queued)) == 6 and set(statuses(queued).values()) == {"done"}
    assert sorted(r for r in executor.ran if r.startswith("prove")) == [
        f"prove_arrival:{n}" for n in (1, 2, 3)
    ]
    assert [r for r in executor.ran if r.startswith("commit")] == [
        "commit_batch:1",
        "commit_batch:2",
        "commit_batch:3",
    ]


def test_one_at_a_time_by_default(queued: Engine) -> None:
    executor = Overlapping(parties=2)
    executor.barrier = threading.Barrier(2, timeout=0.2)
    outbox = OutboxWorker(queued, executor, metrics=Metrics())
    outbox.run_once()
    # the proofs never met: each waited alone and was put back for a retry
    assert not any(r.startswith("prove_arrival") for r in executor.ran)
    assert executor.ran == ["commit_batch:1"]  # the fleet's next root waits for this one


def test_concurrency_must_be_positive(sqlite_engine: Engine) -> None:
    executor: Any = Overlapping(parties=1)
    with pytest.raises(ValueError, match="at least 1"):
        OutboxWorker(sqlite_engine, executor, concurrency=0)
