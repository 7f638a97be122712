"""Queries and writes on the oracle's database, for the oracle and the API.

Functions take a :class:`~sqlalchemy.orm.Session` and never commit: the caller
owns the transaction, so the ingest worker can store readings, alerts and the
outbox entries they cause atomically. Inserts that must be idempotent use the
dialect's ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL agree on
it) and report which rows were new.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import ColumnElement

from backend.domain.actions import ChainAction, CommitBatch
from backend.domain.actions import lane as action_lane
from backend.domain.order import OrderState
from backend.domain.reading import READING_ATTRS, STORED_READING_ATTRS, SignedReading
from backend.store.locks import is_postgres
from backend.store.models import (
    ALERTS,
    DEVICES,
    EVENTS,
    HANDOFF,
    ORDERS,
    OUTBOX,
    READINGS,
    RISK,
    AlertRow,
    ChainEventRow,
    CommitmentRow,
    DeviceRow,
    EpcisEventRow,
    IndexedBlockRow,
    IndexerCursorRow,
    OrderRow,
    OutboxRow,
    ReadingRow,
    RiskSnapshotRow,
)
from backend.store.pgarray import ArrayLiteral

OUTBOX_PENDING = "pending"
OUTBOX_SENT = "sent"
OUTBOX_DONE = "done"
OUTBOX_FAILED = "failed"
OUTBOX_UNFINISHED = (OUTBOX_PENDING, OUTBOX_SENT)


def _insert(session: Session, table: Table) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"database dialect {name!r} is not supported (SQLite, PostgreSQL)")


# --------------------------------------------------------------------- readings


#: A stored reading's identity: (order id, device, seq).
ReadingKey = tuple[int, str, int]


def insert_readings(session: Session, rows: Sequence[Mapping[str, Any]]) -> dict[ReadingKey, int]:
    """Insert readings, silently dropping any whose (order, device, seq) is already stored.

    ``rows`` are dicts of :class:`ReadingRow` columns (:func:`reading_row`). Returns the new
    rows' ids by (order id, device, seq); a key missing from the result was a duplicate.
    The rows go in key order: two processes storing one redelivered batch then take
    its unique keys in the same order, and the later waits for the earlier instead of
    deadlocking with it (PostgreSQL).
    """
    if not rows:
        return {}
    rows = sorted(rows, key=_READING_KEY)
    if is_postgres(session):
        return _insert_readings_unnest(session, rows)
    stmt = (
        _insert(session, READINGS)
        .on_conflict_do_nothing(index_elements=["order_id", "device", "seq"])
        .returning(READINGS.c.id, READINGS.c.order_id, READINGS.c.device, READINGS.c.seq)
    )
    result = session.connection().execute(stmt, list(rows))
    return {(order_id, device, seq): rid for rid, order_id, device, seq in result}


def reading_row(signed: SignedReading, digest: bytes, received_at: float) -> dict[str, Any]:
    """The ``readings`` columns of a verified reading: the reading's fields (named as in
    :class:`backend.domain.reading.Reading`), its device, signature and EIP-712 digest,
    and when the oracle received it."""
    extra = (signed.device, signed.signature, digest, received_at)
    return dict(zip(_ROW_KEYS, (*signed.reading.as_tuple(), *extra), strict=True))


_ROW_KEYS = (*READING_ATTRS, "device", "signature", "digest", "received_at")
_READING_KEY = itemgetter("order_id", "device", "seq")


#: The columns an insert fills (all but the id and the batch, set when committed).
READING_INSERT_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in READINGS.columns if c.name not in ("id", "batch_seq")
)
_UNNEST_INSERT = text(
    "INSERT INTO readings ("
    + ", ".join(READING_INSERT_COLUMNS)
    + ") SELECT * FROM unnest("
    + ", ".join(f":{c}" for c in READING_INSERT_COLUMNS)
    + ") ON CONFLICT (order_id, device, seq) DO NOTHING RETURNING id, order_id, device, seq"
).bindparams(
    *(bindparam(c, type_=ArrayLiteral(READINGS.columns[c].type)) for c in READING_INSERT_COLUMNS)
)


def _insert_readings_unnest(
    session: Session, rows: Sequence[Mapping[str, Any]]
) -> dict[ReadingKey, int]:
    """PostgreSQL: one statement with one array per column (``unnest``), sent as
    literals (backend/store/pgarray.py). SQLAlchemy's multi-VALUES form makes
    psycopg parse a new 13-parameters-per-row query text per batch, which cost more
    than the insert itself (bench/ingest.py profile)."""
    params = {c: [r[c] for r in rows] for c in READING_INSERT_COLUMNS}
    result = session.execute(_UNNEST_INSERT, params)
    return {(order_id, device, seq): rid for rid, order_id, device, seq in result}


def stored_digests(session: Session, keys: Iterable[ReadingKey]) -> dict[ReadingKey, bytes]:
    """The stored digest for each (order id, device, seq) in ``keys`` that is in the database."""
    keys = list(keys)
    out: dict[ReadingKey, bytes] = {}
    r = ReadingRow
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        q = select(r.order_id, r.device, r.seq, r.digest).where(
            tuple_(r.order_id, r.device, r.seq).in_(chunk)
        )
        out.update({(o, d, s): dg for o, d, s, dg in session.execute(q)})
    return out


@dataclass(frozen=True, slots=True)
class TelemetryPage:
    items: list[ReadingRow]
    #: Pass as ``after`` to get the next page; None on the last page.
    next_after: tuple[int, int] | None


def telemetry_page(
    session: Session,
    order_id: int,
    *,
    since: int | None = None,
    until: int | None = None,
    device: str | None = None,
    after: tuple[int, int] | None = None,
    limit: int = 500,
) -> TelemetryPage:
    """An order's readings by (timestamp, id), ``since <= timestamp < until``.

    Keyset pagination: ``after`` is the (timestamp, id) of the previous page's
    last row, so pages stay stable while readings keep arriving.
    """
    q = select(ReadingRow).where(ReadingRow.order_id == order_id)
    if since is not None:
        q = q.where(ReadingRow.timestamp >= since)
    if until is not None:
        q = q.where(ReadingRow.timestamp < until)
    if device is not None:
        q = q.where(ReadingRow.device == device)
    if after is not None:
        ts, rid = after
        q = q.where(
            or_(ReadingRow.timestamp > ts, and_(ReadingRow.timestamp == ts, ReadingRow.id > rid))
        )
    q = q.order_by(ReadingRow.timestamp, ReadingRow.id).limit(limit + 1)
    rows = list(session.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = (rows[-1].timestamp, rows[-1].id) if more and rows else None
    return TelemetryPage(rows, nxt)


def count_readings(
    session: Session, order_id: int, *, since: int | None = None, until: int | None = None
) -> int:
    q = select(func.count()).select_from(ReadingRow).where(ReadingRow.order_id == order_id)
    if since is not None:
        q = q.where(ReadingRow.timestamp >= since)
    if until is not None:
        q = q.where(ReadingRow.timestamp < until)
    return int(session.scalar(q) or 0)


def readings_by_ids(session: Session, ids: Sequence[int]) -> list[ReadingRow]:
    """Readings by id, in the order of ``ids`` (e.g. a commitment's leaf order)."""
    found: dict[int, ReadingRow] = {}
    for i in range(0, len(ids), 500):
        found.update(
            {
                r.id: r
                for r in session.scalars(
                    select(ReadingRow).where(ReadingRow.id.in_(ids[i : i + 500]))
                )
            }
        )
    return [found[i] for i in ids if i in found]


#: One device's readings on one order: (order id, device).
StreamKey = tuple[int, str]


def device_readings(
    session: Session, order_id: int, device: str, seq_from: int, seq_to: int
) -> list[ReadingRow]:
    """One device's readings on an order with ``seq_from <= seq <= seq_to``, in seq order."""
    r = ReadingRow
    q = (
        select(r)
        .where(r.order_id == order_id, r.device == device, r.seq >= seq_from, r.seq <= seq_to)
        .order_by(r.seq)
    )
    return list(session.scalars(q))


def hand_off(
    session: Session,
    readings: Sequence[tuple[int, str, int]],
    statuses: Sequence[tuple[int, str]] = (),
) -> None:
    """Leave work for the orders' owners (backend/oracle/ownership.py): stored readings
    as (order, device, reading id), and devices whose status changed as (order, device)."""
    rows = [{"order_id": o, "device": d, "reading_id": rid} for o, d, rid in readings]
    rows += [{"order_id": o, "device": d, "reading_id": None} for o, d in statuses]
    if rows:
        session.connection().execute(HANDOFF.insert(), rows)


def handed_orders(session: Session) -> set[int]:
    """The orders with work left in the handoff table."""
    return {int(o) for o in session.execute(select(HANDOFF.c.order_id).distinct()).scalars()}


def handed_readings(session: Session, order_id: int) -> int:
    """How many readings of the order wait in the handoff table: stored by a process
    that does not own the order, not yet judged by its owner."""
    h = HANDOFF.c
    q = select(func.count()).where(h.order_id == order_id, h.reading_id.is_not(None))
    return int(session.scalar(q) or 0)


def take_handed(
    session: Session, order_ids: Iterable[int], *, limit: int | None = None
) -> tuple[list[Any], list[tuple[int, str]]]:
    """Take (delete, in ``session``'s transaction) the handoff rows of these orders, or
    the ``limit`` oldest of them. Returns the readings to evaluate, as rows with
    :data:`~backend.domain.reading.STORED_READING_ATTRS` in id order, and the
    (order, device) pairs whose status changed."""
    orders = sorted(set(order_ids))
    if not orders:
        return [], []
    h = HANDOFF.c
    which = h.order_id.in_(orders)
    if limit is not None:
        which = h.id.in_(select(h.id).where(which).order_by(h.id).limit(limit))
    taken = session.connection().execute(
        HANDOFF.delete().where(which).returning(h.order_id, h.device, h.reading_id)
    )
    ids: list[int] = []
    statuses: set[tuple[int, str]] = set()
    for order_id, device, rid in taken:
        if rid is None:
            statuses.add((int(order_id), str(device)))
        else:
            ids.append(int(rid))
    ids.sort()
    r = READINGS.c
    cols = [r[a] for a in STORED_READING_ATTRS]
    rows: list[Any] = []
    for i in range(0, len(ids), 1000):
        q = select(*cols).where(r.id.in_(ids[i : i + 1000])).order_by(r.id)
        rows.extend(session.connection().execute(q))
    return rows, sorted(statuses)


def latest_readings(
    session: Session, streams: Sequence[StreamKey], per_device: int
) -> dict[StreamKey, list[ReadingRow]]:
    """The newest ``per_device`` evaluated readings (by seq) of each (order, device),
    oldest first: a reading still waiting in the handoff table for its order's owner
    is left out (the owner evaluates it when it takes the row)."""
    out: dict[StreamKey, list[ReadingRow]] = {k: [] for k in streams}
    r = ReadingRow
    for i in range(0, len(streams), 200):
        chunk = list(streams[i : i + 200])
        ranked = (
            select(
                r.id,
                func.row_number()
                .over(partition_by=(r.order_id, r.device), order_by=r.seq.desc())
                .label("rn"),
            )
            .where(tuple_(r.order_id, r.device).in_(chunk))
            .where(~exists().where(HANDOFF.c.reading_id == r.id))
            .subquery()
        )
        q = (
            select(r)
            .join(ranked, ranked.c.id == r.id)
            .where(ranked.c.rn <= per_device)
            .order_by(r.order_id, r.device, r.seq)
        )
        for row in session.scalars(q):
            out[(row.order_id, row.device)].append(row)
    return out


def last_seen(session: Session, order_ids: Sequence[int]) -> dict[tuple[int, str], int]:
    """Newest reading timestamp per (order, device) for the given orders."""
    if not order_ids:
        return {}
    q = (
        select(ReadingRow.order_id, ReadingRow.device, func.max(ReadingRow.timestamp))
        .where(ReadingRow.order_id.in_(list(order_ids)))
        .group_by(ReadingRow.order_id, ReadingRow.device)
    )
    return {(o, d): int(ts) for o, d, ts in session.execute(q)}


# ---------------------------------------------------------------- commitments


def uncommitted_summary(session: Session) -> tuple[int, float | None]:
    """How many readings no fleet batch covers yet (every order's), and the oldest's
    received_at (None when there are none)."""
    q = select(func.count(), func.min(ReadingRow.received_at)).where(ReadingRow.batch_seq.is_(None))
    n, oldest = session.execute(q).one()
    return int(n), None if oldest is None else float(oldest)


def take_uncommitted(session: Session, limit: int) -> list[tuple[int, int, str, bytes]]:
    """Up to ``limit`` uncommitted readings of every order as (id, order id, device,
    digest), in id order (arrival order: the fleet batch's leaf order).

    On PostgreSQL the rows are locked (``FOR UPDATE SKIP LOCKED``) so two oracle
    processes never put one reading into two batches.
    """
    q = (
        select(ReadingRow.id, ReadingRow.order_id, ReadingRow.device, ReadingRow.digest)
        .where(ReadingRow.batch_seq.is_(None))
        .order_by(ReadingRow.id)
        .limit(limit)
    )
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    return [(int(i), int(o), str(d), bytes(g)) for i, o, d, g in session.execute(q)]


def last_batch_seq(session: Session) -> int:
    """The newest fleet batch's sequence number (0 before the first)."""
    return int(session.scalar(select(func.max(CommitmentRow.batch_seq))) or 0)


def add_commitment(
    session: Session,
    *,
    batch_seq: int,
    root: bytes,
    reading_ids: Sequence[int],
    now: float | None = None,
) -> CommitmentRow:
    """Record a fleet batch and mark its readings as committed (same transaction)."""
    now = time.time() if now is None else now
    row = CommitmentRow(
        batch_seq=batch_seq,
        root=root,
        reading_count=len(reading_ids),
        first_reading_id=min(reading_ids),
        last_reading_id=max(reading_ids),
        reading_ids=list(reading_ids),
        status="pending",
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    for i in range(0, len(reading_ids), 500):
        session.execute(
            update(ReadingRow)
            .where(ReadingRow.id.in_(reading_ids[i : i + 500]))
            .values(batch_seq=batch_seq)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    return row


def commitments(session: Session) -> list[CommitmentRow]:
    """Every fleet batch, by sequence number."""
    return list(session.scalars(select(CommitmentRow).order_by(CommitmentRow.batch_seq)))


def commitment(session: Session, batch_seq: int) -> CommitmentRow | None:
    return session.scalars(
        select(CommitmentRow).where(CommitmentRow.batch_seq == batch_seq)
    ).first()


def commitments_for(session: Session, order_id: int) -> list[CommitmentRow]:
    """The fleet batches that hold readings of an order, by sequence number."""
    seqs = (
        select(ReadingRow.batch_seq)
        .where(ReadingRow.order_id == order_id, ReadingRow.batch_seq.is_not(None))
        .distinct()
    )
    q = select(CommitmentRow).where(CommitmentRow.batch_seq.in_(seqs))
    return list(session.scalars(q.order_by(CommitmentRow.batch_seq)))


def committed_readings(session: Session, order_id: int, batch_seqs: Sequence[int]) -> int:
    """How many of an order's readings these fleet batches hold."""
    if not batch_seqs:
        return 0
    q = select(func.count()).where(
        ReadingRow.order_id == order_id, ReadingRow.batch_seq.in_(list(batch_seqs))
    )
    return int(session.scalar(q) or 0)


def commitment_of(session: Session, reading_id: int) -> CommitmentRow | None:
    """The fleet batch that holds a reading (for Merkle proofs)."""
    reading = session.get(ReadingRow, reading_id)
    if reading is None or reading.batch_seq is None:
        return None
    return commitment(session, reading.batch_seq)


def set_commitment_status(
    session: Session,
    batch_seq: int,
    status: str,
    tx_hash: bytes | None = None,
    *,
    committer: str | None = None,
    log_index: int | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "updated_at": time.time()}
    if tx_hash is not None:
        values["tx_hash"] = tx_hash
    if committer is not None:
        values["committer"] = committer
    if log_index is not None:
        values["log_index"] = log_index
    session.execute(
        update(CommitmentRow).where(CommitmentRow.batch_seq == batch_seq).values(**values)
    )


def committed_log(session: Session, committer: str) -> list[CommitmentRow]:
    """A committer's fleet log as the indexer saw it: its committed batches by log index."""
    q = (
        select(CommitmentRow)
        .where(CommitmentRow.committer == committer, CommitmentRow.log_index.is_not(None))
        .order_by(CommitmentRow.log_index)
    )
    return list(session.scalars(q))


# -------------------------------------------------------------------- outbox


def enqueue_action(
    session: Session,
    *,
    kind: str,
    order_id: int,
    dedup_key: str,
    payload: Mapping[str, Any],
    rank: int = 0,
    not_before: float = 0.0,
    now: float | None = None,
) -> bool:
    """Add an outbox entry unless one with ``dedup_key`` exists; True when added."""
    now = time.time() if now is None else now
    stmt = (
        _insert(session, OUTBOX)
        .values(
            kind=kind,
            order_id=order_id,
            dedup_key=dedup_key,
            rank=rank,
            payload=dict(payload),
            status=OUTBOX_PENDING,
            attempts=0,
            next_attempt_at=not_before,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(OUTBOX.c.id)
    )
    return session.execute(stmt).first() is not None


def enqueue(
    session: Session, action: ChainAction, *, not_before: float = 0.0, now: float | None = None
) -> bool:
    """Add a typed chain action to the outbox (its kind, dedup key, rank and payload)
    unless one with its dedup key exists; True when added."""
    return enqueue_action(
        session,
        kind=action.kind,
        order_id=action.order_id,
        dedup_key=action.dedup_key,
        payload=action.payload(),
        rank=action.rank,
        not_before=not_before,
        now=now,
    )


def replace_pending_payload(session: Session, dedup_key: str, payload: Mapping[str, Any]) -> bool:
    """Swap the payload of a still-pending entry (e.g. an earlier arrival reading)."""
    res = session.execute(
        update(OutboxRow)
        .where(OutboxRow.dedup_key == dedup_key, OutboxRow.status == OUTBOX_PENDING)
        .values(payload=dict(payload), updated_at=time.time())
        .execution_options(synchronize_session=False)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def queued_keys(session: Session, dedup_keys: Iterable[str]) -> set[str]:
    """Which of these dedup keys the outbox holds (any status)."""
    keys = sorted(set(dedup_keys))
    if not keys:
        return set()
    q = select(OutboxRow.dedup_key).where(OutboxRow.dedup_key.in_(keys))
    return {str(k) for k in session.scalars(q)}


def outbox_entry(session: Session, dedup_key: str) -> OutboxRow | None:
    return session.scalars(select(OutboxRow).where(OutboxRow.dedup_key == dedup_key)).first()


def lane(kind: str) -> str:
    """Commitments and actions are separate per-order lanes: a stuck commitment
    never holds back breach evidence, and vice versa (backend.domain.actions)."""
    return action_lane(kind)


def ready_actions(
    session: Session, *, now: float | None = None, limit: int = 100
) -> list[OutboxRow]:
    """The outbox entries to execute now: per (order, lane) only the first
    unfinished entry by (rank, id), and only once its retry delay has passed.

    This keeps an order's actions in order: breach evidence (rank 0) reaches the
    chain before the arrival proof (rank 1), which comes before settlement (rank 2).
    """
    now = time.time() if now is None else now
    q = (
        select(OutboxRow)
        .where(OutboxRow.status.in_(OUTBOX_UNFINISHED))
        .order_by(OutboxRow.order_id, OutboxRow.rank, OutboxRow.id)
    )
    seen: set[tuple[int, str]] = set()
    out: list[OutboxRow] = []
    for row in session.scalars(q):
        key = (row.order_id, lane(row.kind))
        if key in seen:
            continue
        seen.add(key)
        if row.next_attempt_at <= now:
            out.append(row)
            if len(out) >= limit:
                break
    return sorted(out, key=lambda r: r.id)


def _outbox_update(session: Session, entry_id: int, **values: Any) -> None:
    values["updated_at"] = time.time()
    session.execute(update(OutboxRow).where(OutboxRow.id == entry_id).values(**values))


def mark_sent(session: Session, entry_id: int, tx_hash: bytes) -> None:
    _outbox_update(session, entry_id, status=OUTBOX_SENT, tx_hash=tx_hash)


def mark_done(
    session: Session,
    entry_id: int,
    *,
    tx_hash: bytes | None = None,
    note: str | None = None,
    block: int | None = None,
) -> None:
    """The entry took effect; ``block`` is the chain head then (see :func:`requeue_after_fork`)."""
    values: dict[str, Any] = {"status": OUTBOX_DONE, "attempts": OutboxRow.attempts + 1}
    if tx_hash is not None:
        values["tx_hash"] = tx_hash
    if note is not None:
        values["last_error"] = note
    if block is not None:
        values["done_block"] = block
    _outbox_update(session, entry_id, **values)


@dataclass(frozen=True, slots=True)
class Requeued:
    """An outbox entry a reorganisation put back to pending."""

    id: int
    kind: str
    order_id: int


def requeue_after_fork(session: Session, fork: int) -> list[Requeued]:
    """A reorganisation replaced the blocks after ``fork``: every entry done at a chain
    head above it may have lost its effect (its transaction, or the one that made it
    "already done", is gone), so it goes back to pending, to be sent again or met as
    already done; a commitment it made is pending again, with no place in the log.
    Entries done before the fork, or done without a recorded head, stay done."""
    rows = session.execute(
        select(OutboxRow.id, OutboxRow.kind, OutboxRow.order_id, OutboxRow.payload)
        .where(OutboxRow.status == OUTBOX_DONE, OutboxRow.done_block > fork)
        .order_by(OutboxRow.id)
    ).all()
    if not rows:
        return []
    now = time.time()
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id.in_([r.id for r in rows]))
        .values(
            status=OUTBOX_PENDING,
            next_attempt_at=0.0,
            done_block=None,
            tx_hash=None,
            last_error=f"sent again: a chain reorganisation replaced the blocks after {fork}",
            updated_at=now,
        )
    )
    batches = [int(r.payload["batch_seq"]) for r in rows if r.kind == CommitBatch.kind]
    if batches:
        session.execute(
            update(CommitmentRow)
            .where(CommitmentRow.batch_seq.in_(batches))
            .values(status="pending", tx_hash=None, log_index=None, updated_at=now)
        )
    return [Requeued(r.id, r.kind, r.order_id) for r in rows]


def _failed_attempt(
    session: Session, entry_id: int, status: str, error: str, **values: Any
) -> None:
    """One more attempt that did not take effect, its error kept (its first 2,000
    characters), and the entry in ``status``."""
    _outbox_update(
        session,
        entry_id,
        status=status,
        attempts=OutboxRow.attempts + 1,
        last_error=error[:2000],
        **values,
    )


def mark_retry(session: Session, entry_id: int, error: str, retry_at: float) -> None:
    _failed_attempt(session, entry_id, OUTBOX_PENDING, error, next_attempt_at=retry_at)


def mark_failed(session: Session, entry_id: int, error: str) -> None:
    _failed_attempt(session, entry_id, OUTBOX_FAILED, error)


def outbox_for(session: Session, order_id: int) -> list[OutboxRow]:
    q = select(OutboxRow).where(OutboxRow.order_id == order_id).order_by(OutboxRow.id)
    return list(session.scalars(q))


# -------------------------------------------------------------------- alerts


def insert_alerts(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert alerts, skipping any whose ``dedup_key`` is stored; returns the new count."""
    if not rows:
        return 0
    now = time.time()
    params = [{"created_at": now, "device": None, "dedup_key": None, **r} for r in rows]
    stmt = (
        _insert(session, ALERTS)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(ALERTS.c.id)
    )
    return len(session.connection().execute(stmt, params).all())


def insert_risk_snapshots(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Append risk snapshots (``RiskSnapshot.as_row()`` dicts); returns how many."""
    if not rows:
        return 0
    now = time.time()
    session.execute(RISK.insert(), [{"created_at": now, **r} for r in rows])
    return len(rows)


def latest_risk(session: Session, order_ids: Iterable[int]) -> dict[int, RiskSnapshotRow]:
    """Each order's newest risk snapshot (orders without one are left out)."""
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    newest = (
        select(func.max(RiskSnapshotRow.id))
        .where(RiskSnapshotRow.order_id.in_(ids))
        .group_by(RiskSnapshotRow.order_id)
    )
    rows = session.scalars(select(RiskSnapshotRow).where(RiskSnapshotRow.id.in_(newest)))
    return {row.order_id: row for row in rows}


def risk_history(
    session: Session, order_id: int, *, limit: int = 100, before_id: int | None = None
) -> list[RiskSnapshotRow]:
    """An order's risk snapshots, newest first; page with ``before_id``."""
    q = select(RiskSnapshotRow).where(RiskSnapshotRow.order_id == order_id)
    if before_id is not None:
        q = q.where(RiskSnapshotRow.id < before_id)
    return list(session.scalars(q.order_by(RiskSnapshotRow.id.desc()).limit(limit)))


def alerts_for(
    session: Session,
    order_id: int,
    *,
    kind: str | None = None,
    since: int | None = None,
    after_id: int | None = None,
    limit: int = 200,
) -> list[AlertRow]:
    """An order's alerts, oldest first; page with ``after_id`` (the last id seen)."""
    q = select(AlertRow).where(AlertRow.order_id == order_id)
    if kind is not None:
        q = q.where(AlertRow.kind == kind)
    if since is not None:
        q = q.where(AlertRow.at >= since)
    if after_id is not None:
        q = q.where(AlertRow.id > after_id)
    return list(session.scalars(q.order_by(AlertRow.id).limit(limit)))


# ------------------------------------------------------------- devices, orders


_CERTIFICATE_COLUMNS = ("issuer", "valid_from", "valid_until", "certificate_signature")


def bind_devices(session: Session, bindings: Sequence[Mapping[str, Any]]) -> int:
    """Store bindings (order_id, device, bound_block, bound_at and the certificate:
    issuer, valid_from, valid_until, certificate_signature); returns the new count."""
    if not bindings:
        return 0
    blank = dict.fromkeys(("bound_block", "bound_at", *_CERTIFICATE_COLUMNS))
    params = [{**blank, **b} for b in bindings]
    stmt = (
        _insert(session, DEVICES)
        .on_conflict_do_nothing(index_elements=["order_id", "device"])
        .returning(DEVICES.c.id)
    )
    return len(session.connection().execute(stmt, params).all())


def record_revocation(
    session: Session, *, issuer: str, device: str, revoked_at: int, block: int
) -> int:
    """``DeviceRevoked``: every binding of ``device`` certified by ``issuer`` stops
    counting from ``revoked_at``; returns how many bindings it touched."""
    d = DEVICES.c
    result = session.execute(
        update(DEVICES)
        .where(d.device == device, d.issuer == issuer)
        .values(revoked_at=revoked_at, revoked_block=block)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def order_devices(session: Session, order_ids: Iterable[int]) -> list[DeviceRow]:
    """The ``devices`` rows (bindings and reading counts) of every device of these orders."""
    orders = sorted(set(order_ids))
    if not orders:
        return []
    return list(session.scalars(select(DeviceRow).where(DeviceRow.order_id.in_(orders))))


#: What the chain says of a device on an order (:func:`order_bindings`).
BINDING_COLUMNS = ("order_id", "device", "issuer", "valid_from", "valid_until", "revoked_at")


def order_bindings(session: Session, order_ids: Iterable[int]) -> list[Any]:
    """The bindings of every device of these orders: rows with
    :data:`BINDING_COLUMNS` (what the rules read per batch; lighter than
    :func:`order_devices`' ORM objects)."""
    orders = sorted(set(order_ids))
    if not orders:
        return []
    d = DEVICES.c
    q = select(*(d[c] for c in BINDING_COLUMNS)).where(d.order_id.in_(orders))
    return list(session.connection().execute(q))


def earliest_inside(
    session: Session,
    order_id: int,
    issuer: str,
    box: tuple[int, int, int],
    *,
    since: int,
) -> tuple[int, str, int] | None:
    """The earliest stored reading of an order, from a device ``issuer`` certified, that
    lies inside the box (lat, lon, half side) at or after ``since`` and that the
    certificate covers (valid, not revoked at its time): (reading id, device, timestamp)."""
    lat, lon, half = box
    r, d = ReadingRow, DeviceRow
    q = (
        select(r.id, r.device, r.timestamp)
        .join(d, and_(d.order_id == r.order_id, d.device == r.device))
        .where(
            r.order_id == order_id,
            d.issuer == issuer,
            r.timestamp >= since,
            r.latitude_e6.between(lat - half, lat + half),
            r.longitude_e6.between(lon - half, lon + half),
            or_(d.valid_from.is_(None), r.timestamp >= d.valid_from),
            or_(d.valid_until.is_(None), r.timestamp <= d.valid_until),
            or_(d.revoked_at.is_(None), r.timestamp < d.revoked_at),
        )
        .order_by(r.timestamp, r.id)
        .limit(1)
    )
    row = session.execute(q).first()
    return None if row is None else (int(row[0]), str(row[1]), int(row[2]))


def device_row(session: Session, order_id: int, device: str) -> DeviceRow | None:
    q = select(DeviceRow).where(DeviceRow.order_id == order_id, DeviceRow.device == device)
    return session.scalars(q).first()


@dataclass(frozen=True, slots=True)
class DeviceProgress:
    """What one ingest batch adds to a device's stored readings on one order."""

    order_id: int
    device: str
    count: int
    first_seq: int
    last_seq: int
    last_timestamp: int
    last_received_at: float


def _lower(column: Any, value: Any) -> Any:
    return case((or_(column.is_(None), column > value), value), else_=column)


def _higher(column: Any, value: Any) -> Any:
    return case((or_(column.is_(None), column < value), value), else_=column)


def _device_update(**values: Any) -> Update:
    """An UPDATE of one ``devices`` row, executed once per parameter set: the row is the
    one of order ``o`` and device ``d`` (bound parameters), ``values`` what it sets."""
    d = DEVICES.c
    return (
        update(DEVICES)
        .where(
            d.order_id == bindparam("o", type_=BigInteger()),
            d.device == bindparam("d", type_=String()),
        )
        .values(**values)
    )


def record_progress(session: Session, progress: Sequence[DeviceProgress]) -> None:
    """Add a batch's newly stored readings to each device's counters.

    Rows are updated in key order so that two oracle processes storing the same
    devices never deadlock. PostgreSQL: the rows are locked in that order
    (:func:`lock_devices`), then updated by one statement with one array per
    parameter (``unnest``); elsewhere one UPDATE per (order, device), executed as one
    batch. Both set what :func:`_progress_values` says.
    """
    if not progress:
        return
    ordered = sorted(progress, key=lambda p: (p.order_id, p.device))
    names = list(_PROGRESS_PARAMS)
    rows = [(p.order_id, p.device, p.count, p.first_seq, p.last_seq, p.last_timestamp,
             p.last_received_at) for p in ordered]  # fmt: skip
    if is_postgres(session):
        lock_devices(session, [(p.order_id, p.device) for p in ordered])
        arrays = dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))
        session.execute(_UNNEST_PROGRESS, arrays)
        return
    params = [dict(zip(names, row, strict=True)) for row in rows]
    session.connection().execute(_PROGRESS_PER_ROW, params)


#: record_progress's parameters and their types, in DeviceProgress's field order.
_PROGRESS_PARAMS: dict[str, Any] = {
    "o": BigInteger(), "d": String(), "n": BigInteger(), "lo": BigInteger(),
    "hi": BigInteger(), "ts": BigInteger(), "rx": Float(),
}  # fmt: skip


def _progress_values(source: Any) -> dict[str, Any]:
    """What record_progress sets on a ``devices`` row, from ``source`` (its parameters
    by name): the count grows, the seq range and the newest times only widen."""
    d = DEVICES.c
    return {
        "reading_count": d.reading_count + source["n"],
        "first_seq": _lower(d.first_seq, source["lo"]),
        "last_seq": _higher(d.last_seq, source["hi"]),
        "last_timestamp": _higher(d.last_timestamp, source["ts"]),
        "last_received_at": _higher(d.last_received_at, source["rx"]),
    }


_PROGRESS_PER_ROW = _device_update(
    **_progress_values({n: bindparam(n, type_=t) for n, t in _PROGRESS_PARAMS.items()})
)
_PROGRESS_ROWS = (
    func.unnest(*(bindparam(n, type_=ArrayLiteral(t)) for n, t in _PROGRESS_PARAMS.items()))
    .table_valued(*_PROGRESS_PARAMS)
    .render_derived(name="v", with_types=False)
)
_UNNEST_PROGRESS = (
    update(DEVICES)
    .where(DEVICES.c.order_id == _PROGRESS_ROWS.c.o, DEVICES.c.device == _PROGRESS_ROWS.c.d)
    .values(**_progress_values(_PROGRESS_ROWS.c))
)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device's status message: what it says of itself (unsigned; never evidence)."""

    order_id: int
    device: str
    status: str
    at: int | None
    battery_permille: int | None
    first_seq: int | None
    last_seq: int | None


def device_statuses(
    session: Session, order_ids: Iterable[int]
) -> list[tuple[int, str, str | None, int | None]]:
    """(order, device, last status, battery permille) of each device bound to these
    orders."""
    orders = sorted(set(order_ids))
    return _statuses(session, DEVICES.c.order_id.in_(orders)) if orders else []


def _statuses(
    session: Session, where: ColumnElement[bool]
) -> list[tuple[int, str, str | None, int | None]]:
    """(order, device, last status, battery permille) of the ``devices`` rows ``where``
    picks."""
    d = DEVICES.c
    q = select(d.order_id, d.device, d.status, d.battery_permille).where(where)
    return [(int(o), str(dev), s, b) for o, dev, s, b in session.connection().execute(q)]


def lock_devices(session: Session, devices: Sequence[tuple[int, str]]) -> None:
    """PostgreSQL: lock these (order, device) rows of ``devices`` in key order, for a
    transaction that updates them in more than one statement (no deadlock with another
    process updating some of the same rows)."""
    if not devices or not is_postgres(session):
        return
    keys = sorted(set(devices))
    session.execute(_LOCK_DEVICES, {"o": [o for o, _ in keys], "d": [d for _, d in keys]})


_LOCK_KEYS = (
    func.unnest(
        bindparam("o", type_=ArrayLiteral(BigInteger())),
        bindparam("d", type_=ArrayLiteral(String())),
    )
    .table_valued("o", "d")
    .render_derived(name="k", with_types=False)
)
_LOCK_DEVICES = (
    select(DEVICES.c.id)
    .join(
        _LOCK_KEYS, and_(DEVICES.c.order_id == _LOCK_KEYS.c.o, DEVICES.c.device == _LOCK_KEYS.c.d)
    )
    .order_by(DEVICES.c.order_id, DEVICES.c.device)
    .with_for_update(of=DEVICES)
)


def statuses_of(
    session: Session, devices: Sequence[tuple[int, str]]
) -> list[tuple[int, str, str | None, int | None]]:
    """(order, device, last status, battery permille) of these (order, device) pairs."""
    if not devices:
        return []
    d = DEVICES.c
    return _statuses(session, tuple_(d.order_id, d.device).in_(sorted(set(devices))))


def record_status(session: Session, statuses: Sequence[DeviceStatus]) -> None:
    """Store each device's latest status; the reported seq range only ever widens."""
    if not statuses:
        return
    d = DEVICES.c
    newer = or_(
        d.status_at.is_(None),
        bindparam("at", type_=BigInteger()).is_(None),
        d.status_at <= bindparam("at", type_=BigInteger()),
    )
    stmt = _device_update(
        status=case((newer, bindparam("st", type_=String())), else_=d.status),
        status_at=case((newer, bindparam("at", type_=BigInteger())), else_=d.status_at),
        battery_permille=case(
            (
                and_(newer, bindparam("bat", type_=Integer()).is_not(None)),
                bindparam("bat", type_=Integer()),
            ),
            else_=d.battery_permille,
        ),
        reported_first_seq=case(
            (bindparam("lo", type_=BigInteger()).is_(None), d.reported_first_seq),
            else_=_lower(d.reported_first_seq, bindparam("lo", type_=BigInteger())),
        ),
        reported_last_seq=case(
            (bindparam("hi", type_=BigInteger()).is_(None), d.reported_last_seq),
            else_=_higher(d.reported_last_seq, bindparam("hi", type_=BigInteger())),
        ),
    )
    params = [
        {"o": x.order_id, "d": x.device, "st": x.status, "at": x.at, "bat": x.battery_permille,
         "lo": x.first_seq, "hi": x.last_seq}
        for x in sorted(statuses, key=lambda x: (x.order_id, x.device, x.at or 0))
    ]  # fmt: skip
    session.connection().execute(stmt, params)


#: Order states in which missing readings still matter to the oracle.
LIVE_STATES = tuple(
    s.label for s in (OrderState.SHIPPED, OrderState.DELIVERED, OrderState.DISPUTED)
)


def devices_missing_readings(session: Session) -> list[DeviceRow]:
    """Bound devices of live orders with readings missing (see :meth:`DeviceRow.missing`)."""
    d = DeviceRow
    q = (
        select(d)
        .join(OrderRow, OrderRow.id == d.order_id)
        .where(
            OrderRow.state.in_(LIVE_STATES),
            or_(
                d.last_seq - d.first_seq + 1 > d.reading_count,
                d.reported_last_seq > func.coalesce(d.last_seq, d.reported_first_seq - 1, 0),
                d.reported_first_seq < d.first_seq,
            ),
        )
        .order_by(d.order_id, d.device)
    )
    return list(session.scalars(q))


def missing_ranges(session: Session, row: DeviceRow) -> list[tuple[int, int]]:
    """The seq ranges (first, last) of ``row``'s device that were never stored, within
    the range the stored readings and the device's own status span."""
    lo, hi = row.expected_seqs()
    if hi < lo:
        return []
    r = ReadingRow
    seqs = (
        select(r.seq, func.lead(r.seq).over(order_by=r.seq).label("nxt"))
        .where(r.order_id == row.order_id, r.device == row.device)
        .subquery()
    )
    holes = session.execute(
        select(seqs.c.seq, seqs.c.nxt).where(seqs.c.nxt > seqs.c.seq + 1).order_by(seqs.c.seq)
    )
    out = [(int(a) + 1, int(b) - 1) for a, b in holes]
    if row.first_seq is None or row.last_seq is None:
        return [(lo, hi)]
    if lo < row.first_seq:
        out.insert(0, (lo, row.first_seq - 1))
    if hi > row.last_seq:
        out.append((row.last_seq + 1, hi))
    return out


def orders_of_device(session: Session, device: str) -> list[int]:
    q = select(DeviceRow.order_id).where(DeviceRow.device == device).order_by(DeviceRow.order_id)
    return list(session.scalars(q))


def devices_of_order_rows(session: Session, order_id: int) -> list[DeviceRow]:
    q = select(DeviceRow).where(DeviceRow.order_id == order_id).order_by(DeviceRow.id)
    return list(session.scalars(q))


def devices_of_order(session: Session, order_id: int) -> list[str]:
    q = select(DeviceRow.device).where(DeviceRow.order_id == order_id).order_by(DeviceRow.id)
    return list(session.scalars(q))


def all_bindings(session: Session) -> set[tuple[int, str]]:
    return {(o, d) for o, d in session.execute(select(DeviceRow.order_id, DeviceRow.device))}


def upsert_order(session: Session, values: Mapping[str, Any]) -> None:
    """Insert or update an order's indexed state (``values`` holds OrderRow columns)."""
    stmt = _insert(session, ORDERS).values(**values)
    changes = {k: stmt.excluded[k] for k in values if k != "id"}
    session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=changes))


def get_order(session: Session, order_id: int) -> OrderRow | None:
    return session.get(OrderRow, order_id)


def orders_in_state(session: Session, states: Sequence[str]) -> list[OrderRow]:
    q = select(OrderRow).where(OrderRow.state.in_(list(states))).order_by(OrderRow.id)
    return list(session.scalars(q))


# ------------------------------------------------------------- chain indexing


def insert_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store decoded events, skipping logs already stored; returns how many were new."""
    if not rows:
        return 0
    stmt = (
        _insert(session, EVENTS)
        .on_conflict_do_nothing(index_elements=["block_number", "log_index"])
        .returning(EVENTS.c.id)
    )
    return len(session.connection().execute(stmt, list(rows)).all())


def events_for(session: Session, order_id: int, *, limit: int = 500) -> list[ChainEventRow]:
    q = (
        select(ChainEventRow)
        .where(ChainEventRow.order_id == order_id)
        .order_by(ChainEventRow.block_number, ChainEventRow.log_index)
        .limit(limit)
    )
    return list(session.scalars(q))


BLOCKS: Table = IndexedBlockRow.__table__  # type: ignore[assignment]


def record_block_hashes(
    session: Session, name: str, hashes: Mapping[int, bytes], *, keep: int = 256
) -> None:
    """Remember the hashes of blocks the indexer read; only the newest ``keep`` stay."""
    if not hashes:
        return
    stmt = _insert(session, BLOCKS)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["name", "number"], set_={"hash": stmt.excluded.hash}
        ),
        [{"name": name, "number": n, "hash": h} for n, h in sorted(hashes.items())],
    )
    newest = select(BLOCKS.c.number).where(BLOCKS.c.name == name).order_by(BLOCKS.c.number.desc())
    floor = session.scalar(newest.offset(keep - 1).limit(1))
    if floor is not None:
        session.execute(BLOCKS.delete().where(BLOCKS.c.name == name, BLOCKS.c.number < floor))


def block_hashes(session: Session, name: str) -> list[tuple[int, bytes]]:
    """The remembered (number, hash) pairs, newest first."""
    q = (
        select(BLOCKS.c.number, BLOCKS.c.hash)
        .where(BLOCKS.c.name == name)
        .order_by(BLOCKS.c.number.desc())
    )
    return [(int(n), bytes(h)) for n, h in session.execute(q)]


def rewind_index(session: Session, name: str, fork: int) -> list[int]:
    """Forget what the indexer stored of blocks after ``fork`` (a reorganisation replaced
    them): their events, block hashes and device bindings; the cursor moves to ``fork``.
    Returns the orders whose indexed state came from those blocks (to be read again)."""
    stale = list(
        session.scalars(
            select(OrderRow.id).where(OrderRow.updated_block > fork).order_by(OrderRow.id)
        )
    )
    session.execute(EVENTS.delete().where(EVENTS.c.block_number > fork))
    session.execute(BLOCKS.delete().where(BLOCKS.c.name == name, BLOCKS.c.number > fork))
    session.execute(DEVICES.delete().where(DEVICES.c.bound_block > fork))
    session.execute(
        update(DEVICES)
        .where(DEVICES.c.revoked_block > fork)
        .values(revoked_at=None, revoked_block=None)
    )
    set_cursor(session, name, fork)
    return stale


def delete_order(session: Session, order_id: int) -> None:
    """An order that exists only in blocks a reorganisation removed."""
    session.execute(ORDERS.delete().where(ORDERS.c.id == order_id))


def get_cursor_deployment(session: Session, name: str) -> str | None:
    row = session.get(IndexerCursorRow, name)
    return None if row is None else row.deployment


def get_cursor(session: Session, name: str) -> int | None:
    row = session.get(IndexerCursorRow, name)
    return None if row is None else row.last_block


def set_cursor(
    session: Session, name: str, last_block: int, *, deployment: str | None = None
) -> None:
    """Move the cursor (and, when given, record which deployment is indexed)."""
    values: dict[str, Any] = {"name": name, "last_block": last_block, "updated_at": time.time()}
    if deployment is not None:
        values["deployment"] = deployment
    stmt = _insert(session, IndexerCursorRow.__table__).values(**values)  # type: ignore[arg-type]
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={k: stmt.excluded[k] for k in values if k != "name"},
        )
    )


# --- captured EPCIS events (docs/epcis.md) -----------------------------------------------


def epcis_events_by_id(session: Session, event_ids: Sequence[str]) -> dict[str, EpcisEventRow]:
    """Stored captured events by ``event_id``."""
    if not event_ids:
        return {}
    rows = session.scalars(select(EpcisEventRow).where(EpcisEventRow.event_id.in_(list(event_ids))))
    return {r.event_id: r for r in rows}


def add_epcis_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store captured events (the caller checked that none is stored yet)."""
    for row in rows:
        session.add(EpcisEventRow(**row))
