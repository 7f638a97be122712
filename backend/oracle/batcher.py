"""Merkle commitments: every N readings or T seconds per order, one batch.

A batch takes the order's uncommitted readings in id order (the leaf order, kept
in ``commitments.reading_ids``), builds the Merkle tree of their digests
(backend.telemetry.MerkleTree), gives it the next ``batchSeq`` (strictly
increasing per order) and, in the same transaction, marks the readings and
queues a ``commit_batch`` outbox entry. The contract accepts commitments in
every state after shipment, so orders are not filtered by state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine

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
    ) -> None:
        if max_readings < 1:
            raise ValueError("max_readings must be at least 1")
        self.sessions = session_factory(engine)
        self.max_readings = max_readings
        self.max_age = max_age_secs
        self.metrics = metrics if metrics is not None else default_metrics
        self.clock = clock

    def tick(self, *, flush: bool = False) -> int:
        """Create the batches that are due (all pending ones with ``flush``); returns how many."""
        now = self.clock()
        with self.sessions() as s:
            pending = repo.uncommitted_counts(s)
        made = 0
        for order_id, (count, oldest) in sorted(pending.items()):
            while count >= self.max_readings or (
                count > 0 and (flush or now - oldest >= self.max_age)
            ):
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
            repo.enqueue_action(
                s,
                kind="commit_batch",
                order_id=order_id,
                dedup_key=f"commit:{order_id}:{batch_seq}",
                payload={"batch_seq": batch_seq, "root": "0x" + tree.root.hex(), "count": len(ids)},
                now=now,
            )
        self.metrics.inc("trustship_commitments_total")
        log.info("order %d: batch %d commits %d readings", order_id, batch_seq, len(ids))
        return len(ids)
