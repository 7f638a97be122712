"""The one builder: chain, database, indexer, oracle and (optionally) the REST API,
wired from one :class:`~backend.core.settings.Settings`.

Every process that runs the oracle is built here: ``trustship serve``
(backend/serve.py, with the API), ``trustship demo``/``replay`` (trustship/stack.py,
with parts it made itself: the embedded eth-tester chain, an in-process broker, a
SQLite file in a temp dir) and ``python -m backend.oracle``. A caller passes what it
has already built and the builder makes the rest from the settings::

    with ExitStack() as stack:
        runtime = build(settings, stack)           # nothing started yet
        runtime.start()                            # indexer pass, oracle, indexer thread
        stack.callback(runtime.stop)

The stages, in the order a reading meets them: the oracle (subscriber → ingest →
rules → outbox → chain) and the indexer (chain events → database), each built
with what it needs. Ingest depends on the indexer only through
:class:`~backend.oracle.ingest.ChainFollower` (its clock and ``catch_up()``); the
indexer reports what it stored through the callbacks of the oracle's
:class:`~backend.oracle.service.ChainCaches`. Nothing is patched after construction.
``/health`` reads the parts' own status methods (:meth:`Runtime.broker_health`,
:meth:`Runtime.indexer_health`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.chain.connection import Chain, connect
from backend.chain.contracts import Contracts
from backend.chain.deploy import Deployment, load_deployment
from backend.chain.guard import ChainGuard
from backend.core.metrics import Registry
from backend.core.settings import Settings
from backend.indexer import ChainIndexer, IndexerThread
from backend.indexer.metrics import IndexerMetrics
from backend.oracle.chain_actions import ChainExecutor
from backend.oracle.metrics import Metrics
from backend.oracle.service import ChainCaches, Oracle, OracleConfig
from backend.store import repositories as repo
from backend.store.db import make_engine, session_factory, upgrade_to_head

if TYPE_CHECKING:  # the API's modules load only when the API is built
    from backend.api.broker_logins import BrokerLogins
    from backend.api.context import ApiContext
    from backend.api.parties import PartyRegistry
    from backend.api.schemas import ComponentHealth

log = logging.getLogger(__name__)

#: How long an API write waits for the indexer to reach its block before answering.
INDEX_WAIT_SECS = 10.0


def wait_for_index(
    sessions: sessionmaker[Session], *, name: str = "chain", timeout: float = INDEX_WAIT_SECS
) -> Callable[[int], None]:
    """An ``after_tx`` hook for the API's writes: wait until the indexer has stored
    ``block``.

    The indexer thread owns indexing; the API only waits for its cursor, so two
    threads never index the same page.
    """

    def wait(block: int) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with sessions() as session:
                cursor = repo.get_cursor(session, name)
            if cursor is not None and cursor >= block:
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "the indexer has not reached block %d after %.0f s; answering with the "
                    "state indexed so far",
                    block,
                    timeout,
                )
                return
            time.sleep(0.02)

    return wait


@dataclass
class Runtime:
    """The wired parts of one process (built by :func:`build`, not started)."""

    settings: Settings
    chain: Chain
    deployment: Deployment
    contracts: Contracts
    guard: ChainGuard
    engine: Engine
    sessions: sessionmaker[Session]
    #: The indexer stage and the thread that polls it.
    indexer: ChainIndexer
    indexer_thread: IndexerThread
    oracle: Oracle
    #: What the REST API runs against (``build(..., api=True)``), else None.
    api: ApiContext | None = None

    # ---- health, from the parts' own status ------------------------------------

    def broker_health(self) -> ComponentHealth:
        from backend.api.schemas import ComponentHealth

        status = self.oracle.broker_status()
        if status is None:
            return ComponentHealth(status="disabled", detail="oracle runs without MQTT")
        if not status.connected:
            return ComponentHealth(status="down", detail=f"not connected to {status.broker}")
        if not status.subscribed:
            return ComponentHealth(
                status="degraded", detail=f"connected to {status.broker}, subscribing"
            )
        return ComponentHealth(status="ok", detail=f"subscribed at {status.broker}")

    def indexer_health(self) -> ComponentHealth:
        from backend.api.schemas import ComponentHealth

        status = self.indexer.status()
        if status.error is not None:
            return ComponentHealth(
                status="degraded",
                detail=f"last pass failed: {status.error}"[:300]
                + (f" (indexed to block {status.block})" if status.block is not None else ""),
            )
        if status.block is None:
            return ComponentHealth(status="degraded", detail="no pass completed yet")
        return ComponentHealth(status="ok", detail=f"indexed to block {status.block}")

    # ---- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """The oracle (which first has the indexer catch up), then the indexer thread."""
        self.oracle.start()
        self.indexer_thread.start()
        if self.api is not None and self.api.broker_logins is not None:
            self.api.broker_logins.start()

    def stop(self) -> None:
        """No new messages, the batch in hand finished, the outbox, then the indexer."""
        self.oracle.stop()
        self.indexer_thread.stop()
        if self.api is not None and self.api.broker_logins is not None:
            self.api.broker_logins.stop()

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


def build(
    settings: Settings,
    stack: ExitStack,
    *,
    chain: Chain | None = None,
    deployment: Deployment | None = None,
    database_url: str | None = None,
    oracle_config: OracleConfig | None = None,
    metrics: Metrics | None = None,
    parties: PartyRegistry | None = None,
) -> Runtime:
    """Wire a process from ``settings``; cleanup (the database engine) goes on ``stack``.

    ``chain``: default :func:`~backend.chain.connection.connect` (``RPC_URL``, or an
    in-process eth-tester). ``deployment``: default the manifest at
    ``DEPLOYMENT_FILE`` (checked against the chain). ``database_url``: default
    ``DATABASE_URL``; migrated to head. ``oracle_config``: default
    :meth:`OracleConfig.from_settings` (broker, client id, share group, timing knobs).
    ``parties`` (:meth:`PartyRegistry.from_settings`, read first so that a bad key
    fails before anything connects): also build the REST API's context on the same
    engine (the custodial sender, the health checks, the oracle's metrics on
    ``/metrics``).
    """
    chain = chain if chain is not None else connect(settings)
    url = database_url if database_url is not None else settings.DATABASE_URL
    if parties is not None:
        from backend.api.context import api_engine

        engine = api_engine(url)
    else:
        engine = make_engine(url)
    stack.callback(engine.dispose)
    upgrade_to_head(engine)
    if deployment is None:
        deployment = load_deployment(settings.DEPLOYMENT_FILE, chain)
    contracts = Contracts.from_deployment(chain, deployment)
    guard = ChainGuard(chain, deployment)
    sessions = session_factory(engine)
    config = oracle_config if oracle_config is not None else OracleConfig.from_settings(settings)
    # One registry for the oracle's and the API's metrics: one /metrics shows both.
    metrics = metrics if metrics is not None else Metrics(Registry())

    caches = ChainCaches(sessions, config)
    logins = _broker_logins(settings, sessions) if parties is not None else None

    def orders_indexed(order_ids: Iterable[int]) -> None:
        ids = list(order_ids)
        caches.orders_indexed(ids)
        if logins is not None:
            logins.orders_indexed(ids)

    def rewound(fork: int) -> None:
        """The indexer found the blocks after ``fork`` replaced: every sender reads its
        nonce again, the oracle's caches forget what came from those blocks, and the
        outbox sends again what was done above the fork (``oracle`` is bound below,
        before the indexer's thread starts)."""
        chain.rewound()
        caches.rewound(fork)
        if oracle.outbox is not None:
            oracle.outbox.rewound(fork)

    indexer = ChainIndexer(
        engine,
        chain,
        contracts,
        start_block=deployment.block_number,
        page_size=config.indexer_page_size,
        confirmations=config.indexer_confirmations,
        metrics=IndexerMetrics(metrics.registry),
        on_bindings=caches.bindings_indexed,
        on_orders=orders_indexed,
        on_rewind=rewound,
        guard=guard,
    )
    oracle = Oracle(
        engine,
        contracts.quality.domain(),
        config,
        follower=indexer,
        caches=caches,
        executor=ChainExecutor(contracts, chain.accounts.oracle),
        metrics=metrics,
        guard=guard,
    )
    runtime = Runtime(
        settings=settings,
        chain=chain,
        deployment=deployment,
        contracts=contracts,
        guard=guard,
        engine=engine,
        sessions=sessions,
        indexer=indexer,
        indexer_thread=IndexerThread(indexer, config.indexer_poll_secs),
        oracle=oracle,
    )
    if parties is not None:
        runtime.api = _api_context(runtime, parties)
        runtime.api.broker_logins = logins
    return runtime


def _broker_logins(settings: Settings, sessions: sessionmaker[Session]) -> BrokerLogins | None:
    """Parties' watcher logins, when the broker's admin login is configured."""
    if settings.MQTT_ADMIN_URL is None:
        return None
    from backend.api.broker_logins import BrokerLogins
    from backend.telemetry.broker import BrokerURL
    from backend.telemetry.dynsec import BrokerAdmin

    url = BrokerURL.parse(settings.MQTT_ADMIN_URL.get_secret_value(), ca_file=settings.MQTT_CA_FILE)
    return BrokerLogins(BrokerAdmin(url), sessions)


def _api_context(runtime: Runtime, parties: PartyRegistry) -> ApiContext:
    from backend.api.context import ApiContext
    from backend.api.custody import Custodian
    from backend.api.metrics import Metrics as ApiMetrics

    custodian = Custodian(
        runtime.chain,
        runtime.contracts.purchase_orders,
        runtime.contracts.escrow,
        after_tx=wait_for_index(runtime.sessions),
        guard=runtime.guard,
    )
    context = ApiContext(
        settings=runtime.settings,
        session_factory=runtime.sessions,
        parties=parties,
        custodian=custodian,
        health_checks={"broker": runtime.broker_health, "indexer": runtime.indexer_health},
        verifying_contract=runtime.contracts.quality.address,
        chain_id=runtime.chain.chain_id,
        deployment=runtime.deployment,
        oracle_clock=runtime.oracle.ingestor.clock,
        refusals=runtime.oracle.ingestor.refusals.for_order,
        metrics=ApiMetrics(runtime.oracle.metrics.registry),  # beside ingest, rules, indexer
    )
    return context
