"""``trustship serve``: the REST API, the oracle and the chain indexer in one process.

Start-up, in order: settings (placeholder secrets refused outside dev mode), the
API parties, the database (migrated to head), the chain, the deployment (the
manifest at ``DEPLOYMENT_FILE``; in dev mode deployed when missing), the oracle
service (MQTT ingest, rules, commitments, outbox, indexer), then uvicorn on
``API_HOST:API_PORT``. SIGINT/SIGTERM stop uvicorn (open event streams end
first), then the oracle, then the chain connection.

With ``RPC_URL`` unset the chain is an in-process eth-tester that lives and dies
with this process; its contracts are deployed at start and, unless
``DATABASE_URL`` is set, the database is a fresh SQLite file in a temp dir, so
indexed state never outlives the chain it describes.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from backend.api.context import ApiContext, api_engine
from backend.api.parties import PartyRegistry
from backend.api.schemas import ComponentHealth
from backend.core.errors import ConfigurationError
from backend.core.logging import configure_logging
from backend.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: How long a write waits for the indexer to reach its block before answering.
INDEX_WAIT_SECS = 10.0
#: The indexer's poll interval when it runs beside the API (writes wait for it).
INDEXER_POLL_SECS = 0.2


def wait_for_index(
    session_factory: Any, *, name: str = "chain", timeout: float = INDEX_WAIT_SECS
) -> Callable[[int], None]:
    """An ``after_tx`` hook: wait until the indexer has stored ``block``.

    The indexer thread owns indexing; the API only waits for its cursor, so two
    threads never index the same page.
    """
    from backend.store import repositories as repo

    def wait(block: int) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with session_factory() as session:
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


def _database(settings: Settings, embedded_chain: bool, stack: ExitStack) -> Engine:
    from backend.store.db import upgrade_to_head

    url = settings.DATABASE_URL
    if embedded_chain and not url:
        tmp = Path(tempfile.mkdtemp(prefix="trustship-serve-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        url = f"sqlite:///{tmp / 'trustship.db'}"
        log.info("embedded chain: indexing into a fresh database %s", url)
    elif embedded_chain:
        log.warning(
            "RPC_URL is unset (in-process chain) but DATABASE_URL is set: rows from an earlier "
            "chain in that database will not match this one"
        )
    engine = api_engine(url)
    stack.callback(engine.dispose)
    upgrade_to_head(engine)
    return engine


def _deployment(settings: Settings, chain: Any) -> Any:
    from backend.chain.deploy import deploy_all, load_deployment

    if chain.kind == "eth-tester":
        log.info("deploying the contracts on the in-process chain")
        return deploy_all(chain)
    path = settings.DEPLOYMENT_FILE
    if path.exists():
        return load_deployment(path, chain)
    if not settings.DEV_MODE:
        raise ConfigurationError(
            f"no deployment manifest at {path}: run `trustship deploy` first "
            "(or set DEPLOYMENT_FILE)"
        )
    log.info("dev mode: no manifest at %s, deploying", path)
    return deploy_all(chain, write_to=path)


def _broker_health(oracle: Any) -> Callable[[], ComponentHealth]:
    def check() -> ComponentHealth:
        sub = oracle.subscriber
        if sub is None:
            return ComponentHealth(status="disabled", detail="oracle runs without MQTT")
        where = f"{sub.host}:{sub.port}"
        if not sub.client.is_connected():
            return ComponentHealth(status="down", detail=f"not connected to {where}")
        if not sub.subscribed.is_set():
            return ComponentHealth(status="degraded", detail=f"connected to {where}, subscribing")
        return ComponentHealth(status="ok", detail=f"subscribed at {where}")

    return check


def _print_parties(parties: PartyRegistry, settings: Settings) -> None:
    """Dev mode: the API keys and custodial accounts (they are public dev values)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"TrustShip API on http://{settings.API_HOST}:{settings.API_PORT}")
    table.add_column("X-API-Key")
    table.add_column("party")
    table.add_column("roles")
    table.add_column("account")
    for key, party in parties.listing():
        shown = key if settings.DEV_MODE and settings.API_KEYS is None else key[:4] + "…"
        table.add_row(shown, party.name, ", ".join(sorted(party.roles)), party.address)
    Console(stderr=True, width=160).print(table)


