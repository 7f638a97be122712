"""backend.store on SQLite and on a real PostgreSQL (the ``engine`` fixture: a migrated,
empty database per test), and the test kit's way of emptying a migrated PostgreSQL
schema between tests."""

from __future__ import annotations

import time
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.store import repositories as repo
from backend.store.db import resolve_url, upgrade_to_head
from backend.store.models import (
    Base,
    CommitmentRow,
    DeviceRow,
    GrantRow,
    OrderRow,
    OutboxRow,
    ReadingRow,
)
from backend.store.types import UINT256_MAX
from testkit import readings as kit
from testkit.databases import ALEMBIC_TABLE, empty_tables, migrated_engine

DEV_A = "0x" + "A1" * 20
DEV_B = "0x" + "B2" * 20
DEV_C = "0x" + "C3" * 20


def reading(
    device: str, seq: int, *, order_id: int = 1, ts: int | None = None, **kw: Any
) -> dict[str, Any]:
    row = dict(
        order_id=order_id,
        device=device,
        seq=seq,
        timestamp=1_700_000_000 + seq * 60 if ts is None else ts,
        temperature_centi_c=450,
        humidity_permille=500,
        shock_milli_g=100,
        latitude_e6=51_000_000,
        longitude_e6=4_000_000,
        flags=0,
        signature=bytes([seq % 256]) * 65,
        digest=seq.to_bytes(32, "big"),
        received_at=time.time(),
    )
    row.update(kw)
    return row


def order_values(order_id: int, **kw: Any) -> dict[str, Any]:
    """An order row of DEV_A (buyer) and DEV_B (supplier), created and not funded yet."""
    values = dict(
        buyer=DEV_A,
        supplier=DEV_B,
        state="Created",
        funded=False,
        shipped_at=None,
        device_issuer=DEV_C,
    )
    return kit.order_values(order_id, **{**values, **kw})


