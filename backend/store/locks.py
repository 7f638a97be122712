"""Locks that let several oracle processes share one PostgreSQL database (docs/oracle.md).

Every oracle of a deployment subscribes to the same share group, so the broker
hands one device's readings to whichever process is next. What must not be done
by two processes at once is serialised by PostgreSQL advisory locks, keyed by
(:class:`Lock` namespace, id):

* :data:`ORDER` — a transaction that evaluates readings takes the lock of every
  order it evaluates, in ascending order (so two never deadlock): only the order's
  owner evaluates it (:mod:`backend.oracle.ownership`), and the lock keeps that true
  while ownership moves from one process to another;
* :data:`FLEET_BATCH` — one fleet batch is cut at a time (its ``batchSeq`` is the
  next after the newest);
* :data:`INDEXER` — one indexer writes a page at a time (the others find the
  cursor moved on);
* :data:`MIGRATIONS` — held while one process upgrades the schema (several
  oracles starting at once);
* :data:`OUTBOX` — held for the session by the process executing an order's
  chain actions (:class:`SessionLock`): another process skips that order until
  the lock is free, so one action is never sent by two oracles side by side;
* :data:`MEMBER` and :data:`SLOT` — held for the session by each oracle process
  (:mod:`backend.oracle.ownership`): one MEMBER lock says the process is alive,
  and the SLOT locks it holds name the orders whose readings it evaluates.

Transaction locks end with their transaction; a session lock ends with its
connection, so a process killed mid-action frees its orders at once. On SQLite
(one writer at a time, one oracle process) every function here does nothing.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterable, Iterator

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

#: PostgreSQL's two-int advisory lock key: the id part is an int4.
_INT4 = 2**31


class Lock(enum.IntEnum):
    """Advisory lock namespaces (the first of the two int4 keys)."""

    ORDER = 0x7453_0001
    FLEET_BATCH = 0x7453_0002
    INDEXER = 0x7453_0003
    OUTBOX = 0x7453_0004
    MIGRATIONS = 0x7453_0005
    MEMBER = 0x7453_0006
    SLOT = 0x7453_0007


ORDER, FLEET_BATCH, INDEXER, OUTBOX = Lock.ORDER, Lock.FLEET_BATCH, Lock.INDEXER, Lock.OUTBOX
MIGRATIONS = Lock.MIGRATIONS


def _key(ident: int) -> int:
    """An id as the lock's int4 (ids past it share a lock: safe, only less parallel)."""
    return (ident % (2 * _INT4)) - _INT4 if ident >= _INT4 else ident


def is_postgres(bind: Session | Connection | Engine) -> bool:
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return dialect.name == "postgresql"


def lock_for_transaction(session: Session, namespace: Lock, ids: Iterable[int]) -> None:
    """Take the transaction locks of ``ids`` in ``namespace``, in ascending order
    (waits for other transactions holding them; released at commit or rollback)."""
    if not is_postgres(session):
        return
    keys = sorted({_key(i) for i in ids})
    if not keys:
        return
    # One statement: the keys come sorted out of the array, and PostgreSQL evaluates a
    # volatile function of the select list after the ORDER BY.
    stmt = text(
        "SELECT pg_advisory_xact_lock(:ns, k) FROM unnest(CAST(:keys AS integer[])) "
        "WITH ORDINALITY AS t(k, i) ORDER BY i"
    )
    session.connection().execute(stmt, {"ns": int(namespace), "keys": keys}).all()


@contextlib.contextmanager
def held(engine: Engine, namespace: Lock, ident: int = 0) -> Iterator[None]:
    """Hold a lock for the ``with`` block on a connection of its own (waits for it)."""
    if not is_postgres(engine):
        yield
        return
    with engine.connect() as conn:
        params = {"ns": int(namespace), "k": _key(ident)}
        conn.execute(text("SELECT pg_advisory_lock(:ns, :k)"), params)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:ns, :k)"), params)
            conn.commit()


class SessionLock:
    """Advisory locks held on one dedicated connection until released (or the
    process dies and PostgreSQL closes the connection). Not thread-safe: one owner."""

    def __init__(self, engine: Engine, namespace: Lock) -> None:
        self.engine = engine
        self.namespace = namespace
        self._conn: Connection | None = None

    def try_acquire(self, ident: int) -> bool:
        """Take the lock of ``ident`` unless another session holds it (True: taken)."""
        if not is_postgres(self.engine):
            return True
        got = self._call("pg_try_advisory_lock", ident)
        return bool(got)

    def release(self, ident: int) -> None:
        if self._conn is not None:
            self._call("pg_advisory_unlock", ident)

    def _call(self, fn: str, ident: int) -> object:
        if self._conn is None:
            self._conn = self.engine.connect()
        try:
            value = self._conn.execute(
                text(f"SELECT {fn}(:ns, :k)"), {"ns": int(self.namespace), "k": _key(ident)}
            ).scalar()
            self._conn.commit()
        except Exception:
            self.close()  # a broken connection holds no locks; the next call opens another
            raise
        return value

    def close(self) -> None:
        """Release every lock this object holds (by closing its connection)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.invalidate()  # the session (and its locks) ends with the connection
            conn.close()
