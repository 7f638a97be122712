"""The API's reads on a real PostgreSQL whose server drops the API's connections
(``pg_terminate_backend``, what a restart or an idle timeout does to them).

The API's engine pings a pooled connection only after it sat idle
(backend.store.db, ``ping="idle"``): a connection dropped while idle is replaced
before any statement fails; one dropped while in constant use fails one statement,
which replaces every pooled connection opened before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

import backend.store.db as db
from backend.api.app import create_app
from backend.api.context import ApiContext, api_engine
from backend.api.parties import PartyRegistry
from backend.core.settings import Settings
from backend.store import session_factory
from testkit.api_seed import seed
from testkit.databases import POSTGRES_URL, postgres_schema, schema_url

pytestmark = pytest.mark.integration

POOLED = 3  # connections the pool holds when the server drops them


@pytest.fixture
def app_name() -> str:
    return f"trustship-api-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def engine(app_name: str) -> Iterator[Engine]:
    with postgres_schema("trustship_dropped_") as schema:
        engine = api_engine(f"{schema_url(schema)}&application_name={app_name}")
        db.upgrade_to_head(engine)
        yield engine
        engine.dispose()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    settings = Settings(DEV_MODE=True, API_KEYS=None, RPC_URL=None, _env_file=None)  # type: ignore[call-arg]
    parties = PartyRegistry.from_settings(settings)
    factory = session_factory(engine)
    seed(factory, parties)
    context = ApiContext(settings=settings, session_factory=factory, parties=parties)
    with TestClient(create_app(context), raise_server_exceptions=False) as c:
        c.headers["X-API-Key"] = "dev-buyer"
        assert c.get("/orders/1").status_code == 200
        with ExitStack() as held:  # the pool opens POOLED connections, all checked in after
            for _ in range(POOLED):
                held.enter_context(engine.connect()).execute(text("SELECT 1"))
        assert engine.pool.checkedin() == POOLED
        yield c


def drop_connections(app_name: str) -> int:
    """The server ends every backend of the API's connections; how many it ended."""
    admin = db.make_engine(POSTGRES_URL)
    try:
        with admin.connect() as conn:
            ended = conn.execute(
                text(
                    # (the timeout: wait until each backend has gone, up to 10 s)
                    "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": app_name},
            ).scalar_one()
    finally:
        admin.dispose()
    return int(ended)


def statuses(client: TestClient, n: int) -> list[int]:
    return [
        client.get(path).status_code
        for path in ["/orders/1", "/orders?limit=5", "/orders/1/telemetry?limit=5"] * n
    ]


def test_connections_dropped_while_idle_are_replaced_before_a_read_fails(
    client: TestClient, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # every pooled connection is idle
    assert drop_connections(app_name) == POOLED
    assert statuses(client, 4) == [200] * 12


def test_connections_dropped_in_constant_use_fail_one_read_then_all_are_replaced(
    client: TestClient, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a ping the first read on a dropped connection fails (500); that
    failure replaces all three (each reconnects at its next checkout), so the next
    reads succeed, the ones on the other two dropped connections too."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 3600.0)  # no connection counts as idle
    assert drop_connections(app_name) == POOLED
    got = statuses(client, 4)
    assert got == [500] + [200] * 11, got
