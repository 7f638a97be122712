"""The API's read queries over the store's models (visibility rules included).

Every order-scoped query takes the caller's visibility filter, so one party
never reads another's orders: an invisible order looks exactly like a missing
one (404), which does not leak that it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, bindparam, func, or_, select, true, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from backend.api.parties import Party
from backend.scorecard import SCORED_EVENTS, ChainEvent

# Hot read paths select from the tables (SQLAlchemy Core, ``ORDERS``, ``READINGS``):
# rows come back as ``Row`` tuples with attribute access, all the API needs to read.
from backend.store.models import (
    ORDERS,
    READINGS,
    AlertRow,
    ChainEventRow,
    CommitmentRow,
    DeviceRow,
    EpcisEventRow,
    ReadingRow,
    RiskSnapshotRow,
)

#: An order as the API reads it: a Core row with the columns of :class:`OrderRow`.
OrderRecord = Row[Any]


def _named_in(party: Any) -> ColumnElement[bool]:
    """The orders that name ``party`` (an address, or a bind parameter that will hold
    one) as buyer, supplier or arbiter."""
    return or_(ORDERS.c.buyer == party, ORDERS.c.supplier == party, ORDERS.c.arbiter == party)


def visible(party: Party) -> ColumnElement[bool]:
    """The orders ``party`` may see: all for auditors/admins, else its own."""
    return true() if party.reads_all else _named_in(party.address)


# The hot reads (an order, a page of orders, a page of readings) run statements built
# once per shape of query: which filters are present, not their values, which travel
# as bind parameters. Building a statement and working out its cache key cost more
# than running it (SQLite, a page of 50 orders: 560 µs built per request, 330 µs
# prebuilt; bench/api.py). The bind parameters' names:
_ME = "me"  # the calling party's address, where it sees only its own orders


def _visible_to_me(reads_all: bool) -> ColumnElement[bool]:
    return true() if reads_all else _named_in(bindparam(_ME))


def _me(party: Party) -> dict[str, Any]:
    return {} if party.reads_all else {_ME: party.address}


def _of_visible_orders(party: Party, order_id: InstrumentedAttribute[int]) -> ColumnElement[bool]:
    """The rows ``party`` may see of a table whose ``order_id`` column names their order:
    all for auditors/admins, else those of the orders :func:`visible` lets it see."""
    if party.reads_all:
        return true()
    return order_id.in_(select(ORDERS.c.id).where(visible(party)))


def _count(session: Session, stmt: Select[Any]) -> int:
    return int(
        session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    )


def _total(shown: int, count: Callable[[], int], *, limit: int, first_page: bool) -> int:
    """How many rows match in all, ``shown`` of them on a page of at most ``limit``: a
    first page that is not full holds them all (no count query), else ``count()``."""
    return shown if first_page and shown < limit else count()


def _core(session: Session, stmt: Any, params: dict[str, Any] | None = None) -> Any:
    """Run a Core statement on the session's connection (its transaction), skipping the
    ORM's execution path: rows come back as they do from ``session.execute``, for
    about half the time on a page of orders."""
    return session.connection().execute(stmt, params)


def _count_of(table: Any, criteria: Sequence[ColumnElement[bool]]) -> Select[Any]:
    """How many rows of ``table`` match ``criteria`` (a count over the table itself, not
    over the page's statement as a subquery)."""
    return select(func.count()).select_from(table).where(*criteria)


@cache
def _order_stmt(reads_all: bool) -> Select[Any]:
    return select(ORDERS).where(ORDERS.c.id == bindparam("id"), _visible_to_me(reads_all))


def get_order(session: Session, party: Party, order_id: int) -> OrderRecord | None:
    """The order (a Core row with the columns of :class:`OrderRow`) if ``party`` sees it."""
    stmt = _order_stmt(party.reads_all)
    row: OrderRecord | None = _core(session, stmt, {"id": order_id, **_me(party)}).first()
    return row


@cache
def _owners_stmt(reads_all: bool) -> Select[Any]:
    o = ORDERS.c
    return select(o.id, o.buyer, o.supplier).where(
        o.id == bindparam("id"), _visible_to_me(reads_all)
    )


def order_owners(session: Session, party: Party, order_id: int) -> Row[Any] | None:
    """The order's id, buyer and supplier if ``party`` sees it: the check of a route
    about an order that needs no more of the order's row (three columns to read)."""
    stmt = _owners_stmt(party.reads_all)
    row: Row[Any] | None = _core(session, stmt, {"id": order_id, **_me(party)}).first()
    return row


@cache
def _orders_stmts(
    reads_all: bool, states: bool, role: str | None, buyer: bool, supplier: bool, keyset: bool
) -> tuple[Select[Any], Select[Any]]:
    """The page and the count statement of one shape of order query (which filters it
    has); the values come as the bind parameters ``me``, ``states``, ``buyer``,
    ``supplier``, ``before``, ``limit`` and ``offset``."""
    o = ORDERS.c
    criteria = [_visible_to_me(reads_all)]
    if states:
        criteria.append(o.state.in_(bindparam("states", expanding=True)))
    if role is not None:
        criteria.append(o[role] == bindparam(_ME))
    if buyer:
        criteria.append(o.buyer == bindparam("buyer"))
    if supplier:
        criteria.append(o.supplier == bindparam("supplier"))
    page = [*criteria, o.id < bindparam("before")] if keyset else criteria
    stmt = (
        select(ORDERS)
        .where(*page)
        .order_by(o.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return stmt, _count_of(ORDERS, criteria)


def list_orders(
    session: Session,
    party: Party,
    *,
    states: Sequence[str] = (),
    role: str | None = None,
    buyer: str | None = None,
    supplier: str | None = None,
    limit: int = 50,
    offset: int = 0,
    before: int | None = None,
) -> tuple[list[Row[Any]], int]:
    """Orders ``party`` sees, newest first: ``limit`` of them after skipping ``offset``,
    or (keyset) those with an id below ``before``; and how many match in all."""
    page, count = _orders_stmts(
        party.reads_all,
        bool(states),
        role,
        buyer is not None,
        supplier is not None,
        before is not None,
    )
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if not party.reads_all or role is not None:
        params[_ME] = party.address
    if states:
        params["states"] = list(states)
    if buyer is not None:
        params["buyer"] = buyer
    if supplier is not None:
        params["supplier"] = supplier
    paged = params if before is None else {**params, "before": before}
    rows = list(_core(session, page, paged).all())
    first = offset == 0 and before is None
    return rows, _total(
        len(rows),
        lambda: int(_core(session, count, params).scalar() or 0),
        limit=limit,
        first_page=first,
    )


@cache
def _readings_stmts(
    device: bool, since: bool, until: bool, keyset: bool
) -> tuple[Select[Any], Select[Any]]:
    """The page and the count statement of one shape of telemetry query; the values
    come as the bind parameters ``order_id``, ``device``, ``since``, ``until``,
    ``after_ts``, ``after_id``, ``limit`` and ``offset``."""
    r = READINGS.c
    criteria = [r.order_id == bindparam("order_id")]
    if device:
        criteria.append(r.device == bindparam("device"))
    if since:
        criteria.append(r.timestamp >= bindparam("since"))
    if until:
        criteria.append(r.timestamp < bindparam("until"))
    page = criteria
    if keyset:  # past the (timestamp, id) of the last reading shown
        after = tuple_(bindparam("after_ts"), bindparam("after_id"))
        page = [*criteria, tuple_(r.timestamp, r.id) > after]
    stmt = (
        select(READINGS)
        .where(*page)
        .order_by(r.timestamp, r.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return stmt, _count_of(READINGS, criteria)


def readings(
    session: Session,
    order_id: int,
    *,
    device: str | None = None,
    since: int | None = None,
    until: int | None = None,
    limit: int = 100,
    offset: int = 0,
    after: tuple[int, int] | None = None,
) -> tuple[list[Row[Any]], int]:
    """An order's readings by timestamp (then id), optionally by device and time range:
    ``limit`` of them after skipping ``offset``, or (keyset) those after the reading
    whose (timestamp, id) is ``after``; and how many match in all."""
    page, count = _readings_stmts(
        device is not None, since is not None, until is not None, after is not None
    )
    params: dict[str, Any] = {"order_id": order_id, "limit": limit, "offset": offset}
    for name, value in (("device", device), ("since", since), ("until", until)):
        if value is not None:
            params[name] = value
    paged = params if after is None else {**params, "after_ts": after[0], "after_id": after[1]}
    rows = list(_core(session, page, paged).all())
    first = offset == 0 and after is None
    return rows, _total(
        len(rows),
        lambda: int(_core(session, count, params).scalar() or 0),
        limit=limit,
        first_page=first,
    )


def reading_by_seq(session: Session, order_id: int, device: str, seq: int) -> ReadingRow | None:
    return session.scalars(
        select(ReadingRow).where(
            ReadingRow.order_id == order_id, ReadingRow.device == device, ReadingRow.seq == seq
        )
    ).first()


def _batches_of(order_id: int) -> Select[Any]:
    return (
        select(ReadingRow.batch_seq)
        .where(ReadingRow.order_id == order_id, ReadingRow.batch_seq.is_not(None))
        .distinct()
    )


def commitments(
    session: Session, order_id: int, *, limit: int, offset: int
) -> tuple[list[CommitmentRow], int]:
    """The fleet batches that hold readings of the order."""
    stmt = select(CommitmentRow).where(CommitmentRow.batch_seq.in_(_batches_of(order_id)))
    rows = list(session.scalars(stmt.order_by(CommitmentRow.batch_seq).limit(limit).offset(offset)))
    return rows, _count(session, stmt)


def commitment(session: Session, order_id: int, batch_seq: int) -> CommitmentRow | None:
    """A fleet batch, if it holds readings of the order."""
    return session.scalars(
        select(CommitmentRow).where(
            CommitmentRow.batch_seq == batch_seq,
            CommitmentRow.batch_seq.in_(_batches_of(order_id)),
        )
    ).first()


def readings_by_ids(session: Session, ids: Sequence[int]) -> dict[int, ReadingRow]:
    out: dict[int, ReadingRow] = {}
    ids = list(ids)
    for i in range(0, len(ids), 500):  # stay under the bind-parameter limits
        chunk = ids[i : i + 500]
        for row in session.scalars(select(ReadingRow).where(ReadingRow.id.in_(chunk))):
            out[row.id] = row
    return out


def chain_events(
    session: Session, order_id: int, *, limit: int, offset: int
) -> tuple[list[ChainEventRow], int]:
    stmt = select(ChainEventRow).where(ChainEventRow.order_id == order_id)
    rows = list(
        session.scalars(
            stmt.order_by(ChainEventRow.block_number, ChainEventRow.log_index)
            .limit(limit)
            .offset(offset)
        )
    )
    return rows, _count(session, stmt)


def alerts(
    session: Session,
    party: Party,
    *,
    order_id: int | None = None,
    kinds: Sequence[str] = (),
    severity: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = True,
) -> tuple[list[AlertRow], int]:
    stmt = select(AlertRow).where(_of_visible_orders(party, AlertRow.order_id))
    if order_id is not None:
        stmt = stmt.where(AlertRow.order_id == order_id)
    if kinds:
        stmt = stmt.where(AlertRow.kind.in_(list(kinds)))
    if severity is not None:
        stmt = stmt.where(AlertRow.severity == severity)
    if after_id is not None:
        stmt = stmt.where(AlertRow.id > after_id)
    order = AlertRow.id.desc() if newest_first else AlertRow.id
    rows = list(session.scalars(stmt.order_by(order).limit(limit).offset(offset)))
    return rows, _total(
        len(rows), lambda: _count(session, stmt), limit=limit, first_page=offset == 0
    )


def risk_snapshots(session: Session, order_id: int, *, limit: int = 100) -> list[RiskSnapshotRow]:
    """The order's risk snapshots, newest first."""
    q = select(RiskSnapshotRow).where(RiskSnapshotRow.order_id == order_id)
    return list(session.scalars(q.order_by(RiskSnapshotRow.id.desc()).limit(limit)))


def last_alert_id(session: Session) -> int:
    return int(session.scalar(select(func.max(AlertRow.id))) or 0)


def devices(
    session: Session,
    party: Party,
    *,
    order_id: int | None = None,
    device: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[DeviceRow], int]:
    """Bound devices with what ingest stored of them and their latest status."""
    stmt = select(DeviceRow).where(_of_visible_orders(party, DeviceRow.order_id))
    if order_id is not None:
        stmt = stmt.where(DeviceRow.order_id == order_id)
    if device is not None:
        stmt = stmt.where(DeviceRow.device == device)
    rows = list(
        session.scalars(
            stmt.order_by(DeviceRow.order_id, DeviceRow.device).limit(limit).offset(offset)
        )
    )
    return rows, _total(
        len(rows), lambda: _count(session, stmt), limit=limit, first_page=offset == 0
    )


def credits(session: Session, account: str) -> dict[str, int]:
    """Escrow credits of ``account`` not yet withdrawn, per token (from indexed events)."""
    out: dict[str, int] = {}
    stmt = select(ChainEventRow.event, ChainEventRow.args).where(
        ChainEventRow.event.in_(["FundsCredited", "FundsWithdrawn"])
    )
    for event, args in session.execute(stmt):
        if not isinstance(args, dict) or args.get("account") != account:
            continue
        token = str(args.get("token"))
        amount = int(str(args.get("amount", 0)))
        out[token] = out.get(token, 0) + (amount if event == "FundsCredited" else -amount)
    return {t: v for t, v in out.items() if v}


def scored_events(session: Session) -> tuple[list[ChainEvent], int | None]:
    """The events a scorecard reads, in chain order, and the newest indexed event's block
    time (the time the scorecards are for: docs/scorecards.md)."""
    rows = session.execute(
        select(
            ChainEventRow.event,
            ChainEventRow.block_number,
            ChainEventRow.log_index,
            ChainEventRow.block_timestamp,
            ChainEventRow.args,
        )
        .where(ChainEventRow.event.in_(SCORED_EVENTS))
        .order_by(ChainEventRow.block_number, ChainEventRow.log_index)
    )
    events = [ChainEvent(n, b, i, t or 0, a) for n, b, i, t, a in rows]
    as_of = session.scalar(select(func.max(ChainEventRow.block_timestamp)))
    return events, (int(as_of) if as_of is not None else None)


def all_readings(session: Session, order_id: int, page: int = 5000) -> list[Row[Any]]:
    """Every reading of the order by timestamp (then id), read a page at a time."""
    out: list[Row[Any]] = []
    while True:
        rows, _ = readings(session, order_id, limit=page, offset=len(out))
        out.extend(rows)
        if len(rows) < page:
            return out


def all_commitments(session: Session, order_id: int) -> list[CommitmentRow]:
    """Every fleet batch that holds readings of the order."""
    stmt = select(CommitmentRow).where(CommitmentRow.batch_seq.in_(_batches_of(order_id)))
    return list(session.scalars(stmt.order_by(CommitmentRow.batch_seq)))


def all_chain_events(session: Session, order_id: int) -> list[ChainEventRow]:
    """The order's contract events in chain order."""
    stmt = select(ChainEventRow).where(ChainEventRow.order_id == order_id)
    return list(session.scalars(stmt.order_by(ChainEventRow.block_number, ChainEventRow.log_index)))


def epcis_events(
    session: Session, order_id: int, *, limit: int | None = None, offset: int = 0
) -> tuple[list[EpcisEventRow], int]:
    """The partner events captured for the order, by event time (then capture order)."""
    stmt = select(EpcisEventRow).where(EpcisEventRow.order_id == order_id)
    ordered = stmt.order_by(EpcisEventRow.event_time, EpcisEventRow.id).offset(offset)
    rows = list(session.scalars(ordered.limit(limit) if limit is not None else ordered))
    return rows, _count(session, stmt)
