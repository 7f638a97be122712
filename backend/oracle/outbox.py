"""The outbox worker: executes queued chain actions, in order per order, exactly once in effect.

Entries are written by the rules and the batcher in the same transaction as the
readings that caused them. This worker takes the ready ones
(:func:`backend.store.repositories.ready_actions`: per order and lane only the
first unfinished entry, breach evidence before arrival before settlement) and
hands each, decoded into its typed record (:mod:`backend.domain.actions`; an entry
whose payload does not decode fails at once), to an :class:`ActionExecutor`. The
executor reports the outcome by returning a transaction hash or raising one of:

* :class:`ActionAlreadyDone` — the chain already has it (a resubmitted batch, an
  order already breached or delivered): the entry is done;
* :class:`ActionRetryLater` — a transport error, a timeout, or a state that will
  change (dispute window still open): retried with exponential backoff;
* :class:`ActionRejected` — the contract refused it for good: the entry fails.

A crash between sending a transaction and recording its outcome leaves the entry
pending; executing it again meets the "already done" revert. So nothing is lost
and nothing happens twice on chain.

Several oracle processes may share the database (docs/oracle.md): on PostgreSQL a
pass takes, for each order it has ready entries of, a session advisory lock
(:class:`backend.store.locks.SessionLock`), skips the orders another process holds,
and reads the entries again under the locks, so one entry is not sent by two
processes side by side; a process that dies frees its orders with its connection.

A done entry records the chain head it was done at. When the indexer finds that a
reorganisation replaced the blocks after a fork point, :meth:`OutboxWorker.rewound`
puts every entry done above the fork back to pending: its transaction (or the one
that made it "already done") may be gone. Sent again, each either takes effect
again or meets "already done" when the new branch holds it too.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.chain.guard import ChainGuard
from backend.core.errors import TrustShipError
from backend.domain.actions import (
    COMMIT_LANE,
    ActionPayloadError,
    ChainAction,
    CommitBatch,
    decode_action,
)
from backend.oracle.metrics import Metrics
from backend.oracle.metrics import metrics as default_metrics
from backend.store import repositories as repo
from backend.store.db import session_factory
from backend.store.locks import OUTBOX, SessionLock, is_postgres

log = logging.getLogger(__name__)


class ActionAlreadyDone(TrustShipError):
    """Raised by an executor when the chain already reflects the action."""


class ActionRetryLater(TrustShipError):
    """Raised by an executor when the action may succeed later (transport, timing)."""

    def __init__(self, message: str, *, delay_secs: float | None = None) -> None:
        super().__init__(message)
        self.delay_secs = delay_secs


class ActionRejected(TrustShipError):
    """Raised by an executor when the contract refuses the action for good."""


@dataclass(frozen=True)
class OutboxEntry:
    """A ready outbox entry: its row, how often it was tried, and its typed action."""

    id: int
    attempts: int
    action: ChainAction

    @property
    def kind(self) -> str:
        return self.action.kind

    @property
    def order_id(self) -> int:
        return self.action.order_id


class ActionExecutor(Protocol):
    """Performs chain actions; ``session`` is for reading what the action points to."""

    def execute(self, action: ChainAction, session: Session) -> bytes | None:
        """Send the action's transaction and wait for it; returns its hash."""
        ...

    def head_block(self) -> int | None:
        """The chain's newest block number (recorded with each done entry), or None
        when the executor has no chain to ask."""
        ...