def test_schema_matches_models_and_upgrade_is_idempotent(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    upgrade_to_head(engine)  # second run: nothing to do, no error
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode(tmp_path: Any) -> None:
    eng = upgrade_to_head(f"sqlite:///{tmp_path / 'w.db'}")
    with eng.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
    eng.dispose()


def test_resolve_url() -> None:
    assert resolve_url(None).startswith("sqlite:///")
    assert resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_insert_readings_drops_duplicates_and_reports_new_rows(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        new = repo.insert_readings(s, [reading(DEV_A, i) for i in range(1, 6)])
    assert sorted(new) == [(1, DEV_A, i) for i in range(1, 6)]
    assert len(set(new.values())) == 5
    with Session(engine) as s, s.begin():
        again = repo.insert_readings(
            s, [reading(DEV_A, 4), reading(DEV_A, 5), reading(DEV_A, 6), reading(DEV_B, 4)]
        )
    assert sorted(again) == [(1, DEV_A, 6), (1, DEV_B, 4)]
    with Session(engine) as s:
        assert s.scalar(select(ReadingRow.id).where(ReadingRow.seq == 6)) == again[(1, DEV_A, 6)]
        digests = repo.stored_digests(s, [(1, DEV_A, 3), (1, DEV_B, 4), (1, DEV_B, 99)])
        assert digests == {
            (1, DEV_A, 3): (3).to_bytes(32, "big"),
            (1, DEV_B, 4): (4).to_bytes(32, "big"),
        }
        assert repo.count_readings(s, 1) == 7


def test_unique_order_device_seq_is_enforced_by_the_database(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.add(ReadingRow(**reading(DEV_A, 1)))
    with pytest.raises(IntegrityError), Session(engine) as s, s.begin():
        s.add(ReadingRow(**reading(DEV_A, 1)))


def test_a_logger_reused_on_a_later_order_may_start_its_seq_again(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        first = repo.insert_readings(s, [reading(DEV_A, i) for i in range(1, 4)])
        second = repo.insert_readings(s, [reading(DEV_A, i, order_id=2) for i in range(1, 4)])
    assert sorted(first) == [(1, DEV_A, i) for i in (1, 2, 3)]
    assert sorted(second) == [(2, DEV_A, i) for i in (1, 2, 3)]


def test_telemetry_pages_by_time_with_a_stable_cursor(engine: Engine) -> None:
    rows = [reading(DEV_A, i, ts=1000 + i // 2) for i in range(1, 21)]  # equal timestamps in pairs
    rows += [reading(DEV_B, i, ts=1000 + i) for i in range(1, 6)]
    rows += [reading("0x" + "C3" * 20, 1, order_id=2, ts=1001)]
    with Session(engine) as s, s.begin():
        repo.insert_readings(s, rows)
    with Session(engine) as s:
        seen: list[tuple[int, int]] = []
        after = None
        pages = 0
        while True:
            page = repo.telemetry_page(s, 1, after=after, limit=7)
            seen += [(r.timestamp, r.id) for r in page.items]
            pages += 1
            if page.next_after is None:
                break
            after = page.next_after
        assert pages == 4 and len(seen) == 25 and seen == sorted(seen)
        window = repo.telemetry_page(s, 1, since=1003, until=1005, limit=100).items
        assert all(1003 <= r.timestamp < 1005 for r in window) and len(window) == 6
        only_b = repo.telemetry_page(s, 1, device=DEV_B, limit=100).items
        assert [r.seq for r in only_b] == [1, 2, 3, 4, 5]
        assert repo.count_readings(s, 1, since=1003, until=1005) == 6
        assert [r.seq for r in repo.device_readings(s, 1, DEV_A, 5, 8)] == [5, 6, 7, 8]
        assert repo.device_readings(s, 2, DEV_A, 5, 8) == []
        latest = repo.latest_readings(s, [(1, DEV_A), (1, DEV_B), (2, DEV_B)], 3)
        assert [r.seq for r in latest[(1, DEV_A)]] == [18, 19, 20]
        assert [r.seq for r in latest[(1, DEV_B)]] == [3, 4, 5]
        assert latest[(2, DEV_B)] == []
        assert repo.last_seen(s, [1]) == {(1, DEV_A): 1010, (1, DEV_B): 1005}


def test_fleet_batches_take_each_reading_once_in_id_order(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        ids = repo.insert_readings(s, [reading(DEV_A, i) for i in range(1, 8)])
        other = repo.insert_readings(s, [reading(DEV_B, 1, order_id=2)])
    every = sorted([*ids.values(), *other.values()])
    with Session(engine) as s, s.begin():
        count, oldest = repo.uncommitted_summary(s)
        assert count == 8 and oldest is not None
        taken = repo.take_uncommitted(s, 5)  # every order's readings, in id order
        assert [i for i, *_ in taken] == every[:5]
        assert repo.last_batch_seq(s) == 0
        row = repo.add_commitment(
            s, batch_seq=1, root=b"r" * 32, reading_ids=[i for i, *_ in taken]
        )
        assert row.reading_count == 5 and row.first_reading_id == every[0]
    with Session(engine) as s, s.begin():
        assert repo.last_batch_seq(s) == 1
        rest = repo.take_uncommitted(s, 100)
        assert [i for i, *_ in rest] == every[5:]
        assert {o for _, o, *_ in rest} == {1, 2}  # one batch spans orders
        assert repo.uncommitted_summary(s)[0] == 3
        c = repo.commitment_of(s, every[2])
        assert c is not None and c.batch_seq == 1 and c.reading_ids == every[:5]
        repo.set_commitment_status(s, 1, "done", b"t" * 32, committer=DEV_C, log_index=0)
    with Session(engine) as s:
        (c,) = repo.commitments_for(s, 1)
        assert (c.status, c.tx_hash, c.committer, c.log_index) == ("done", b"t" * 32, DEV_C, 0)
        assert repo.commitments_for(s, 2) == []  # order 2's reading is not committed yet
        assert [r.batch_seq for r in repo.committed_log(s, DEV_C)] == [1]
        assert repo.readings_by_ids(s, c.reading_ids[::-1])[0].id == c.reading_ids[-1]


def test_outbox_deduplicates_and_keeps_each_orders_actions_in_order(engine: Engine) -> None:
    now = 1000.0
    arrival: dict[str, Any] = dict(
        kind="prove_arrival", order_id=1, dedup_key="arrival:1", rank=1, now=now
    )
    with Session(engine) as s, s.begin():
        assert repo.enqueue_action(s, payload={"r": 1}, **arrival)
        # the same key again: not queued twice, whatever its payload
        assert not repo.enqueue_action(s, payload={"r": 2}, **arrival)
        assert repo.enqueue_action(
            s, kind="commit_batch", order_id=1, dedup_key="commit:1:1", payload={}, now=now
        )
        assert repo.enqueue_action(
            s, kind="commit_batch", order_id=1, dedup_key="commit:1:2", payload={}, now=now
        )
        assert repo.enqueue_action(
            s,
            kind="prove_shock",
            order_id=2,
            dedup_key="breach:2",
            payload={},
            now=now,
            not_before=now + 60,
        )
    with Session(engine) as s, s.begin():
        ready = repo.ready_actions(s, now=now)
        assert [r.dedup_key for r in ready] == ["arrival:1", "commit:1:1"]  # order 2 waits
        # Breach evidence found later still goes before the arrival proof.
        repo.enqueue_action(
            s, kind="prove_excursion", order_id=1, dedup_key="breach:1", payload={}, rank=0, now=now
        )
        ready = repo.ready_actions(s, now=now)
        assert [r.dedup_key for r in ready] == ["commit:1:1", "breach:1"]
        breach = ready[1]
        repo.mark_sent(s, breach.id, b"h" * 32)
        assert {r.dedup_key for r in repo.ready_actions(s, now=now)} == {"breach:1", "commit:1:1"}
        repo.mark_retry(s, breach.id, "node unreachable", retry_at=now + 5)
        assert {r.dedup_key for r in repo.ready_actions(s, now=now)} == {"commit:1:1"}
        assert {r.dedup_key for r in repo.ready_actions(s, now=now + 5)} == {
            "breach:1",
            "commit:1:1",
        }
        repo.mark_done(s, breach.id, tx_hash=b"h" * 32)
        first_commit = repo.outbox_entry(s, "commit:1:1")
        assert first_commit is not None
        repo.mark_failed(s, first_commit.id, "QualityVerificationEmptyBatch(1)")
        got = repo.ready_actions(s, now=now + 100)
        assert [r.dedup_key for r in got] == ["arrival:1", "commit:1:2", "breach:2"]
        assert repo.replace_pending_payload(s, "arrival:1", {"r": 0})
    with Session(engine) as s:
        rows = {r.dedup_key: r for r in repo.outbox_for(s, 1)}
        assert rows["breach:1"].status == "done" and rows["breach:1"].attempts == 2
        assert rows["breach:1"].last_error == "node unreachable"
        assert rows["commit:1:1"].status == "failed"
        assert rows["arrival:1"].payload == {"r": 0}
        assert not repo.replace_pending_payload(s, "breach:1", {"x": 1})


def test_alerts_are_deduplicated_by_key(engine: Engine) -> None:
    base = dict(
        order_id=1, device=DEV_A, kind="trend", severity="warning", message="m", at=5, data={"k": 1}
    )
    with Session(engine) as s, s.begin():
        assert (
            repo.insert_alerts(s, [dict(base, dedup_key="t:1"), dict(base, at=6), dict(base, at=7)])
            == 3
        )
        assert (
            repo.insert_alerts(s, [dict(base, dedup_key="t:1"), dict(base, dedup_key="t:2", at=9)])
            == 1
        )
    with Session(engine) as s:
        got = repo.alerts_for(s, 1)
        assert [a.at for a in got] == [5, 6, 7, 9] and got[0].data == {"k": 1}
        assert [a.at for a in repo.alerts_for(s, 1, since=7)] == [7, 9]
        assert [a.at for a in repo.alerts_for(s, 1, after_id=got[1].id, limit=1)] == [7]
        assert repo.alerts_for(s, 1, kind="silence") == []


def test_orders_devices_events_and_cursor(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        repo.upsert_order(s, order_values(1, price=UINT256_MAX))
        repo.upsert_order(s, order_values(2, price=5))
        repo.upsert_order(
            s, order_values(1, price=UINT256_MAX, state="Shipped", shipped_at=77, updated_block=9)
        )
        assert (
            repo.bind_devices(
                s,
                [
                    dict(order_id=1, device=DEV_A, bound_block=9, bound_at=77),
                    dict(order_id=1, device=DEV_B),
                ],
            )
            == 2
        )
        assert (
            repo.bind_devices(s, [dict(order_id=1, device=DEV_A), dict(order_id=2, device=DEV_A)])
            == 1
        )
        ev = dict(
            block_number=9,
            block_timestamp=77,
            tx_hash=b"t" * 32,
            log_index=0,
            contract="QualityVerification",
            event="DeviceBound",
            order_id=1,
            args={"device": DEV_A},
        )
        assert repo.insert_events(s, [ev, dict(ev, log_index=1)]) == 2
        assert repo.insert_events(s, [ev]) == 0
        assert repo.get_cursor(s, "chain") is None
        repo.set_cursor(s, "chain", 9)
        repo.set_cursor(s, "chain", 12)
    with Session(engine) as s:
        o = repo.get_order(s, 1)
        assert (
            o is not None and o.price == UINT256_MAX and o.state == "Shipped" and o.shipped_at == 77
        )
        # Money compares as numbers on both backends (zero-padded strings on SQLite).
        assert s.scalars(select(OrderRow.id).order_by(OrderRow.price)).all() == [2, 1]
        assert [r.id for r in repo.orders_in_state(s, ["Shipped"])] == [1]
        assert repo.devices_of_order(s, 1) == [DEV_A, DEV_B]
        assert repo.orders_of_device(s, DEV_A) == [1, 2]
        assert repo.all_bindings(s) == {(1, DEV_A), (1, DEV_B), (2, DEV_A)}
        assert [e.log_index for e in repo.events_for(s, 1)] == [0, 1]
        assert repo.get_cursor(s, "chain") == 12


def test_uint256_refuses_values_out_of_range(engine: Engine) -> None:
    with pytest.raises(Exception, match="not a uint256"), Session(engine) as s, s.begin():
        repo.upsert_order(s, order_values(3, price=UINT256_MAX + 1))


def _bind(s: Session, order_id: int, device: str) -> None:
    repo.bind_devices(s, [{"order_id": order_id, "device": device}])


def _progress(rows: list[dict]) -> repo.DeviceProgress:
    return repo.DeviceProgress(
        rows[0]["order_id"], rows[0]["device"], len(rows), min(r["seq"] for r in rows),
        max(r["seq"] for r in rows), max(r["timestamp"] for r in rows),
        max(r["received_at"] for r in rows),
    )  # fmt: skip


def test_device_progress_counts_and_finds_the_missing_ranges(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        _bind(s, 1, DEV_A)
        _bind(s, 1, DEV_B)
        _bind(s, 2, DEV_A)
    for seqs in ([1, 2, 3], [5, 6], [9], [4]):  # 7 and 8 never arrive
        rows = [reading(DEV_A, i) for i in seqs]
        with Session(engine) as s, s.begin():
            repo.insert_readings(s, rows)
            repo.record_progress(s, [_progress(rows)])
    with Session(engine) as s, s.begin():
        row_b = [reading(DEV_B, i) for i in (1, 2)]
        repo.insert_readings(s, row_b)
        repo.record_progress(s, [_progress(row_b)])
        # DEV_B says it has sent #4; DEV_A on order 2 reports a range, nothing stored
        repo.record_status(
            s,
            [
                repo.DeviceStatus(1, DEV_B, "online", 100, 800, 1, 4),
                repo.DeviceStatus(1, DEV_B, "online", 90, 900, 1, 3),  # older: only widens seqs
                repo.DeviceStatus(2, DEV_A, "offline", 50, None, 1, 2),
            ],
        )
    with Session(engine) as s:
        a, b = s.get(DeviceRow, 1), s.get(DeviceRow, 2)
        assert (a.reading_count, a.first_seq, a.last_seq) == (7, 1, 9)
        assert a.missing() == 2 and repo.missing_ranges(s, a) == [(7, 8)]
        assert (b.status, b.status_at, b.battery_permille, b.reported_last_seq) == (
            "online", 100, 800, 4,
        )  # fmt: skip
        assert b.missing() == 2 and repo.missing_ranges(s, b) == [(3, 4)]
        c = s.scalars(select(DeviceRow).where(DeviceRow.order_id == 2)).one()
        assert c.missing() == 2 and repo.missing_ranges(s, c) == [(1, 2)]
        # only live orders are watched
        assert repo.devices_missing_readings(s) == []
    with Session(engine) as s, s.begin():
        repo.upsert_order(s, order_values(1, state="Shipped"))
    with Session(engine) as s:
        assert [(r.order_id, r.device) for r in repo.devices_missing_readings(s)] == [
            (1, DEV_A),
            (1, DEV_B),
        ]


def test_a_reorganisation_requeues_what_was_done_above_the_fork(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        for seq in (1, 2):
            repo.add_commitment(s, batch_seq=seq, root=bytes([seq]) * 32, reading_ids=[seq])
            repo.enqueue_action(
                s, kind="commit_batch", order_id=0, dedup_key=f"commit:{seq}",
                payload={"batch_seq": seq, "root": "0x" + "11" * 32, "count": 1},
            )  # fmt: skip
        repo.enqueue_action(s, kind="settle", order_id=5, dedup_key="settle:5", payload={})
        repo.enqueue_action(s, kind="prove_arrival", order_id=6, dedup_key="arr:6", payload={})
        ids = {r.dedup_key: r.id for r in s.scalars(select(OutboxRow))}
        # batch 1 done at head 10, batch 2 at 20, the settlement at 21 ("already done"),
        # the arrival done before heads were recorded
        for key, block in (("commit:1", 10), ("commit:2", 20), ("settle:5", 21)):
            repo.mark_done(s, ids[key], tx_hash=b"\x01" * 32, block=block)
        repo.mark_done(s, ids["arr:6"])
        for seq in (1, 2):
            repo.set_commitment_status(s, seq, "done", b"\x02" * 32, log_index=seq - 1)
    with Session(engine) as s, s.begin():
        requeued = repo.requeue_after_fork(s, 15)
    assert [(r.kind, r.order_id) for r in requeued] == [("commit_batch", 0), ("settle", 5)]
    with Session(engine) as s:
        rows = {r.dedup_key: r for r in s.scalars(select(OutboxRow))}
        commitments = {c.batch_seq: c for c in s.scalars(select(CommitmentRow))}
    assert {k: r.status for k, r in rows.items()} == {
        "commit:1": "done", "commit:2": "pending", "settle:5": "pending", "arr:6": "done",
    }  # fmt: skip
    assert rows["commit:2"].tx_hash is None and rows["commit:2"].done_block is None
    assert "reorganisation replaced the blocks after 15" in (rows["settle:5"].last_error or "")
    assert (commitments[1].status, commitments[1].log_index) == ("done", 0)
    assert (commitments[2].status, commitments[2].log_index, commitments[2].tx_hash) == (
        "pending", None, None,
    )  # fmt: skip
    with Session(engine) as s, s.begin():
        assert repo.requeue_after_fork(s, 15) == []  # nothing done above it any more


def _revision(eng: Engine) -> str | None:
    with eng.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _grant() -> GrantRow:
    return GrantRow(
        order_id=1,
        sensitivity="medium",
        grantee="overseas-auditor",
        grantee_address=DEV_A,
        grantee_jurisdiction="US",
        reason="audit",
        state="requested",
        requested_at=1,
    )


@pytest.mark.integration
def test_empty_tables_leaves_the_head_schema_with_no_rows_and_fresh_ids(tmp_path: Any) -> None:
    with migrated_engine("postgresql", tmp_path) as eng:
        head = _revision(eng)
        tables = set(inspect(eng).get_table_names())
        with Session(eng) as s:
            s.add_all([_grant(), _grant()])
            repo.insert_readings(s, [reading(DEV_A, 0), reading(DEV_A, 1)])
            s.commit()
            assert s.scalar(select(func.max(GrantRow.id))) == 2
        empty_tables(eng)
        assert set(inspect(eng).get_table_names()) == tables  # nothing dropped
        with eng.connect() as conn:
            for table in tables - {ALEMBIC_TABLE}:
                assert conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar() == 0, table
        assert _revision(eng) == head
        with Session(eng) as s:
            grant = _grant()
            s.add(grant)
            s.commit()
            assert grant.id == 1  # identities restarted, as after a fresh migration


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    from tests.conftest import migrated_empty_engine

    yield from migrated_empty_engine("postgresql", request, tmp_path)


@pytest.mark.integration
def test_one_batch_stored_by_two_processes_at_once_does_not_deadlock(pg: Engine) -> None:
    """A redelivered batch reaches two oracle processes, in different orders: their
    inserts take the readings' unique keys in one order (key order), so the later
    one waits for the first and drops the duplicates instead of deadlocking."""
    import threading

    from psycopg.errors import DeadlockDetected
    from sqlalchemy.exc import OperationalError

    eng = pg
    deadlocks = 0
    for round_ in range(10):
        keys = [(DEV_A if i % 2 else DEV_B, round_ * 1000 + i) for i in range(1000)]
        orders = [keys, keys[::-1]]
        start = threading.Barrier(2)
        new: list[int] = []

        def store(rows: list[tuple[str, int]], start: threading.Barrier, new: list[int]) -> None:
            nonlocal deadlocks
            start.wait()
            try:
                with Session(eng) as s, s.begin():
                    new.append(len(repo.insert_readings(s, [reading(d, q) for d, q in rows])))
            except OperationalError as exc:
                if not isinstance(exc.orig, DeadlockDetected):
                    raise
                deadlocks += 1

        threads = [threading.Thread(target=store, args=(o, start, new)) for o in orders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert deadlocks == 0, f"round {round_}: a deadlock between the two inserts"
        assert sorted(new) == [0, len(keys)], "one stored them all, the other none"
