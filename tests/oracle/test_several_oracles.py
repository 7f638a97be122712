"""Several oracle processes on one PostgreSQL database (backend/store/locks.py,
docs/oracle.md "Several oracles"), each stood in for by its own ingestor, rules
engine and outbox worker, as separate processes would have them.

The share group hands a device's readings to any process, so an excursion run is
stored in pieces by different processes: it must still be proven once, with the
same evidence as one process finds. The real processes on real servers:
tests/integration/test_multi_oracle.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from backend.domain.actions import ChainAction, ProveArrival
from backend.domain.alert import AlertKind
from backend.oracle.chain_actions import ARRIVAL_GAP_HOLD_SECS, ChainExecutor
from backend.oracle.ingest import Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.outbox import ActionRetryLater, OutboxWorker
from backend.oracle.ownership import SLOTS
from backend.oracle.rules import RulesEngine
from backend.store import repositories as repo
from backend.store.models import AlertRow, HandoffRow
from testkit.readings import DEVICES, DOMAIN, KEYS, msg, seed
from tests.oracle.test_gaps import status
from tests.oracle.test_latency_paths import enqueue

pytestmark = pytest.mark.integration

HOT = 1000  # 10 °C: out of the seeded terms' range
RUN = 12  # readings of the run (the single-process test finds a breach in 12)


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    from tests.conftest import migrated_empty_engine

    yield from migrated_empty_engine("postgresql", request, tmp_path)


@pytest.fixture(autouse=True)
def _leave() -> Any:
    """Every process made here leaves (its locks go) when the test ends."""
    yield
    while MADE:
        MADE.pop().ownership.close()


MADE: list[Ingestor] = []


def oracles(engine: Engine, n: int) -> list[Ingestor]:
    """``n`` processes that have each joined and taken their share of the orders (the
    first to join takes everything; the others' shares free up at its next rebalance)."""
    procs = [Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=Metrics()) for _ in range(n)]
    MADE.extend(procs)
    for _ in range(2):
        for p in procs:
            p.rebalance()
    return procs


def owner_of(procs: list[Ingestor], order_id: int) -> tuple[Ingestor, list[Ingestor]]:
    (owner,) = [p for p in procs if p.ownership.owns(order_id)]
    return owner, [p for p in procs if p is not owner]


def take_over(survivor: Ingestor, order_id: int, timeout: float = 10.0) -> None:
    """``survivor`` looks again until it owns ``order_id``: a dead member's locks go
    when the server has ended its session, a moment after its connection closed (a
    real process looks again every second)."""
    deadline = time.monotonic() + timeout
    survivor.rebalance()
    while not survivor.ownership.owns(order_id):
        assert time.monotonic() < deadline, f"order {order_id} was never taken over"
        time.sleep(0.05)
        survivor.rebalance()


def proofs(engine: Engine, order_id: int) -> list[Any]:
    with Session(engine) as s:
        return [e for e in repo.outbox_for(s, order_id) if e.kind == "prove_excursion"]


def breach_alerts(engine: Engine) -> list[AlertRow]:
    with Session(engine) as s:
        q = select(AlertRow).where(AlertRow.kind == AlertKind.BREACH_DETECTED)
        return list(s.scalars(q))


def handoff_left(engine: Engine) -> int:
    with Session(engine) as s:
        return len(s.execute(select(HandoffRow.id)).all())


