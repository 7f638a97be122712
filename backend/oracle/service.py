"""The oracle as one service: subscriber → ingest worker → store/rules, plus the
commitment batcher, the silence check, the chain indexer and the outbox executor.

Threads: paho's network loop (subscriber), the ingest worker (which also runs the
batcher and the silence check between batches: it owns the rules' in-memory
state and keeps SQLite writes in one thread), the indexer and the outbox worker.
:meth:`Oracle.stop` shuts them down in dependency order: no new messages, finish
the batch in hand, then the chain side.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from backend.chain.guard import ChainGuard
from backend.core.errors import ConfigurationError
from backend.core.settings import Settings, get_settings
from backend.oracle.batcher import CommitmentBatcher
from backend.oracle.gaps import GapConfig, GapWatch
from backend.oracle.ingest import (
    BatchResult,
    IngestConfig,
    Ingestor,
    IngestWorker,
    PeriodicTask,
)
from backend.oracle.metrics import Metrics
from backend.oracle.metrics import metrics as default_metrics
from backend.oracle.outbox import ActionExecutor, OutboxWorker
from backend.oracle.rules import RulesConfig, RulesEngine, write_outputs
from backend.oracle.subscriber import SubscriberConfig, TelemetrySubscriber
from backend.store.db import session_factory, upgrade_to_head
from backend.telemetry import Domain

log = logging.getLogger(__name__)


@dataclass
class OracleConfig:
    subscriber: SubscriberConfig = field(default_factory=SubscriberConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    gaps: GapConfig = field(default_factory=GapConfig)
    batch_size: int = 500
    batch_ms: float = 20.0
    commit_max_readings: int = 1000
    commit_max_age_secs: float = 60.0
    batcher_interval_secs: float = 1.0
    #: Longest the batcher holds up telemetry per tick before it lets a batch through.
    batcher_budget_secs: float = 0.05
    silence_interval_secs: float = 30.0
    indexer_poll_secs: float = 1.0
    indexer_page_size: int = 2000
    indexer_confirmations: int = 0
    outbox_poll_secs: float = 0.5
    #: Orders whose chain actions run side by side (one order's stay in order): on a
    #: chain that mines every few seconds one action per block would be the limit.
    outbox_concurrency: int = 8

    @classmethod
    def from_env(cls, settings: Settings) -> OracleConfig:
        """Defaults, with the broker from MQTT_URL, ORACLE_CLIENT_ID / ORACLE_SHARE_GROUP,
        and the timing knobs of :data:`ENV_KNOBS` (``ORACLE_COMMIT_MAX_AGE_SECS`` ...)."""
        group = os.environ.get("ORACLE_SHARE_GROUP", "trustship-oracle")
        config = cls(
            subscriber=SubscriberConfig(
                url=settings.MQTT_URL or "mqtt://127.0.0.1:1883",
                client_id=os.environ.get("ORACLE_CLIENT_ID", "trustship-oracle-1"),
                group=group or None,
            )
        )
        for name, (attr, kind) in ENV_KNOBS.items():
            raw = os.environ.get(name)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigurationError(f"{name}={raw!r} is not a number") from None
            if not value > 0:
                raise ConfigurationError(f"{name} must be positive, got {raw}")
            setattr(config, attr, value)
        return config


#: Environment variables that tune :class:`OracleConfig` for ``python -m backend.oracle``
#: (docs/oracle.md): name → (field, type).
ENV_KNOBS: dict[str, tuple[str, type[int] | type[float]]] = {
    "ORACLE_COMMIT_MAX_READINGS": ("commit_max_readings", int),
    "ORACLE_COMMIT_MAX_AGE_SECS": ("commit_max_age_secs", float),
    "ORACLE_INDEXER_POLL_SECS": ("indexer_poll_secs", float),
    "ORACLE_OUTBOX_POLL_SECS": ("outbox_poll_secs", float),
    "ORACLE_OUTBOX_CONCURRENCY": ("outbox_concurrency", int),
}


class Oracle:
    """Runs the whole oracle; without ``chain`` it only ingests (no indexer, no outbox)."""

    def __init__(
        self,
        engine: Engine,
        domain: Domain,
        config: OracleConfig | None = None,
        *,
        chain: Any = None,
        contracts: Any = None,
        oracle_account: Any = None,
        start_block: int = 0,
        executor: ActionExecutor | None = None,
        metrics: Metrics | None = None,
        subscribe: bool = True,
        guard: ChainGuard | None = None,
    ) -> None:
        self.config = config or OracleConfig()
        self.engine = engine
        self.metrics = metrics if metrics is not None else default_metrics
        self.sessions = session_factory(engine)
        self.rules = RulesEngine(self.config.rules)
        #: Says whether the chain still holds the deployment (None: not checked).
        self.guard = guard
        self.indexer = None
        self.indexer_thread = None
        if chain is not None and contracts is not None:
            from backend.indexer import ChainIndexer, IndexerThread

            self.indexer = ChainIndexer(
                engine,
                chain,
                contracts,
                start_block=start_block,
                page_size=self.config.indexer_page_size,
                confirmations=self.config.indexer_confirmations,
                metrics=self.metrics,
                on_bindings=self._on_bindings,
                on_orders=self._on_orders,
                on_rewind=self._on_rewind,
                guard=guard,
            )
            self.indexer_thread = IndexerThread(self.indexer, self.config.indexer_poll_secs)
        self.ingestor = Ingestor(
            engine,
            domain,
            rules=self.rules,
            metrics=self.metrics,
            config=self.config.ingest,
            chain_time=self._chain_time,
            catch_up=self.indexer.run_once if self.indexer is not None else None,
        )
        self.batcher = CommitmentBatcher(
            engine,
            max_readings=self.config.commit_max_readings,
            max_age_secs=self.config.commit_max_age_secs,
            metrics=self.metrics,
            budget_secs=self.config.batcher_budget_secs,
        )
        self.gaps = GapWatch(self.sessions, self.metrics, self.config.gaps)
        self.worker = IngestWorker(
            self.ingestor,
            batch_size=self.config.batch_size,
            batch_ms=self.config.batch_ms,
            periodic=[
                PeriodicTask("commitments", self.config.batcher_interval_secs, self._commit_tick),
                PeriodicTask("silence", self.config.silence_interval_secs, self._check_silence),
                PeriodicTask("gaps", self.config.gaps.interval_secs, self.gaps.check),
            ],
            on_batch=self._on_batch,
        )
        self.subscriber: TelemetrySubscriber | None = None
        if subscribe:
            self.subscriber = TelemetrySubscriber(self.config.subscriber, self.worker.submit)
            self.worker.ack = self.subscriber.ack
        if executor is None and contracts is not None and oracle_account is not None:
            from backend.oracle.chain_actions import ChainExecutor

            executor = ChainExecutor(contracts, oracle_account)
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

    # ---- wiring --------------------------------------------------------------

    def _chain_time(self) -> int | None:
        return self.indexer.chain_time if self.indexer is not None else None

    def _on_bindings(self, bindings: Any) -> None:
        for order_id, device in bindings:
            self.ingestor.bindings.add(order_id, device)

    def _on_orders(self, order_ids: Any) -> None:
        for order_id in order_ids:
            self.rules.terms.forget(order_id)

    def _on_rewind(self, fork: int) -> None:
        """A reorganisation: bindings and terms indexed from replaced blocks are gone."""
        self.ingestor.bindings.reload()
        self.rules.terms.forget()

    def _on_batch(self, result: BatchResult) -> None:
        """A batch committed with new chain actions: the outbox looks now, not at its next poll."""
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
            write_outputs(s, self.rules.check_silence(s))

    # ---- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self.indexer is not None:
            self.indexer.run_once()  # catch up before judging readings against bindings
        n = self.ingestor.bindings.load_all()
        with self.sessions() as s:
            warm = self.rules.warm_up(s)
        log.info("oracle starting: %d device bindings, %d device streams loaded", n, warm)
        self.worker.start()
        if self.subscriber is not None:
            self.subscriber.start()
        if self.indexer_thread is not None:
            self.indexer_thread.start()
        if self.outbox is not None:
            self.outbox.start()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.subscriber is not None:
            self.subscriber.stop()  # no new messages; unacknowledged ones stay with the broker
        self.worker.stop()
        if self.outbox is not None:
            self.outbox.stop()
        if self.indexer_thread is not None:
            self.indexer_thread.stop()
        log.info("oracle stopped")

    def run_forever(self) -> None:
        """Start, then block until SIGINT/SIGTERM, then stop cleanly."""
        done = threading.Event()

        def _signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            done.set()

        signal.signal(signal.SIGINT, _signal)
        signal.signal(signal.SIGTERM, _signal)
        self.start()
        try:
            done.wait()
        finally:
            self.stop()

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, config: OracleConfig | None = None, **kwargs: Any
    ) -> Oracle:
        """The oracle for the configured chain (deployment manifest), broker and database."""
        from backend.chain.connection import connect
        from backend.chain.contracts import Contracts
        from backend.chain.deploy import load_deployment

        settings = settings or get_settings()
        engine = upgrade_to_head(settings.DATABASE_URL)
        chain = connect(settings)
        deployment = load_deployment(settings.DEPLOYMENT_FILE, chain)
        contracts = Contracts.from_deployment(chain, deployment)
        return cls(
            engine,
            contracts.quality.domain(),
            config or OracleConfig.from_env(settings),
            chain=chain,
            contracts=contracts,
            oracle_account=chain.accounts.oracle,
            start_block=deployment.block_number,
            guard=ChainGuard(chain, deployment),
            **kwargs,
        )
