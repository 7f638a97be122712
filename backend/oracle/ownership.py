"""Which orders this oracle process evaluates (docs/oracle.md, "Several oracles").

Every oracle of a deployment subscribes to one share group, so the broker hands a
device's readings to whichever process is next. Each process verifies and stores
what it receives; only the order's *owner* evaluates it (rules, risk model,
silence). A reading of an order owned by another process is stored with a
:class:`~backend.store.models.HandoffRow`, which the owner takes in the
transaction that evaluates it. So every reading of an order is evaluated in one
process's memory, and the stores of two processes do not wait on each other's
order locks.

Orders fall into :data:`SLOTS` slots (``order_id % SLOTS``). On PostgreSQL each
process holds, on a connection of its own:

* one ``MEMBER`` session lock (a random id): the live processes are the granted
  ``MEMBER`` locks in ``pg_locks``;
* the ``SLOT`` session locks of the slots it owns. With ``n`` members sorted by
  id, the member at index ``i`` aims for the slots ``s`` with ``s % n == i``.

:meth:`Ownership.rebalance` (every second, between batches) releases the slots a
process should no longer own and tries to take the ones it should: a slot moves
only once its old owner released it, so two processes never evaluate one order.
A process that dies loses its connection and with it its locks: the others take
its slots on their next rebalance and evaluate what was handed off meanwhile. A
connection lost under a live process frees its slots before it looks again, so an
evaluating transaction checks its slots under its orders' locks (:meth:`confirm`).

On SQLite (one oracle process) the process owns every order and hands nothing off.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from backend.store.locks import Lock, is_postgres

log = logging.getLogger(__name__)

#: How many slots the orders fall into: many more than processes, so that each
#: process's share of the orders is close to even.
SLOTS = 256

_MEMBERS = text(
    "SELECT objid::bigint, pid = pg_backend_pid() FROM pg_locks "
    "WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND classid = CAST(:ns AS bigint)::oid "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "ORDER BY 1"
)
_TRY = text(
    "SELECT s FROM unnest(CAST(:slots AS integer[])) AS t(s) WHERE pg_try_advisory_lock(:ns, s)"
)
_HELD = text(
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND objsubid = 2 AND classid = CAST(:ns AS bigint)::oid AND pid = :pid "
    "AND objid::bigint = ANY(CAST(:slots AS bigint[]))"
)
#: The server, not only the operating system, notices an oracle host that vanished
#: (a crash, a partition): its connection, and so its locks, end within about 20 s
#: instead of at the kernel's keepalive (over two hours by default).
_KEEPALIVE = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 20000",
)
_RELEASE = text("SELECT pg_advisory_unlock(:ns, s) FROM unnest(CAST(:slots AS integer[])) AS t(s)")


class OwnershipLost(RuntimeError):
    """The connection holding this process's locks was replaced: it owns nothing."""


def _scoped(namespace: Lock, schema: str) -> int:
    """The lock namespace of ``namespace`` for the deployment in ``schema``: advisory
    locks are database-wide, and two deployments may share a database in separate
    schemas (the tests do); ``public`` keeps the namespace itself."""
    if schema == "public":
        return int(namespace)
    return zlib.crc32(f"{int(namespace)}:{schema}".encode()) % 2**31


def slot_of(order_id: int) -> int:
    return order_id % SLOTS


