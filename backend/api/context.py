"""What the app runs against: settings, database, parties, chain, metrics.

:func:`backend.api.app.create_app` takes an :class:`ApiContext`, so tests build
one around an eth-tester deployment and a SQLite or PostgreSQL database, and
``trustship serve`` builds one from the environment (backend/serve.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.api.metrics import Metrics
from backend.api.parties import PartyRegistry
from backend.core.settings import Settings
from backend.sharing.policy import PlanMemo
from backend.store.db import make_engine

if TYPE_CHECKING:
    from backend.api.broker_logins import BrokerLogins
    from backend.api.custody import Custodian
    from backend.api.schemas import ComponentHealth
    from backend.chain.deploy import Deployment

HealthCheck = Callable[[], "ComponentHealth"]


class RefusalRecord(Protocol):
    """What the oracle refused of one device on one order (backend.oracle.ingest)."""

    @property
    def order_id(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def by_reason(self) -> dict[str, int]: ...
    @property
    def last_reason(self) -> str: ...
    @property
    def last_message(self) -> str: ...


@dataclass
class ApiContext:
    """Everything a request handler may touch (one per app)."""

    settings: Settings
    session_factory: sessionmaker[Session]
    parties: PartyRegistry
    #: Sends transactions as the calling party; None = a read-only API (writes → 503).
    custodian: Custodian | None = None
    #: Issues parties' read-only broker logins (``MQTT_ADMIN_URL``); None → 503.
    broker_logins: BrokerLogins | None = None
    #: Extra health checks by component name (``broker``, ``oracle`` ...).
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    #: QualityVerification's address, for the EIP-712 domain of proofs.
    verifying_contract: str | None = None
    chain_id: int | None = None
    #: The deployment manifest (addresses, start block, token), served on /deployment.
    deployment: Deployment | None = None
    #: The oracle's clock (the later of wall time and indexed chain time), if it runs here.
    oracle_clock: Callable[[], int] | None = None
    #: What the oracle refused per device of an order, if it runs here (in memory only).
    refusals: Callable[[int], Sequence[RefusalRecord]] | None = None
    #: Alert stream: how often to look for new alerts, and the heartbeat interval.
    sse_poll_seconds: float = 0.5
    sse_heartbeat_seconds: float = 15.0
    #: The sharing policy's clock (grant expiry, disclosure times): unix seconds.
    clock: Callable[[], float] = time.time
    #: The sharing policy's plans that hold across requests (backend.sharing.policy).
    policy_plans: PlanMemo = field(default_factory=PlanMemo)
    #: Set when the app shuts down, so open event streams end promptly.
    stopping: threading.Event = field(default_factory=threading.Event)
    #: Sessions for work that only reads (the read routes, the sharing filter's
    #: lookups): :func:`reading_sessions` of ``session_factory``.
    read_sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.read_sessions = reading_sessions(self.session_factory)


def reading_sessions(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions like ``factory``'s for work that only reads. On PostgreSQL they run
    without a transaction (AUTOCOMMIT): no ``BEGIN`` and ``ROLLBACK`` round trips
    around a request's queries (a page of orders 2.8 → 1.9 ms, bench/api.py's data,
    in process). Under READ COMMITTED, PostgreSQL's default and this project's, each
    statement reads a snapshot of its own inside a transaction too, so an answer
    reads what it read before. On SQLite ``factory`` itself: switching a connection
    to autocommit and back costs more there (+130 µs a request) than the
    transaction. A write in such a session would commit at once: none is made."""
    bind = getattr(factory, "kw", {}).get("bind")  # (an app for the schema alone has none)
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
        return factory
    kw = {k: v for k, v in factory.kw.items() if k != "bind"}
    return sessionmaker(bind=bind.execution_options(isolation_level="AUTOCOMMIT"), **kw)


#: anyio's default worker-thread limit, which bounds concurrent sync route handlers.
THREADPOOL_SIZE = 40


def api_engine(url: str | None) -> Engine:
    """An engine sized for the API: one pooled connection per worker thread.

    SQLAlchemy's default pool (5 + 10 overflow) would open and close overflow
    connections under load, and each new SQLite connection runs its PRAGMAs.
    """
    return make_engine(
        url, ping="idle", pool_size=THREADPOOL_SIZE, max_overflow=10, pool_recycle=3600
    )
