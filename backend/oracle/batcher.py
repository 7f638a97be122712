"""Fleet commitments: every N readings or T seconds, one Merkle root over every order.

A batch takes the uncommitted readings of all orders in id order (arrival order:
the leaf order, kept in ``commitments.reading_ids``), builds the fleet tree of
:mod:`backend.telemetry.fleet` (leaf ``i`` = keccak(order id, device, reading digest,
``i``): each leaf stays bound to its order and device), gives it the next
``batchSeq`` (strictly increasing in the oracle's fleet log) and, in the same
transaction, marks the readings and queues one
:class:`~backend.domain.actions.CommitBatch` outbox entry (``commitFleetRoot``,
about 41k gas whatever the batch's size). The contract accepts a root at any time,
so orders are not filtered by state.

The batcher runs in the ingest store thread, between telemetry batches. With a
``budget_secs``, one tick stops after that long (having made at least one batch)
and sets :attr:`CommitmentBatcher.behind`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine

from backend.domain.actions import FLEET, AnchorDisclosures, CommitBatch
from backend.oracle.metrics import Metrics
from backend.oracle.metrics import metrics as default_metrics
from backend.sharing import disclosures
from backend.store import repositories as repo
from backend.store.db import session_factory
from backend.store.locks import FLEET_BATCH, lock_for_transaction
from backend.telemetry.fleet import fleet_tree

log = logging.getLogger(__name__)


class CommitmentBatcher:
    def __init__(
        self,
        engine: Engine,
        *,
        max_readings: int = 10_000,
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
            count, oldest = repo.uncommitted_summary(s)
        made = 0
        while count >= self.max_readings or (
            count > 0 and oldest is not None and (flush or now - oldest >= self.max_age)
        ):
            if (
                self.budget is not None
                and not flush
                and made
                and (time.monotonic() - started >= self.budget)
            ):
                self.behind = True
                return made
            taken = self._commit_one(now)
            if taken == 0:
                break
            made += 1
            count -= taken
        return made

    def _commit_one(self, now: float) -> int:
        with self.sessions() as s, s.begin():
            # several oracles: one cuts a batch at a time (batchSeq = the newest + 1)
            lock_for_transaction(s, FLEET_BATCH, [0])
            rows = repo.take_uncommitted(s, self.max_readings)
            if not rows:
                return 0
            ids = [i for i, _, _, _ in rows]
            tree = fleet_tree([(o, d, g) for _, o, d, g in rows])
            batch_seq = repo.last_batch_seq(s) + 1
            repo.add_commitment(s, batch_seq=batch_seq, root=tree.root, reading_ids=ids, now=now)
            repo.enqueue(
                s,
                CommitBatch(order_id=FLEET, batch_seq=batch_seq, root=tree.root, count=len(ids)),
                now=now,
            )
            # the disclosure log's head, anchored with the commitment when it moved on
            # since the last anchor (the dedup key holds its seq: queued once per head)
            head = disclosures.head(s)
            if head.seq > 0:
                repo.enqueue(
                    s,
                    AnchorDisclosures(order_id=FLEET, head_seq=head.seq, head_hash=head.hash),
                    now=now,
                )
        self.metrics.commitments.inc()
        orders = len({o for _, o, _, _ in rows})
        log.info("fleet batch %d commits %d readings of %d orders", batch_seq, len(ids), orders)
        return len(ids)
