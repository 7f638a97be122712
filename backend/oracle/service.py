"""The oracle as one service: subscriber → ingest worker → store/rules, plus the
commitment batcher, the silence check and the outbox executor.

Threads: paho's network loop (subscriber), the ingest worker (which also runs the
batcher and the silence check between batches: it owns the rules' in-memory
state and keeps SQLite writes in one thread) and the outbox worker.
:meth:`Oracle.stop` shuts them down in dependency order: no new messages, finish
the batch in hand, then the chain side.

The indexer is a stage of its own (``backend.indexer``): the oracle takes it as a
:class:`~backend.oracle.ingest.ChainFollower` (its clock, and a catch-up before a
refusal), and what it indexes reaches the oracle's in-memory state through
:class:`ChainCaches`. ``backend.runtime`` builds both from the settings.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.chain.guard import ChainGuard
from backend.core.settings import Settings
from backend.oracle.batcher import CommitmentBatcher
from backend.oracle.gaps import GapConfig, GapWatch
from backend.oracle.ingest import (
    BatchResult,
    BindingCache,
    ChainFollower,
    Inbound,
    IngestConfig,
    Ingestor,
    IngestWorker,
    PeriodicTask,
)
from backend.oracle.metrics import Metrics
from backend.oracle.metrics import metrics as default_metrics
from backend.oracle.outbox import ActionExecutor, OutboxWorker
from backend.oracle.receipts import ReceiptPublisher
from backend.oracle.rules import RulesConfig, RulesEngine, TermsCache, write_outputs
from backend.oracle.subscriber import SubscriberConfig, SubscriberStatus, TelemetrySubscriber
from backend.store.db import session_factory
from backend.store.locks import ORDER, lock_for_transaction
from backend.telemetry import Domain
from backend.telemetry.access import DEFAULT_SHARE_GROUP

log = logging.getLogger(__name__)


@dataclass
class OracleConfig:
    subscriber: SubscriberConfig = field(default_factory=SubscriberConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    gaps: GapConfig = field(default_factory=GapConfig)
    batch_size: int = 500
    batch_ms: float = 20.0
    commit_max_readings: int = 10_000  # one fleet root per 10,000 readings at most (docs/gas.md)
    commit_max_age_secs: float = 60.0
    batcher_interval_secs: float = 1.0
    #: Longest the batcher holds up telemetry per tick before it lets a batch through.
    batcher_budget_secs: float = 0.05
    silence_interval_secs: float = 30.0
    #: The indexer stage's (backend.runtime builds it beside the oracle).
    indexer_poll_secs: float = 1.0
    indexer_page_size: int = 2000
    indexer_confirmations: int = 0
    outbox_poll_secs: float = 0.5
    #: Orders whose chain actions run side by side (one order's stay in order): on a
    #: chain that mines every few seconds one action per block would be the limit.
    outbox_concurrency: int = 8
    #: Publish storage receipts to the devices (backend/oracle/receipts.py).
    receipts: bool = True
    #: How often the receipts gathered since the last are published.
    receipt_interval_secs: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings, **defaults: float) -> OracleConfig:
        """Defaults, with the broker from ``MQTT_URL`` (``MQTT_CA_FILE``),
        ``ORACLE_CLIENT_ID`` / ``ORACLE_SHARE_GROUP`` and the timing knobs that are set
        (``ORACLE_COMMIT_MAX_AGE_SECS`` ...: :data:`SETTINGS_KNOBS`).

        ``defaults`` replace this class's defaults of those knobs for one kind of
        process (serve polls the indexer every 0.2 s); a knob that is set still wins.
        """
        group = settings.ORACLE_SHARE_GROUP
        if group is None:
            group = DEFAULT_SHARE_GROUP
        config = cls(
            subscriber=SubscriberConfig(
                url=settings.MQTT_URL or "mqtt://127.0.0.1:1883",
                client_id=settings.ORACLE_CLIENT_ID,
                group=group or None,
                ca_file=settings.MQTT_CA_FILE,
            )
        )
        if settings.ORACLE_SESSION_EXPIRY_SECS is not None:
            config.subscriber = dataclasses.replace(
                config.subscriber, session_expiry_secs=settings.ORACLE_SESSION_EXPIRY_SECS
            )
        unknown = set(defaults) - set(SETTINGS_KNOBS.values())
        if unknown:
            raise TypeError(f"not a timing knob: {sorted(unknown)}")
        for name, attr in SETTINGS_KNOBS.items():
            value = getattr(settings, name)
            if value is None:
                value = defaults.get(attr)
            if value is not None:
                setattr(config, attr, value)
        return config


#: Settings that tune :class:`OracleConfig` (docs/oracle.md): setting → field.
SETTINGS_KNOBS: dict[str, str] = {
    "ORACLE_COMMIT_MAX_READINGS": "commit_max_readings",
    "ORACLE_COMMIT_MAX_AGE_SECS": "commit_max_age_secs",
    "ORACLE_INDEXER_POLL_SECS": "indexer_poll_secs",
    "ORACLE_INDEXER_CONFIRMATIONS": "indexer_confirmations",
    "ORACLE_OUTBOX_POLL_SECS": "outbox_poll_secs",
    "ORACLE_OUTBOX_CONCURRENCY": "outbox_concurrency",
    "ORACLE_RECEIPTS": "receipts",
    "ORACLE_RECEIPT_INTERVAL_SECS": "receipt_interval_secs",
}


class ChainCaches:
    """What the oracle keeps in memory of the indexed chain: device bindings (ingest)
    and order terms (rules). The indexer stage tells it what changed through the
    three ``*_indexed`` / :meth:`rewound` callbacks it is built with."""

    def __init__(self, sessions: sessionmaker[Session], config: OracleConfig) -> None:
        self.bindings = BindingCache(sessions, config.ingest.unknown_device_ttl_secs)
        self.terms = TermsCache(config.rules.terms_ttl_secs)

    def bindings_indexed(self, bindings: Iterable[tuple[int, str]]) -> None:
        for order_id, device in bindings:
            self.bindings.add(order_id, device)

    def orders_indexed(self, order_ids: Iterable[int]) -> None:
        for order_id in order_ids:
            self.terms.forget(order_id)

    def rewound(self, fork: int) -> None:
        """A reorganisation: bindings and terms indexed from replaced blocks are gone."""
        self.bindings.reload()
        self.terms.forget()


class Oracle:
    """Runs the oracle: ingest, rules, batcher, gap and silence checks, and (with an
    ``executor``) the outbox. ``follower`` is the indexer stage (the oracle's chain
    clock and catch-up); without one, readings are judged on what is indexed.
    ``caches`` are the ones that follower's callbacks feed (default: its own)."""

    def __init__(
        self,
        engine: Engine,
        domain: Domain,
        config: OracleConfig | None = None,
        *,
        follower: ChainFollower | None = None,
        caches: ChainCaches | None = None,
        executor: ActionExecutor | None = None,
        metrics: Metrics | None = None,
        subscribe: bool = True,
        guard: ChainGuard | None = None,
    ) -> None:
        self.config = config or OracleConfig()
        self.engine = engine
        self.metrics = metrics if metrics is not None else default_metrics
        self.sessions = session_factory(engine)
        self.caches = caches if caches is not None else ChainCaches(self.sessions, self.config)
        self.rules = RulesEngine(self.config.rules, terms=self.caches.terms)
        #: Says whether the chain still holds the deployment (None: not checked).
        self.guard = guard
        self.follower = follower
        self.ingestor = Ingestor(
            engine,
            domain,
            rules=self.rules,
            metrics=self.metrics,
            config=self.config.ingest,
            follower=follower,
            bindings=self.caches.bindings,
        )
        self.batcher = CommitmentBatcher(
            engine,
            max_readings=self.config.commit_max_readings,
            max_age_secs=self.config.commit_max_age_secs,
            metrics=self.metrics,
            budget_secs=self.config.batcher_budget_secs,
        )
        self.gaps = GapWatch(self.sessions, self.metrics, self.config.gaps)
        inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.subscriber: TelemetrySubscriber | None = (
            TelemetrySubscriber(self.config.subscriber, inbox.put) if subscribe else None
        )
        self.receipts: ReceiptPublisher | None = (
            ReceiptPublisher(
                self.subscriber.publish, self.metrics, self.config.receipt_interval_secs
            )
            if self.subscriber is not None and self.config.receipts
            else None
        )
        self.worker = IngestWorker(
            self.ingestor,
            self.subscriber.ack if self.subscriber is not None else None,
            inbox=inbox,
            batch_size=self.config.batch_size,
            batch_ms=self.config.batch_ms,
            periodic=[
                PeriodicTask("commitments", self.config.batcher_interval_secs, self._commit_tick),
                PeriodicTask("silence", self.config.silence_interval_secs, self._check_silence),
                PeriodicTask("gaps", self.config.gaps.interval_secs, self.gaps.check),
            ],
            on_batch=self._on_batch,
        )
        self.outbox = (
            OutboxWorker(
                engine,
                executor,
                poll_secs=self.config.outbox_poll_secs,
                metrics=self.metrics,
                concurrency=self.config.outbox_concurrency,
                guard=guard,
            )
            if executor is not None
            else None
        )
        self._stopped = threading.Event()
        #: Readings this process stored (the others of its share group store the rest).
        self.stored = 0

    # ---- wiring --------------------------------------------------------------

    def _on_batch(self, result: BatchResult) -> None:
        """A batch committed: its stored seqs wait for the next receipts; with new chain
        actions, the outbox looks now, not at its next poll."""
        self.stored += result.stored
        if self.receipts is not None and result.confirmed:
            self.receipts.add(result.confirmed)
        if result.actions and self.outbox is not None:
            self.outbox.wake()

    def _commit_tick(self) -> bool:
        """One batcher tick; True when it ran out of budget (due again after the next batch)."""
        made = self.batcher.tick()
        if made and self.outbox is not None:
            self.outbox.wake()
        return self.batcher.behind

    def _check_silence(self) -> None:
        with self.sessions() as s, s.begin():
            # several oracles: the orders this process evaluates (what it holds in memory)
            lock_for_transaction(s, ORDER, self.rules.loaded_orders())
            write_outputs(s, self.rules.check_silence(s))

    # ---- lifecycle -------------------------------------------------------------

    def broker_status(self) -> SubscriberStatus | None:
        """The MQTT side's status (None: this oracle does not subscribe)."""
        return self.subscriber.status() if self.subscriber is not None else None

    def start(self) -> None:
        if self.follower is not None:
            self.follower.catch_up()  # before judging readings against bindings
        n = self.ingestor.bindings.load_all()
        self.ingestor.rebalance()  # several oracles: which orders are this process's
        with self.sessions() as s:
            warm = self.rules.warm_up(s, self.ingestor.ownership.owns)
        log.info("oracle starting: %d device bindings, %d device streams loaded", n, warm)
        self.worker.start()
        if self.receipts is not None:
            self.receipts.start()
        if self.subscriber is not None:
            self.subscriber.start()
        if self.outbox is not None:
            self.outbox.start()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.subscriber is not None:
            self.subscriber.stop()  # no new messages; unacknowledged ones stay with the broker
        self.worker.stop()
        if self.receipts is not None:
            self.receipts.stop()  # (disconnected: the last ones are dropped, devices resend)
        if self.outbox is not None:
            self.outbox.stop()
        self.ingestor.ownership.close()  # its orders go to the other processes at once
        log.info(
            "oracle stopped: %d readings stored here, %d of them handed off to other "
            "processes, %d taken over from them",
            self.stored,
            self.ingestor.handed_off,
            self.ingestor.taken_over,
        )
