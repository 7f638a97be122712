"""Tamper evidence of the fleet commitment: the roots rebuilt from the stored readings
(each reading's digest recomputed from its fields, leaves bound to order, device and
place) equal the roots on chain and the committer's log root; a reading altered,
dropped or moved after commitment makes them differ."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, update
from sqlalchemy.orm import Session

from backend.chain.testing import Stack, device_key
from backend.domain.reading import Reading
from backend.indexer import ChainIndexer
from backend.oracle.batcher import CommitmentBatcher
from backend.oracle.chain_actions import ChainExecutor
from backend.oracle.outbox import OutboxWorker
from backend.store import repositories as repo
from backend.store.models import CommitmentRow, ReadingRow
from backend.telemetry import device_address, reading_digest
from backend.telemetry.fleet import FleetLog, fleet_tree
from tests.oracle.test_chain_actions import oracle_parts, reading_msg, shipped_order

__all__ = ["oracle_parts"]  # the fixture, shared


def chain_roots(stack: Stack) -> list[tuple[int, bytes, int, int]]:
    """The oracle's fleet log as the chain logged it: (batchSeq, root, count, logIndex)."""
    logs = stack.qv.contract.events.FleetRootCommitted().get_logs(
        from_block=stack.deployment.block_number,
        argument_filters={"committer": stack.accounts.oracle.address},
    )
    return [
        (int(e.args.batchSeq), bytes(e.args.root), int(e.args.readingCount), int(e.args.logIndex))
        for e in logs
    ]


def rebuilt_roots(stack: Stack, session: Session) -> list[tuple[int, bytes, int, int]]:
    """Every fleet batch rebuilt from the readings the database holds now."""
    out = []
    for c in repo.committed_log(session, stack.accounts.oracle.address):
        ids = [int(i) for i in c.reading_ids]
        rows = {r.id: r for r in repo.readings_by_ids(session, ids)}
        leaves = [
            (r.order_id, r.device, reading_digest(Reading.of(r), stack.domain))
            for r in (rows[i] for i in ids if i in rows)
        ]
        assert c.log_index is not None
        out.append((c.batch_seq, fleet_tree(leaves).root, len(leaves), c.log_index))
    return out


def log_root(entries: list[tuple[int, bytes, int, int]]) -> bytes:
    log = FleetLog()
    for seq, root, count, _ in entries:
        log.append(seq, root, count)
    return log.root()


@pytest.fixture
def committed(
    deployment: Stack, sqlite_engine: Engine, oracle_parts: tuple[ChainIndexer, object, object]
) -> Iterator[Stack]:
    """Two orders, three devices, 24 readings in fleet batches of 7 (one batch spans
    orders), committed on chain and indexed."""
    indexer, ingestor, _ = oracle_parts
    keys = [device_key(951), device_key(952), device_key(953)]
    first = shipped_order(deployment, [device_address(k) for k in keys[:2]])
    second = shipped_order(deployment, [device_address(keys[2])])
    start = deployment.chain.now()
    deployment.chain.advance_time(3600)
    indexer.run_once()
    msgs = [
        reading_msg(deployment, keys[n % 3], first if n % 3 < 2 else second, n // 3 + 1, start + n)
        for n in range(24)
    ]
    # one at a time: ids in arrival order, so a batch of 7 spans both orders (a batch
    # of messages is stored in key order: order, device, seq)
    assert sum(ingestor.ingest([m]).stored for m in msgs) == 24  # type: ignore[attr-defined]
    batcher = CommitmentBatcher(sqlite_engine, max_readings=7)
    assert batcher.tick(flush=True) == 4
    outbox = OutboxWorker(
        sqlite_engine, ChainExecutor(deployment.contracts, deployment.accounts.oracle)
    )
    for _ in range(6):
        if not outbox.run_once(now=time.time() + 3600):
            break
    indexer.run_once()
    yield deployment


def test_the_rebuilt_roots_are_the_chains(committed: Stack, sqlite_engine: Engine) -> None:
    on_chain = chain_roots(committed)
    assert [(seq, count, i) for seq, _, count, i in on_chain] == [
        (1, 7, 0),
        (2, 7, 1),
        (3, 7, 2),
        (4, 3, 3),
    ]
    with Session(sqlite_engine) as s:
        assert rebuilt_roots(committed, s) == on_chain
        orders = {r.order_id for r in repo.readings_by_ids(s, repo.commitment(s, 1).reading_ids)}  # type: ignore[union-attr]
    assert len(orders) == 2  # one root for the whole fleet
    assert log_root(on_chain) == committed.qv.fleet_log_root(committed.accounts.oracle.address)


def _tampered_batches(stack: Stack, engine: Engine, tamper: str) -> list[int]:
    """The batches whose rebuilt root no longer matches the chain after ``tamper``
    (rolled back afterwards)."""
    on_chain = {seq: root for seq, root, _, _ in chain_roots(stack)}
    with Session(engine) as s, s.begin():
        batch = repo.commitment(s, 2)
        assert batch is not None
        ids = [int(i) for i in batch.reading_ids]
        if tamper == "altered":
            s.execute(
                update(ReadingRow)
                .where(ReadingRow.id == ids[3])
                .values(temperature_centi_c=ReadingRow.temperature_centi_c - 100)
            )
        elif tamper == "dropped":
            s.execute(delete(ReadingRow).where(ReadingRow.id == ids[3]))
        elif tamper == "reordered":
            ids[2], ids[3] = ids[3], ids[2]
            s.execute(
                update(CommitmentRow).where(CommitmentRow.batch_seq == 2).values(reading_ids=ids)
            )
        s.flush()
        bad = [seq for seq, root, _, _ in rebuilt_roots(stack, s) if on_chain[seq] != root]
        s.rollback()
    return bad


@pytest.mark.parametrize("tamper", ["altered", "dropped", "reordered"])
def test_tampering_after_commitment_is_caught(
    committed: Stack, sqlite_engine: Engine, tamper: str
) -> None:
    assert _tampered_batches(committed, sqlite_engine, tamper) == [2]
    with Session(sqlite_engine) as s:  # and the database was left as it was
        assert rebuilt_roots(committed, s) == chain_roots(committed)