class Ownership:
    """The slots this process owns. Not thread-safe: the ingest worker's store thread
    (which owns the rules' state) calls it between batches."""

    def __init__(self, engine: Engine, member_id: int | None = None) -> None:
        self.engine = engine
        #: SQLite: one process, which owns everything.
        self.everything = not is_postgres(engine)
        self.member_id = member_id if member_id is not None else random.randrange(1, 2**31)
        self._conn: Connection | None = None
        #: The backend pid of the connection holding the locks (None: not joined).
        self.pid: int | None = None
        #: The MEMBER and SLOT namespaces of this deployment's schema (set on joining).
        self._member_ns, self._slot_ns = int(Lock.MEMBER), int(Lock.SLOT)
        self._slots: set[int] = set()
        #: Live members seen at the last rebalance (this one included).
        self.members = 1

    @property
    def slots(self) -> frozenset[int]:
        return frozenset(range(SLOTS)) if self.everything else frozenset(self._slots)

    def owns(self, order_id: int) -> bool:
        return self.everything or slot_of(order_id) in self._slots

    def owned(self, order_ids: Iterable[int]) -> set[int]:
        return {o for o in order_ids if self.owns(o)}

    def rebalance(self) -> tuple[set[int], set[int]]:
        """Join (on first call), then release the slots beyond this process's share and
        take the free ones of it. Returns (slots taken, slots released). A database
        error drops every slot (the connection, and so the locks, are gone) and is
        raised: the next call joins again."""
        if self.everything:
            return set(), set()
        try:
            conn = self._connect()
            rows = conn.execute(_MEMBERS, {"ns": self._member_ns}).all()
            if (self.member_id, True) not in {(int(m), bool(me)) for m, me in rows}:
                # the connection was replaced under us (a database restart): its locks
                # went with the old one, and so did every slot
                raise OwnershipLost("the ownership connection lost its locks")
            members = sorted(int(m) for m, _ in rows)
            self.members = len(members)
            index = members.index(self.member_id)
            target = {s for s in range(SLOTS) if s % len(members) == index}
            release = sorted(self._slots - target)
            if release:
                conn.execute(_RELEASE, {"ns": self._slot_ns, "slots": release}).all()
            wanted = sorted(target - self._slots)
            taken: set[int] = set()
            if wanted:
                got = conn.execute(_TRY, {"ns": self._slot_ns, "slots": wanted}).scalars()
                taken = {int(s) for s in got}
            conn.commit()
        except Exception:
            self.close()
            raise
        self._slots = (self._slots - set(release)) | taken
        if taken or release:
            log.info(
                "ownership: %d of %d slots (%d member(s)); took %d, released %d",
                len(self._slots),
                SLOTS,
                self.members,
                len(taken),
                len(release),
            )
        return taken, set(release)

    def _connect(self) -> Connection:
        """Join: a connection of its own holding a MEMBER lock under a free id. Never
        waits for a lock (a rejoin takes a new id: the old one may still be held by
        the server's copy of a connection that died)."""
        if self._conn is None:
            self._slots.clear()
            conn = self.engine.connect()
            # out of the pool: the locks must never outlive this object on a pooled
            # connection someone else gets next (closing or dropping it ends them)
            conn.detach()
            try:
                for setting in _KEEPALIVE:
                    conn.execute(text(setting))
                schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
                self._member_ns = _scoped(Lock.MEMBER, schema)
                self._slot_ns = _scoped(Lock.SLOT, schema)
                try_lock = text("SELECT pg_try_advisory_lock(:ns, :k)")
                while not conn.execute(
                    try_lock, {"ns": self._member_ns, "k": self.member_id}
                ).scalar():
                    self.member_id = random.randrange(1, 2**31)
                self.pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                conn.commit()
            except Exception:
                conn.invalidate()
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def confirm(self, session: Session, order_ids: set[int]) -> set[int]:
        """Of ``order_ids`` (owned by this process's last look), the ones whose slot
        lock the ownership connection still holds, read in ``session``'s transaction
        after it took the orders' transaction locks. A connection lost since the last
        look (a database restart) frees the slots, and another process may have taken
        them; the orders that fail the check are handed off, not evaluated."""
        if self.everything or not order_ids:
            return set(order_ids)
        if self.pid is None:
            return set()
        slots = sorted({slot_of(o) for o in order_ids})
        params = {"ns": self._slot_ns, "pid": self.pid, "slots": slots}
        held = {int(s) for s in session.connection().execute(_HELD, params).scalars()}
        if len(held) < len(slots):
            log.warning("ownership: %d slot(s) lost since the last look", len(slots) - len(held))
            self._slots &= held | (self._slots - set(slots))
        return {o for o in order_ids if slot_of(o) in held}

    def close(self) -> None:
        """Leave: every slot and the membership are released with the connection."""
        self._slots.clear()
        self.pid = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.invalidate()  # the session (and its locks) ends with the connection
                conn.close()
            except Exception:  # pragma: no cover - already broken
                log.debug("closing the ownership connection failed", exc_info=True)
