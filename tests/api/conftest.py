"""API test fixtures, in layers (STYLE.md "Tests").

* ``db`` — a migrated database (SQLite file; PostgreSQL under the integration mark).
* ``api`` — an app around that database and the dev parties, no chain (reads).
* ``stack`` (session) — an eth-tester chain with the contracts deployed; each test
  that uses ``chain_api`` runs inside an EVM snapshot that is reverted afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.api.app import create_app
from backend.api.context import ApiContext
from backend.api.parties import PartyRegistry
from backend.core.settings import Settings
from backend.store import session_factory
from tests.store.dbutil import migrated_engine

KEYS = {
    "buyer": "dev-buyer",
    "supplier": "dev-supplier",
    "arbiter": "dev-arbiter",
    "auditor": "dev-auditor",
    "admin": "dev-admin",
    "stranger": "dev-stranger",
}


def headers(who: str) -> dict[str, str]:
    """The X-API-Key header of a dev party, of nobody (``none``) or a wrong key (``bad``)."""
    if who == "none":
        return {}
    if who == "bad":
        return {"X-API-Key": "not-a-key"}
    return {"X-API-Key": KEYS[who]}


@pytest.fixture
def settings() -> Settings:
    return Settings(DEV_MODE=True, API_KEYS=None, RPC_URL=None, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine("sqlite", tmp_path) as engine:
        yield engine


@pytest.fixture
def factory(db: Engine) -> sessionmaker[Session]:
    return session_factory(db)


@pytest.fixture
def parties(settings: Settings) -> PartyRegistry:
    return PartyRegistry.from_settings(settings)


@dataclass
class Api:
    client: TestClient
    context: ApiContext

    def get(self, path: str, who: str = "buyer", **kw: object) -> object:
        return self.client.get(path, headers=headers(who), **kw)  # type: ignore[arg-type]


@pytest.fixture
def api(
    settings: Settings, factory: sessionmaker[Session], parties: PartyRegistry
) -> Iterator[Api]:
    context = ApiContext(settings=settings, session_factory=factory, parties=parties)
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield Api(client, context)
