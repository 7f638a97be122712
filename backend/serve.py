"""``trustship serve``: the REST API, the oracle and the chain indexer in one process.

Start-up, in order: settings (placeholder secrets refused outside dev mode), the
API parties, the chain, the deployment (the manifest at ``DEPLOYMENT_FILE``; in
dev mode deployed when missing); then :func:`backend.runtime.build` wires the
database (migrated to head), the indexer, the oracle service (MQTT ingest, rules,
commitments, outbox) and the API's context; then uvicorn on
``API_HOST:API_PORT``. SIGINT/SIGTERM stop uvicorn (open event streams end
first), then the oracle, then the indexer, then the database.

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
from contextlib import ExitStack
from pathlib import Path

from backend.api.parties import PartyRegistry
from backend.chain.connection import Chain, connect
from backend.chain.deploy import Deployment, deploy_all, load_deployment
from backend.core.errors import ConfigurationError
from backend.core.logging import configure_logging
from backend.core.settings import Settings, get_settings
from backend.oracle.service import OracleConfig
from backend.runtime import Runtime, build

log = logging.getLogger(__name__)

#: The indexer's poll interval when it runs beside the API (writes wait for it).
INDEXER_POLL_SECS = 0.2


def _database_url(settings: Settings, embedded_chain: bool, stack: ExitStack) -> str | None:
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
    return url


def _deployment(settings: Settings, chain: Chain) -> Deployment:
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


def _check_epcis_schemas(settings: Settings) -> None:
    """Say at startup when EPCIS capture and export cannot work (docs/epcis.md)."""
    from backend.api.epcis import check_schema_dir

    problem = check_schema_dir(settings)
    if problem is None:
        log.info("EPCIS 2.0: GS1's schemas from %s", settings.EPCIS_SCHEMA_DIR)
    else:
        log.warning("EPCIS 2.0 export and capture answer 503 until this is fixed: %s", problem)


def build_serve(settings: Settings, stack: ExitStack) -> Runtime:
    """API + oracle + indexer for ``trustship serve`` (not started); cleanup on ``stack``.

    The choices that are serve's own, before :func:`backend.runtime.build` wires the
    rest: public keys (and the dev pseudonym key) refused outside dev mode and the
    parties read before anything connects; an in-process chain gets its contracts
    deployed and a fresh database; a real one uses the manifest (deployed and written
    in dev mode when missing).
    """
    settings.check_secrets()
    settings.check_pseudonym_key()
    parties = PartyRegistry.from_settings(settings)
    chain = connect(settings)
    database_url = _database_url(settings, chain.kind == "eth-tester", stack)
    deployment = _deployment(settings, chain)
    config = OracleConfig.from_settings(settings, indexer_poll_secs=INDEXER_POLL_SECS)
    return build(
        settings,
        stack,
        chain=chain,
        deployment=deployment,
        database_url=database_url,
        oracle_config=config,
        parties=parties,
    )


def serve(settings: Settings | None = None) -> None:
    """Run API + oracle + indexer until SIGINT/SIGTERM."""
    import uvicorn

    from backend.api.app import create_app
    from backend.api.server import ApiServer

    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL)
    with ExitStack() as stack:
        runtime = build_serve(settings, stack)
        context = runtime.api
        assert context is not None  # built with parties
        runtime.start()
        stack.callback(runtime.stop)
        app = create_app(context)
        _print_parties(context.parties, settings)
        _check_epcis_schemas(settings)
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
