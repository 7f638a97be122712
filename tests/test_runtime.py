"""backend.runtime: the one builder wires the indexer stage beside the oracle, and
/health reads the parts' own status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from backend.api.parties import PartyRegistry
from backend.chain.testing import Stack, device_key
from backend.core.settings import Settings
from backend.runtime import Runtime, build
from backend.telemetry import device_address


def _build(settings: Settings, stack: ExitStack, deployment: Stack, tmp_path: Path) -> Runtime:
    """The process as ``serve`` builds it, on the test chain and a SQLite file."""
    return build(
        settings,
        stack,
        chain=deployment.chain,
        deployment=deployment.deployment,
        database_url=f"sqlite:///{tmp_path / 'runtime.db'}",
        parties=PartyRegistry.from_settings(settings),
    )


@pytest.fixture
def runtime(deployment: Stack, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(_env_file=None, DEV_MODE=True, MQTT_URL="mqtt://127.0.0.1:1883")  # type: ignore[call-arg]
    with ExitStack() as stack:
        yield _build(settings, stack, deployment, tmp_path)


def test_the_builder_gives_ingest_the_indexer_as_its_follower(runtime: Runtime) -> None:
    assert runtime.oracle.follower is runtime.indexer
    assert runtime.oracle.ingestor.follower is runtime.indexer
    assert runtime.oracle.ingestor.bindings is runtime.oracle.caches.bindings
    assert runtime.oracle.rules.terms is runtime.oracle.caches.terms
    assert runtime.api is not None and runtime.api.session_factory is runtime.sessions
    assert set(runtime.api.health_checks) == {"broker", "indexer"}


def test_health_comes_from_the_parts_status(runtime: Runtime) -> None:
    indexer = runtime.indexer_health()
    assert (indexer.status, indexer.detail) == ("degraded", "no pass completed yet")
    runtime.indexer.catch_up()
    indexer = runtime.indexer_health()
    assert indexer.status == "ok"
    assert indexer.detail == f"indexed to block {runtime.chain.block_number}"
    broker = runtime.broker_health()  # not started: no connection
    assert (broker.status, broker.detail) == ("down", "not connected to 127.0.0.1:1883")


def test_what_the_indexer_stores_reaches_the_oracles_caches(
    runtime: Runtime, deployment: Stack
) -> None:
    a = deployment.accounts
    device = device_address(device_key(951))
    terms = deployment.make_terms()
    po = deployment.po
    oid = int(po.create_and_fund_order(terms, by=a.buyer, gas=3_000_000).value)
    po.accept_order(oid, by=a.supplier, gas=3_000_000)
    po.ship_order(oid, deployment.certificates(oid, [device]), by=a.supplier, gas=3_000_000)
    assert runtime.oracle.caches.bindings.orders_of(device) == frozenset()
    assert runtime.indexer.catch_up() is True
    assert runtime.oracle.caches.bindings.orders_of(device) == frozenset({oid})


def test_with_a_broker_admin_the_indexer_tells_the_api_which_orders_changed(
    deployment: Stack, tmp_path: Path
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        DEV_MODE=True,
        MQTT_URL="mqtt://127.0.0.1:1883",
        MQTT_ADMIN_URL="mqtt://broker-admin:pw@127.0.0.1:1883",
    )
    with ExitStack() as stack:
        runtime = _build(settings, stack, deployment, tmp_path)
        assert runtime.api is not None
        logins = runtime.api.broker_logins
        assert logins is not None and logins.admin.url.username == "broker-admin"
        a = deployment.accounts
        oid = int(
            deployment.po.create_and_fund_order(
                deployment.make_terms(), by=a.buyer, gas=3_000_000
            ).value
        )
        runtime.indexer.catch_up()
        assert oid in logins._changed  # the revocation worker looks at it (not started here)
