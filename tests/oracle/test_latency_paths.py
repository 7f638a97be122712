"""What keeps breach evidence fast (bench/ingest.py live, docs/oracle.md "Breach latency"):
the outbox wakes up when actions are committed, runs proofs before commitments and
re-reads its list when new entries arrive mid-pass; the batcher gives telemetry
the thread back after its time budget and is then due again at once."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.domain.actions import (
    FLEET,
    ChainAction,
    CommitBatch,
    ProveArrival,
    ProveExcursion,
    ProveShock,
)
from backend.oracle.batcher import CommitmentBatcher
from backend.oracle.ingest import Ingestor, IngestWorker, PeriodicTask
from backend.oracle.metrics import Metrics
from backend.oracle.outbox import OutboxWorker
from backend.oracle.rules import RulesEngine
from backend.store import repositories as repo
from testkit.readings import DOMAIN, KEYS, msg, seed

DEV = "0x" + "d" * 40


class Recorder:
    """An executor that records what it ran (and may run a hook first)."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.event = threading.Event()
        self.hook: Any = None

    def head_block(self) -> int | None:
        return None

    def execute(self, action: ChainAction, session: Session) -> bytes | None:
        if self.hook is not None:
            self.hook(action)
        seq = getattr(action, "batch_seq", None)
        self.ran.append(f"{action.kind}:{action.order_id if seq is None else seq}")
        self.event.set()
        return b"\x01" * 32


def enqueue(engine: Engine, kind: str, order_id: int, key: str) -> None:
    """Queue an action of ``kind`` for ``order_id`` under the dedup key ``key`` (for a
    fleet commitment ``order_id`` is its batch seq: the action's order id is FLEET)."""
    action = {
        "commit_batch": lambda: CommitBatch(
            order_id=FLEET, batch_seq=order_id, root=b"r" * 32, count=1
        ),
        "prove_shock": lambda: ProveShock(order_id=order_id, reading_id=1, device=DEV, seq=1),
        "prove_arrival": lambda: ProveArrival(
            order_id=order_id, reading_ids=(1,), devices=(DEV,), timestamp=1
        ),
        "prove_excursion": lambda: ProveExcursion(
            order_id=order_id,
            device=DEV,
            reading_ids=(1, 2),
            first_seq=1,
            last_seq=2,
            started_at=1,
            ended_at=2,
        ),
    }[kind]()
    assert action.dedup_key == key
    with Session(engine) as s, s.begin():
        assert repo.enqueue(s, action)


def test_wake_runs_a_new_entry_without_waiting_for_the_poll(sqlite_engine: Engine) -> None:
    executor = Recorder()
    outbox = OutboxWorker(sqlite_engine, executor, poll_secs=60.0, metrics=Metrics())
    outbox.start()
    try:
        time.sleep(0.2)  # the first (empty) pass is done; the worker now sleeps for 60 s
        enqueue(sqlite_engine, "prove_shock", 1, "breach:1")
        assert not executor.event.wait(0.5), "ran without a wake-up: the poll test is void"
        outbox.wake()
        assert executor.event.wait(5.0), "wake() did not cut the 60 s poll short"
    finally:
        outbox.stop()
    assert executor.ran == ["prove_shock:1"]


def test_proofs_run_before_commitments_and_a_wake_reorders_the_pass(
    sqlite_engine: Engine,
) -> None:
    executor = Recorder()
    outbox = OutboxWorker(sqlite_engine, executor, poll_secs=60.0, metrics=Metrics())
    for batch_seq in (1, 2, 3, 4):
        enqueue(sqlite_engine, "commit_batch", batch_seq, f"commit:{batch_seq}")
    enqueue(sqlite_engine, "prove_arrival", 5, "arrival:5")

    def breach_found_meanwhile(action: ChainAction) -> None:
        if action.kind == "commit_batch" and getattr(action, "batch_seq", None) == 1:
            enqueue(sqlite_engine, "prove_excursion", 6, "breach:6")
            outbox.wake()

    executor.hook = breach_found_meanwhile
    assert outbox.run_once() == 2  # arrival (a proof, though queued last), root 1, then wake
    # the new breach evidence before root 2; the fleet's roots go one at a time, in order
    assert outbox.run_once() == 2
    assert outbox.run_once() == 1
    assert outbox.run_once() == 1
    assert executor.ran == [
        "prove_arrival:5",
        "commit_batch:1",
        "prove_excursion:6",
        "commit_batch:2",
        "commit_batch:3",
        "commit_batch:4",
    ]


def test_batcher_budget_yields_after_one_batch_and_flush_ignores_it(
    sqlite_engine: Engine,
) -> None:
    seed(sqlite_engine, {1: [0], 2: [1], 3: [2]})
    ing = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=Metrics())
    ing.ingest([msg(KEYS[k], k + 1, seq) for k in range(3) for seq in (1, 2)])
    # batches of 2 readings (every order's): six readings make three batches
    batcher = CommitmentBatcher(sqlite_engine, max_readings=2, max_age_secs=0.0, budget_secs=0.0)
    assert batcher.tick() == 1 and batcher.behind
    assert batcher.tick() == 1 and batcher.behind
    assert batcher.tick() == 1 and not batcher.behind  # nothing left after the last one
    assert batcher.tick() == 0 and not batcher.behind
    ing.ingest([msg(KEYS[k], k + 1, 3) for k in range(3)])
    assert batcher.tick(flush=True) == 2 and not batcher.behind
    with Session(sqlite_engine) as s:
        assert repo.uncommitted_summary(s) == (0, None)
        assert [c.batch_seq for c in repo.commitments_for(s, 2)] == [2, 4]


def test_a_periodic_task_that_returns_true_is_due_again_at_once(
    sqlite_engine: Engine,
) -> None:
    calls = {"behind": 0, "done": 0}

    def behind() -> bool:
        calls["behind"] += 1
        return True

    def done() -> int:
        calls["done"] += 1
        return 1  # a count, not True: waits for its interval

    ing = Ingestor(sqlite_engine, DOMAIN, metrics=Metrics())
    worker = IngestWorker(
        ing, periodic=[PeriodicTask("behind", 60.0, behind), PeriodicTask("done", 60.0, done)]
    )
    for _ in range(3):
        worker._run_periodic()
    assert calls == {"behind": 3, "done": 1}
