"""Shared fixtures, in layers (STYLE.md): artifacts (session) → a deployed stack
(session on eth-tester, per module on anvil) → an EVM snapshot reverted after
every test that touches the chain.

Fixtures for chain tests:

* ``chain`` — the session's eth-tester :class:`~backend.chain.Chain`.
* ``deployment`` — a :class:`~backend.chain.testing.Stack` on that chain: ``.po``,
  ``.qv``, ``.escrow``, ``.token``, ``.accounts``, ``.deployment`` (the manifest),
  ``.domain``, ``.chain``.
* ``stack`` — the same shape, parametrized over eth-tester and anvil (the anvil
  case is marked ``integration``). Use it in a contract test module to run every
  test on both backends.
* ``anvil_stack`` — a Stack on a real anvil, started fresh per module, stopped by PID.
* ``accounts`` — admin, oracle, buyer, supplier, arbiter, auditor, stranger
  (identical keys on both backends).
* ``make_terms(**overrides)`` — valid Terms relative to the active chain's time.
* ``device_key(n)`` — deterministic device private keys; ``device_address(n)``.
* ``domain`` — the EIP-712 Domain of the active stack's QualityVerification.
* ``snapshot`` — revert the active chain after the test. It is applied
  automatically to every test that uses any chain fixture above; tests that use
  none of them do not pay for it.

Fixtures for store tests:

* ``engine`` — a migrated, empty database, parametrized over SQLite and PostgreSQL
  (the PostgreSQL case is marked ``integration``); ``sqlite_engine`` — SQLite only.
  Both migrate once per session: SQLite tests get a copy of ``migrated_template``,
  PostgreSQL tests the session's migrated schema (``postgres_migrated_schema``) with
  every table emptied and its identities restarted before the test.

State created by module- or session-scoped fixtures on the session chain outlives
the module: do not assume a fresh chain (order ids keep growing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from backend.chain.artifacts import CORE_CONTRACTS, STABLECOIN, Artifact, load_artifact
from backend.chain.connection import Chain, connect
from backend.chain.contracts import Terms
from backend.chain.testing import DevAccounts, Stack, build_stack
from backend.chain.testing import device as _device_address
from backend.chain.testing import device_key as _device_key
from backend.store.db import upgrade_to_head
from backend.telemetry import Domain
from testkit.databases import (
    copy_sqlite,
    empty_tables,
    migrated_engine,
    postgres_schema,
    schema_engine,
    seal_sqlite,
)
from testkit.servers import start_anvil
from testkit.settings import dev_settings

#: fixtures whose use makes a test a chain test (snapshot/revert around it)
CHAIN_FIXTURES = frozenset(
    {"chain", "deployment", "stack", "anvil_stack", "accounts", "make_terms", "domain"}
)

#: the database backends of the ``engine`` fixture
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
]


# ---- layer 1: artifacts ------------------------------------------------------


@pytest.fixture(scope="session")
def artifacts() -> dict[str, Artifact]:
    """The compiled contracts (fails with ArtifactError's advice when missing)."""
    return {name: load_artifact(name) for name in (*CORE_CONTRACTS, STABLECOIN)}


# ---- layer 2: chains and deployed stacks -------------------------------------


@pytest.fixture(scope="session")
def chain(artifacts: dict[str, Artifact]) -> Chain:
    """The session's in-process eth-tester chain (dev accounts funded)."""
    return connect(dev_settings())


@pytest.fixture(scope="session")
def eth_stack(chain: Chain) -> Stack:
    return build_stack(chain, "eth-tester")


@pytest.fixture(scope="session")
def deployment(eth_stack: Stack) -> Stack:
    """The contracts deployed and wired on the eth-tester chain."""
    return eth_stack


@pytest.fixture(scope="module")
def anvil_stack(artifacts: dict[str, Artifact]) -> Iterator[Stack]:
    """A real anvil (fresh per module, automine), reached through the RPC_URL code path."""
    server = start_anvil()
    try:
        rpc_chain = connect(dev_settings(server.extra["url"]))
        yield build_stack(rpc_chain, "anvil")
    finally:
        server.stop()


@pytest.fixture(params=["eth-tester", pytest.param("anvil", marks=pytest.mark.integration)])
def stack(request: pytest.FixtureRequest) -> Stack:
    """A deployed stack on each backend in turn."""
    if request.param == "anvil":
        return request.getfixturevalue("anvil_stack")  # type: ignore[no-any-return]
    return request.getfixturevalue("eth_stack")  # type: ignore[no-any-return]


def _active_stack(request: pytest.FixtureRequest) -> Stack:
    """The stack this test runs against: ``stack`` if it uses it, else the eth-tester one."""
    if "stack" in request.fixturenames:
        return request.getfixturevalue("stack")  # type: ignore[no-any-return]
    if "anvil_stack" in request.fixturenames:
        return request.getfixturevalue("anvil_stack")  # type: ignore[no-any-return]
    return request.getfixturevalue("eth_stack")  # type: ignore[no-any-return]


@pytest.fixture
def accounts(request: pytest.FixtureRequest) -> DevAccounts:
    return _active_stack(request).accounts


@pytest.fixture
def domain(request: pytest.FixtureRequest) -> Domain:
    return _active_stack(request).domain


@pytest.fixture
def make_terms(request: pytest.FixtureRequest) -> Callable[..., Terms]:
    """``make_terms(price=..., delivery_deadline=...)``: valid terms between the dev buyer
    and supplier, any field overridden."""
    active = _active_stack(request)

    def make(**overrides: Any) -> Terms:
        return active.make_terms(**overrides)

    return make


@pytest.fixture(scope="session")
def device_key() -> Callable[[int], str]:
    """``device_key(n)``: a deterministic device private key (0x-hex)."""
    return _device_key


@pytest.fixture(scope="session")
def device_address() -> Callable[[int], str]:
    """``device_address(n)``: the address of ``device_key(n)``."""
    return _device_address


# ---- layer 3: per-test snapshot ----------------------------------------------


@pytest.fixture
def snapshot(request: pytest.FixtureRequest) -> Iterator[Chain]:
    """Snapshot the active chain before the test and revert it afterwards."""
    if "chain" in request.fixturenames and not (
        {"stack", "anvil_stack"} & set(request.fixturenames)
    ):
        target: Chain = request.getfixturevalue("chain")
    else:
        target = _active_stack(request).chain
    snap = target.snapshot()
    yield target
    target.revert(snap)


@pytest.fixture(autouse=True)
def _chain_isolation(request: pytest.FixtureRequest) -> None:
    """Wrap every test that uses a chain fixture in ``snapshot`` (others are untouched)."""
    if CHAIN_FIXTURES & set(request.fixturenames):
        request.getfixturevalue("snapshot")


# ---- databases -----------------------------------------------------------------


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; each test gets a copy."""
    where = tmp_path_factory.mktemp("db-template")
    with migrated_engine("sqlite", where):
        pass
    return seal_sqlite(where / "trustship.db")


@pytest.fixture(scope="session")
def postgres_migrated_schema() -> Iterator[str]:
    """A PostgreSQL schema migrated to head once per session, dropped at its end."""
    with postgres_schema() as schema:
        migrating = schema_engine(schema)
        try:
            upgrade_to_head(migrating)
        finally:
            migrating.dispose()
        yield schema


def migrated_empty_engine(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Engine]:
    """A migrated database with no rows: a copy of the SQLite template, or the session's
    PostgreSQL schema emptied."""
    if backend == "sqlite":
        eng = copy_sqlite(request.getfixturevalue("migrated_template"), tmp_path / "trustship.db")
    else:
        eng = schema_engine(request.getfixturevalue("postgres_migrated_schema"))
        empty_tables(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database on each backend in turn."""
    yield from migrated_empty_engine(request.param, request, tmp_path)


@pytest.fixture
def sqlite_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty SQLite database."""
    yield from migrated_empty_engine("sqlite", request, tmp_path)