class OutboxWorker(threading.Thread):
    def __init__(
        self,
        engine: Engine,
        executor: ActionExecutor,
        *,
        poll_secs: float = 0.5,
        max_attempts: int = 30,
        base_backoff_secs: float = 1.0,
        max_backoff_secs: float = 120.0,
        metrics: Metrics | None = None,
        concurrency: int = 1,
        guard: ChainGuard | None = None,
    ) -> None:
        super().__init__(name="trustship-outbox", daemon=True)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        #: How many orders' entries run side by side in a pass (each order's in order).
        self.concurrency = concurrency
        self.sessions = session_factory(engine)
        self.executor = executor
        self.poll_secs = poll_secs
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff_secs
        self.max_backoff = max_backoff_secs
        self.metrics = metrics if metrics is not None else default_metrics
        #: Nothing is sent to a chain the guard found reset.
        self.guard = guard
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._count_lock = threading.Lock()
        #: On PostgreSQL: the orders this process is executing (several oracles).
        self.locks = SessionLock(engine, OUTBOX) if is_postgres(engine) else None

    def wake(self) -> None:
        """New entries were committed: look now rather than at the next poll.

        The ingest worker calls it after a batch that queued actions, so breach
        evidence does not wait out ``poll_secs`` (on average half of it) first."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop_event.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
        if self.locks is not None and not self.is_alive():
            self.locks.close()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                done = self.run_once()
            except Exception:
                log.exception("outbox pass failed; trying again in %.1f s", self.poll_secs)
                done = 0
            if not done:
                self._wake.wait(self.poll_secs)

    def run_once(self, now: float | None = None) -> int:
        """Execute the entries that are ready now; returns how many were attempted.

        Breach evidence, arrival proofs and settlements go before commitments
        (nothing waits on a commitment; payouts wait on the proofs). When new
        entries arrive meanwhile (:meth:`wake`), the pass ends early so that the
        next one puts them in their place: breach evidence found while thirty
        commitments are queued does not wait for all thirty transactions.
        """
        self._wake.clear()  # a wake-up from here on ends this pass early / starts another
        if self.guard is not None and self.guard.is_reset:
            return 0  # the entries wait; /health says why
        ready, undecodable = self._ready(now)
        if self.locks is None or not ready:
            return self._run_ready(ready, undecodable)
        # Several oracles: an order's entries run in one process at a time; read them
        # again once its lock is held (another process may have just done them).
        held = {o for o in sorted({e.order_id for e in ready}) if self.locks.try_acquire(o)}
        try:
            ready, undecodable = self._ready(now)
            ready = [e for e in ready if e.order_id in held]
            undecodable = [u for u in undecodable if u[1] in held]
            return self._run_ready(ready, undecodable)
        finally:
            for o in sorted(held):
                self.locks.release(o)

    def _ready(
        self, now: float | None
    ) -> tuple[list[OutboxEntry], list[tuple[int, int, str, str]]]:
        ready: list[OutboxEntry] = []
        undecodable: list[tuple[int, int, str, str]] = []
        with self.sessions() as s:
            for r in repo.ready_actions(s, now=now):
                try:
                    decoded = decode_action(r.kind, r.order_id, dict(r.payload))
                except ActionPayloadError as exc:
                    undecodable.append((r.id, r.order_id, r.kind, str(exc)))
                else:
                    ready.append(OutboxEntry(r.id, r.attempts, decoded))
        return ready, undecodable

    def _run_ready(
        self, ready: list[OutboxEntry], undecodable: list[tuple[int, int, str, str]]
    ) -> int:
        for entry_id, order_id, kind, error in undecodable:
            log.error("order %d: %s entry %d refused: %s", order_id, kind, entry_id, error)
            with self.sessions() as s, s.begin():
                repo.mark_failed(s, entry_id, error)
            self.metrics.outbox_results.labels(kind=kind, result="rejected").inc()
        ready.sort(key=lambda e: (e.action.lane == COMMIT_LANE, e.id))
        if self.concurrency == 1:
            return self._run_in_order(ready, [0])
        # Orders are independent on chain: one order's entries run in order (one lane
        # after the other, as above), different orders side by side, so that their
        # transactions share blocks instead of waiting one block each.
        by_order: dict[int, list[OutboxEntry]] = {}
        for action in ready:
            by_order.setdefault(action.order_id, []).append(action)
        attempted = [0]
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(by_order) or 1),
            thread_name_prefix="trustship-outbox",
        ) as pool:
            for _ in pool.map(
                lambda actions: self._run_in_order(actions, attempted), by_order.values()
            ):
                pass
        return attempted[0]

    def _run_in_order(self, entries: list[OutboxEntry], attempted: list[int]) -> int:
        """Execute ``entries`` one after the other until a stop or a wake-up."""
        done = 0
        for entry in entries:
            if self._stop_event.is_set() or (attempted[0] and self._wake.is_set()):
                break
            self._execute(entry)
            with self._count_lock:
                attempted[0] += 1
            done += 1
        return done

    def _backoff(self, attempts: int) -> float:
        return float(min(self.max_backoff, self.base_backoff * 2 ** min(attempts, 20)))

    def _execute(self, entry: OutboxEntry) -> None:
        result = "done"
        tx_hash: bytes | None = None
        try:
            with self.sessions() as s:
                tx_hash = self.executor.execute(entry.action, s)
        except ActionAlreadyDone as exc:
            result = "already_done"
            self._finish(entry, tx_hash=None, note=f"already done: {exc}")
        except ActionRejected as exc:
            result = "rejected"
            log.error("order %d: %s rejected for good: %s", entry.order_id, entry.kind, exc)
            self._fail(entry, str(exc))
        except Exception as exc:
            delay = exc.delay_secs if isinstance(exc, ActionRetryLater) else None
            if entry.attempts + 1 >= self.max_attempts:
                result = "failed"
                log.error(
                    "order %d: %s failed after %d attempts: %s",
                    entry.order_id,
                    entry.kind,
                    entry.attempts + 1,
                    exc,
                )
                self._fail(entry, f"gave up after {entry.attempts + 1} attempts: {exc}")
            else:
                result = "retry"
                wait = delay if delay is not None else self._backoff(entry.attempts)
                log.warning(
                    "order %d: %s will be retried in %.0f s: %s",
                    entry.order_id,
                    entry.kind,
                    wait,
                    exc,
                )
                with self.sessions() as s, s.begin():
                    repo.mark_retry(s, entry.id, f"{type(exc).__name__}: {exc}", time.time() + wait)
        else:
            self._finish(entry, tx_hash=tx_hash, note=None)
        self.metrics.outbox_results.labels(kind=entry.kind, result=result).inc()

    def rewound(self, fork: int) -> int:
        """A reorganisation replaced the blocks after ``fork``: send again what was done
        above it (:func:`backend.store.repositories.requeue_after_fork`); returns how many."""
        with self.sessions() as s, s.begin():
            requeued = repo.requeue_after_fork(s, fork)
        for r in requeued:
            self.metrics.outbox_requeued.labels(kind=r.kind).inc()
            log.warning(
                "order %d: %s entry %d sent again: the blocks after %d were replaced",
                r.order_id, r.kind, r.id, fork,
            )  # fmt: skip
        if requeued:
            self.wake()
        return len(requeued)

    def _head_block(self) -> int | None:
        try:
            return self.executor.head_block()
        except Exception as exc:  # the entry is done all the same; only its head is unknown
            log.warning("chain head not read for a done entry: %s", exc)
            return None

    def _finish(self, entry: OutboxEntry, *, tx_hash: bytes | None, note: str | None) -> None:
        block = self._head_block()
        with self.sessions() as s, s.begin():
            repo.mark_done(s, entry.id, tx_hash=tx_hash, note=note, block=block)
            if isinstance(entry.action, CommitBatch):
                repo.set_commitment_status(s, entry.action.batch_seq, "done", tx_hash)
        log.info(
            "order %d: %s %s",
            entry.order_id,
            entry.kind,
            f"in tx 0x{tx_hash.hex()}" if tx_hash else (note or "done"),
        )

    def _fail(self, entry: OutboxEntry, error: str) -> None:
        with self.sessions() as s, s.begin():
            repo.mark_failed(s, entry.id, error)
            if isinstance(entry.action, CommitBatch):
                repo.set_commitment_status(s, entry.action.batch_seq, "failed")
