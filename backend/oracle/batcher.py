"""Merkle commitments: every N readings or T seconds per order, one batch.

A batch takes the order's uncommitted readings in id order (the leaf order, kept
in ``commitments.reading_ids``), builds the Merkle tree of their digests
(backend.telemetry.MerkleTree), gives it the next ``batchSeq`` (strictly
increasing per order) and, in the same transaction, marks the readings and
queues a :class:`~backend.domain.actions.CommitBatch` outbox entry. The contract
accepts commitments in every state after shipment, so orders are not filtered by state.

The batcher runs in the ingest store thread, between telemetry batches. With a
``budget_secs``, one tick stops after that long (having made at least one batch)
and sets :attr:`CommitmentBatcher.behind`: thirty orders reaching their age limit
together would otherwise hold telemetry (and breach evidence) up for the whole
pass. Orders whose oldest uncommitted reading is oldest go first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine

from backend.domain.actions import CommitBatch
from backend.oracle.metrics import Metrics
from backend.oracle.metrics import metrics as default_metrics
from backend.store import repositories as repo
from backend.store.db import session_factory
from backend.telemetry import MerkleTree

log = logging.getLogger(__name__)


class CommitmentBatcher:
    def __init__(
        self,
        engine: Engine,
        *,
        max_readings: int = 1000,
        max_age_secs: float = 60.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        budget_secs: float | None = None,
    ) -> None:
        if max_readings < 1:
            raise ValueError("max_readings must be at least 1")
        self.sessions = session_factory(engine)
        self.max_readings = max_readings
        self.max_age = max_age_secs
        self.metrics = metrics if metrics is not None else default_metrics
        self.clock = clock
        self.budget = budget_secs
        #: The last tick ran out of budget with batches still due.
        self.behind = False

    def tick(self, *, flush: bool = False) -> int:
        """Create the batches that are due (all pending ones with ``flush``); returns how many.

        Without ``flush``, stops once ``budget_secs`` have passed (after one batch at
        least) and sets :attr:`behind`."""
        started = time.monotonic()
        self.behind = False
        now = self.clock()
        with self.sessions() as s:
            pending = repo.uncommitted_counts(s)
        made = 0
        for order_id, (count, oldest) in sorted(pending.items(), key=lambda kv: (kv[1][1], kv[0])):
            while count >= self.max_readings or (
                count > 0 and (flush or now - oldest >= self.max_age)
            ):
                if (
                    self.budget is not None
                    and not flush
                    and made
                    and time.monotonic() - started >= self.budget
                ):
                    self.behind = True
                    return made
                taken = self._commit_one(order_id, now)
                if taken == 0:
                    break
                made += 1
                count -= taken
        return made

    def _commit_one(self, order_id: int, now: float) -> int:
        with self.sessions() as s, s.begin():
            rows = repo.take_uncommitted(s, order_id, self.max_readings)
            if not rows:
                return 0
            ids = [i for i, _ in rows]
            tree = MerkleTree.from_digests([d for _, d in rows])
            batch_seq = repo.last_batch_seq(s, order_id) + 1
            repo.add_commitment(
                s, order_id=order_id, batch_seq=batch_seq, root=tree.root, reading_ids=ids, now=now
            )
            repo.enqueue(
                s,
                CommitBatch(order_id=order_id, batch_seq=batch_seq, root=tree.root, count=len(ids)),
                now=now,
            )
        self.metrics.commitments.inc()
        log.info("order %d: batch %d commits %d readings", order_id, batch_seq, len(ids))
        return len(ids)