def build(settings: Settings, stack: ExitStack) -> tuple[ApiContext, Any]:
    """The API context and the oracle (not started); cleanup goes on ``stack``."""
    from backend.api.custody import Custodian
    from backend.api.metrics import Metrics as ApiMetrics
    from backend.chain.connection import connect
    from backend.chain.contracts import Contracts
    from backend.chain.guard import ChainGuard
    from backend.core.metrics import Registry
    from backend.store.db import session_factory

    settings.check_secrets()
    parties = PartyRegistry.from_settings(settings)
    chain = connect(settings)
    close = getattr(chain, "close", None)
    if callable(close):
        stack.callback(close)
    engine = _database(settings, chain.kind == "eth-tester", stack)
    deployment = _deployment(settings, chain)
    contracts = Contracts.from_deployment(chain, deployment)
    sessions = session_factory(engine)
    guard = ChainGuard(chain, deployment)
    registry = Registry()  # one for the API's and the oracle's metrics: one /metrics

    oracle = None
    health_checks: dict[str, Callable[[], ComponentHealth]] = {}
    try:
        from backend.oracle.metrics import Metrics as OracleMetrics
        from backend.oracle.service import Oracle, OracleConfig
    except ImportError:  # pragma: no cover - the oracle ships with the backend
        log.warning("backend.oracle.service is not available: serving the API without the oracle")
    else:
        config = OracleConfig.from_env(settings)
        config.indexer_poll_secs = INDEXER_POLL_SECS
        oracle = Oracle(
            engine,
            contracts.quality.domain(),
            config,
            chain=chain,
            contracts=contracts,
            oracle_account=chain.accounts.oracle,
            start_block=deployment.block_number,
            guard=guard,
            metrics=OracleMetrics(registry),
        )
        health_checks["broker"] = _broker_health(oracle)
    custodian = Custodian(
        chain,
        contracts.purchase_orders,
        contracts.escrow,
        after_tx=wait_for_index(sessions) if oracle is not None else None,
        guard=guard,
    )
    context = ApiContext(
        settings=settings,
        session_factory=sessions,
        parties=parties,
        custodian=custodian,
        health_checks=health_checks,
        verifying_contract=contracts.quality.address,
        chain_id=chain.chain_id,
        deployment=deployment,
        oracle_clock=oracle.ingestor.clock if oracle is not None else None,
        refusals=oracle.ingestor.refusals.for_order if oracle is not None else None,
        metrics=ApiMetrics(registry),
    )
    return context, oracle


def serve(settings: Settings | None = None) -> None:
    """Run API + oracle + indexer until SIGINT/SIGTERM."""
    import uvicorn

    from backend.api.app import create_app
    from backend.api.server import ApiServer

    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL)
    with ExitStack() as stack:
        context, oracle = build(settings, stack)
        if oracle is not None:
            oracle.start()
            stack.callback(oracle.stop)
        app = create_app(context)
        _print_parties(context.parties, settings)
        config = uvicorn.Config(
            app,
            host=settings.API_HOST,
            port=settings.API_PORT,
            workers=1,
            log_config=None,  # keep the process's logging set-up
            timeout_graceful_shutdown=10,
        )
        # uvicorn handles SIGINT/SIGTERM while it runs (ApiServer ends open event streams
        # first) and re-raises the signal afterwards to the handler installed before it:
        # ours only notes it, so the oracle and the database still shut down in order.
        received: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _frame: received.append(signum))
        ApiServer(config, context).run()
        why = f"signal {received[0]}" if received else "server exit"
        log.info("API stopped (%s); stopping the oracle", why)