def test_a_run_stored_by_two_processes_in_turn_is_proven_once(pg: Engine) -> None:
    seed(pg, {1: [0]})
    procs = oracles(pg, 2)
    owner, (other,) = owner_of(procs, 1)
    for seq in range(1, RUN + 1):  # odd seqs to one process, even to the other
        procs[seq % 2].ingest([msg(KEYS[0], 1, seq, temperature_centi_c=HOT)])
    owner.take_handoff()  # what the other stored after the owner's last batch
    (entry,) = proofs(pg, 1)
    with Session(pg) as s:
        seqs = [r.seq for r in repo.readings_by_ids(s, entry.payload["reading_ids"])]
    assert seqs == list(range(1, RUN + 1)), "the evidence one process would have found"
    assert len(breach_alerts(pg)) == 1
    # the other one stored its half and evaluated none of it; the owner took it all over
    assert (other.handed_off, owner.handed_off) == (RUN // 2, 0)
    assert owner.taken_over == RUN // 2
    assert other.rules is not None and other.rules.loaded_orders() == []
    assert handoff_left(pg) == 0
    assert sorted(p.metrics.get("trustship_ingest_owned_slots") for p in procs) == [128, 128]


def test_a_late_reading_stored_by_the_other_process_completes_the_run(pg: Engine) -> None:
    seed(pg, {1: [0]})
    owner, (other,) = owner_of(oracles(pg, 2), 1)
    owner.ingest([msg(KEYS[0], 1, s, temperature_centi_c=HOT) for s in range(1, RUN + 1) if s != 6])
    assert proofs(pg, 1) == []  # seq 6 missing: no run long enough yet
    other.ingest([msg(KEYS[0], 1, 6, temperature_centi_c=HOT)])  # redelivered to the other one
    assert proofs(pg, 1) == [], "stored, not evaluated, by the process that does not own it"
    assert owner.take_handoff() is True
    (entry,) = proofs(pg, 1)
    assert len(entry.payload["reading_ids"]) == RUN
    assert owner.take_handoff() is False  # taken once


def test_concurrent_processes_prove_every_breach_once(pg: Engine) -> None:
    """Two threads, each a process, store alternate readings of 8 devices at once (one
    batch: one reading of each device), each owning half of the orders."""
    devices = list(range(8))
    seed(pg, {10 + i: [i] for i in devices})
    procs = oracles(pg, 2)
    assert {len([o for o in range(10, 18) if p.ownership.owns(o)]) for p in procs} == {4}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for seq in range(1 + k, RUN + 1, 2):
                batch = [msg(KEYS[i], 10 + i, seq, temperature_centi_c=HOT) for i in devices]
                procs[k].ingest(batch[::-1] if k else batch)
                procs[k].take_handoff()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for p in procs:
        p.take_handoff()
    for i in devices:
        (entry,) = proofs(pg, 10 + i)
        assert len(entry.payload["reading_ids"]) == RUN, f"device {i}"
    assert len(breach_alerts(pg)) == len(devices)
    assert handoff_left(pg) == 0
    assert sum(p.handed_off for p in procs) == sum(p.taken_over for p in procs) == 8 * RUN // 2


def test_the_orders_of_a_process_that_died_are_taken_over(pg: Engine) -> None:
    """The owner dies (its connection, and so its slots, gone) with readings handed off
    to it and its breach proof queued: a survivor takes the order, evaluates what was
    left, and neither proves nor alerts the breach a second time."""
    seed(pg, {1: [0]})
    owner, (other,) = owner_of(oracles(pg, 2), 1)
    owner.ingest([msg(KEYS[0], 1, s, temperature_centi_c=HOT) for s in range(1, RUN + 1)])
    assert len(proofs(pg, 1)) == 1
    other.ingest([msg(KEYS[0], 1, s, temperature_centi_c=HOT) for s in range(RUN + 1, RUN + 5)])
    assert handoff_left(pg) == 4
    owner.ownership.close()  # as when the process is killed
    assert other.rules is not None and other.rules.loaded_orders() == []
    take_over(other, 1)
    assert other.ownership.owns(1) and len(other.ownership.slots) == SLOTS
    assert other.rules.loaded_orders() == [1], "watched for silence before its next reading"
    assert other.take_handoff() is True
    assert handoff_left(pg) == 0
    assert len(proofs(pg, 1)) == 1
    assert len(breach_alerts(pg)) == 1


def test_a_status_message_reaches_the_owners_risk_model(pg: Engine) -> None:
    seed(pg, {1: [0]})
    owner, (other,) = owner_of(oracles(pg, 2), 1)
    owner.ingest([msg(KEYS[0], 1, s) for s in range(1, 4)])
    assert owner.rules is not None
    seen: list[tuple[int, str, str | None, int | None]] = []
    real = owner.rules.note_status

    def note(order_id: int, device: str, status: str | None, battery: int | None) -> None:
        seen.append((order_id, device, status, battery))
        real(order_id, device, status, battery)

    owner.rules.note_status = note  # type: ignore[method-assign]
    other.ingest([status(0, 1, status="online", battery_permille=120)])
    assert seen == []
    owner.take_handoff()
    assert seen == [(1, DEVICES[0], "online", 120)]


class Recording:
    """An executor that takes a while per action and records what it ran."""

    def __init__(self, ran: list[str], lock: threading.Lock) -> None:
        self.ran, self.lock = ran, lock

    def head_block(self) -> int | None:
        return None

    def execute(self, action: ChainAction, session: Session) -> bytes | None:
        time.sleep(0.02)
        with self.lock:
            self.ran.append(action.dedup_key)
        return b"\x03" * 32


def test_two_outbox_workers_never_send_one_action_twice(pg: Engine) -> None:
    for order_id in range(1, 21):
        enqueue(pg, "prove_shock", order_id, f"breach:{order_id}")
    ran: list[str] = []
    lock = threading.Lock()
    workers = [
        OutboxWorker(pg, Recording(ran, lock), metrics=Metrics(), concurrency=4) for _ in (0, 1)
    ]
    barrier = threading.Barrier(2)

    def drain(w: OutboxWorker) -> None:
        barrier.wait()
        while w.run_once():
            pass

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.stop()
    assert sorted(ran) == sorted(f"breach:{o}" for o in range(1, 21)), ran
    with Session(pg) as s:
        assert all(e.status == "done" for o in range(1, 21) for e in repo.outbox_for(s, o))


def test_an_arrival_proof_waits_for_missing_readings(pg: Engine) -> None:
    seed(pg, {1: [0]})
    (a,) = oracles(pg, 1)
    stored = a.ingest([msg(KEYS[0], 1, s) for s in (1, 2, 4)])  # seq 3 missing
    ids = [int(v.reading_id or 0) for v in stored.verdicts]
    arrival = ProveArrival(order_id=1, reading_ids=(ids[-1],), devices=("x",), timestamp=1)
    with Session(pg) as s:
        with pytest.raises(ActionRetryLater, match="1 reading\\(s\\) missing, 0 stored"):
            ChainExecutor._hold_for_missing(s, arrival)
        later = time.time() + ARRIVAL_GAP_HOLD_SECS + 1
        ChainExecutor._hold_for_missing(s, arrival, now=later)  # waited long enough
    a.ingest([msg(KEYS[0], 1, 3)])
    with Session(pg) as s:
        ChainExecutor._hold_for_missing(s, arrival)  # nothing missing: no wait


def test_an_arrival_proof_waits_for_readings_its_owner_has_not_judged(pg: Engine) -> None:
    """Readings another process stored close the gap before the owner has taken them
    from the handoff table: the arrival proof waits for them to be judged (they may be
    the breach), then goes."""
    seed(pg, {1: [0]})
    owner, (other,) = owner_of(oracles(pg, 2), 1)
    stored = owner.ingest([msg(KEYS[0], 1, s, temperature_centi_c=HOT) for s in (1, 2, 4)])
    arrival_id = int(stored.verdicts[-1].reading_id or 0)
    arrival = ProveArrival(order_id=1, reading_ids=(arrival_id,), devices=("x",), timestamp=1)
    other.ingest([msg(KEYS[0], 1, 3, temperature_centi_c=HOT)])  # the gap closes, unjudged
    with Session(pg) as s:
        with pytest.raises(ActionRetryLater, match="0 reading\\(s\\) missing, 1 stored and not"):
            ChainExecutor._hold_for_missing(s, arrival)
        later = time.time() + ARRIVAL_GAP_HOLD_SECS + 1
        ChainExecutor._hold_for_missing(s, arrival, now=later)  # waited long enough
    assert owner.take_handoff() is True
    with Session(pg) as s:
        ChainExecutor._hold_for_missing(s, arrival)  # judged: no wait


class FailOnce:
    """Makes the next statement matching ``sql`` fail (a connection lost mid-transaction)."""

    def __init__(self, engine: Engine, sql: str) -> None:
        self.sql, self.armed = sql, True
        event.listen(engine, "before_cursor_execute", self._hook)

    def _hook(self, _conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        if self.armed and statement.lstrip().upper().startswith(self.sql):
            self.armed = False
            raise RuntimeError("connection lost")


def test_a_failed_handoff_pass_forgets_what_it_noted(pg: Engine) -> None:
    """The owner takes the readings that complete a breach, queues its proof, and the
    transaction fails: the rows come back, and the next pass proves the breach."""
    seed(pg, {1: [0]})
    owner, (other,) = owner_of(oracles(pg, 2), 1)
    other.ingest([msg(KEYS[0], 1, s, temperature_centi_c=HOT) for s in range(1, RUN + 1)])
    fail = FailOnce(pg, "INSERT INTO OUTBOX")
    with pytest.raises(RuntimeError, match="connection lost"):
        owner.take_handoff()
    assert not fail.armed and proofs(pg, 1) == [] and handoff_left(pg) == RUN
    assert owner.take_handoff() is True
    (entry,) = proofs(pg, 1)
    assert len(entry.payload["reading_ids"]) == RUN
    assert len(breach_alerts(pg)) == 1


def test_a_process_whose_locks_went_hands_its_orders_off(pg: Engine) -> None:
    """The ownership connection is replaced (a database restart) before the owner's
    next look: its next batch finds its slot locks gone and hands the readings off
    instead of evaluating them; the process that takes the slots evaluates them."""
    seed(pg, {1: [0]})
    owner, (other,) = owner_of(oracles(pg, 2), 1)
    assert owner.ownership._conn is not None
    owner.ownership._conn.invalidate()  # its locks are gone; its last look says it owns 1
    assert owner.ownership.owns(1)
    owner.ingest([msg(KEYS[0], 1, s, temperature_centi_c=HOT) for s in range(1, RUN + 1)])
    assert proofs(pg, 1) == [] and handoff_left(pg) == RUN
    assert owner.rules is not None and owner.rules.loaded_orders() == []
    take_over(other, 1)
    assert other.take_handoff() is True
    (entry,) = proofs(pg, 1)
    assert len(entry.payload["reading_ids"]) == RUN


def test_a_handoff_backlog_is_taken_a_bounded_pass_at_a_time(pg: Engine) -> None:
    """Readings piled up for an owner that was gone: the next owner takes them a pass
    of at most ``handoff_rows_per_pass`` rows at a time, oldest first, each evaluated
    once, and proves the run they hold once."""
    from dataclasses import replace

    seed(pg, {1: [0]})
    owner, (other,) = owner_of(oracles(pg, 2), 1)
    other.config = replace(other.config, handoff_rows_per_pass=5)
    other.ingest([msg(KEYS[0], 1, s, temperature_centi_c=HOT) for s in range(1, RUN + 1)])
    assert handoff_left(pg) == RUN and proofs(pg, 1) == []
    owner.ownership.close()  # gone before it took them
    take_over(other, 1)
    left = []
    while other.take_handoff():
        left.append(handoff_left(pg))
    assert left == [RUN - 5, RUN - 10, 0]
    assert other.taken_over == RUN
    (entry,) = proofs(pg, 1)
    with Session(pg) as s:
        seqs = [r.seq for r in repo.readings_by_ids(s, entry.payload["reading_ids"])]
    assert seqs == list(range(1, RUN + 1)), "the evidence one pass would have found"
    assert len(breach_alerts(pg)) == 1
