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
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.api.app import create_app
from backend.api.context import ApiContext
from backend.api.custody import Custodian
from backend.api.parties import PartyRegistry
from backend.chain.testing import Stack
from backend.core.settings import Settings
from backend.domain.order import TERMS_BODY_ATTRS
from backend.indexer import ChainIndexer
from backend.store import session_factory
from testkit.api_seed import indexed
from tests.conftest import migrated_empty_engine

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
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A copy of the session's migrated SQLite template (tests/conftest.py); a test
    parametrized indirectly over ``db`` with ``"postgresql"`` gets the session's
    PostgreSQL schema, emptied."""
    yield from migrated_empty_engine(getattr(request, "param", "sqlite"), request, tmp_path)


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

    def get(self, path: str, who: str = "buyer", **kw: Any) -> Any:
        return self.client.get(path, headers=headers(who), **kw)  # type: ignore[arg-type]


@pytest.fixture
def api(
    settings: Settings, factory: sessionmaker[Session], parties: PartyRegistry
) -> Iterator[Api]:
    context = ApiContext(settings=settings, session_factory=factory, parties=parties)
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield Api(client, context)


# --- chain-backed API ----------------------------------------------------------------


@dataclass
class ChainApi:
    """An API around the session's eth-tester deployment, a fresh database and its indexer."""

    client: TestClient
    context: ApiContext
    stack: Stack
    indexer: ChainIndexer
    engine: Engine

    def call(self, method: str, path: str, who: str = "buyer", **kw: Any) -> Any:
        return self.client.request(method, path, headers=headers(who), **kw)

    def terms_json(self, **overrides: Any) -> dict[str, Any]:
        """The request's terms (the parties are the caller and ``supplier``)."""
        t = self.stack.make_terms(**overrides)
        body = {name: getattr(t, name) for name in TERMS_BODY_ATTRS}
        body["price"] = str(body["price"])
        return body

    def certificate_json(
        self, order_id: int, device_n: int, issuer_n: int = 1, **window: int
    ) -> dict[str, Any]:
        """Device ``device_n``'s certificate for ``order_id`` by issuer ``issuer_n``, as
        ``POST /orders/{id}/ship`` takes it."""
        return self.stack.certify(order_id, device_n, issuer_n, **window).as_json()

    def sync(self) -> None:
        self.indexer.run_once()


@pytest.fixture
def chain_api(
    deployment: Stack,
    settings: Settings,
    db: Engine,
    factory: sessionmaker[Session],
    parties: PartyRegistry,
) -> Iterator[ChainApi]:
    indexer = indexed(db, deployment)
    custodian = Custodian(
        deployment.chain,
        deployment.po,
        deployment.escrow,
        after_tx=lambda _block: indexer.run_once(),
    )
    context = ApiContext(
        settings=settings,
        session_factory=factory,
        parties=parties,
        custodian=custodian,
        verifying_contract=deployment.qv.address,
        chain_id=deployment.chain.chain_id,
        deployment=deployment.deployment,
        oracle_clock=lambda: indexer.chain_time or 0,
    )
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield ChainApi(client, context, deployment, indexer, db)
