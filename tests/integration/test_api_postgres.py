"""The API on PostgreSQL: the session's migrated schema, emptied before each test, the
chain-backed app, reads with filters/paging/proofs and a write that the indexer brings
back."""

# ruff: noqa: F811  (the tests/api fixtures are imported and then requested by name)
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.api.parties import PartyRegistry
from backend.telemetry import reading_digest, verify_proof
from backend.telemetry.fleet import fleet_leaf
from testkit.api_seed import DOMAIN, ETHER, seed
from tests.api.conftest import Api, ChainApi
from tests.conftest import migrated_empty_engine

pytestmark = pytest.mark.integration

# The chain-backed API fixtures of tests/api, on PostgreSQL instead of SQLite.
from tests.api.conftest import (  # noqa: E402,F401
    api,
    chain_api,
    factory,
    parties,
    settings,
)


@pytest.fixture
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from migrated_empty_engine("postgresql", request, tmp_path)


def test_reads_on_postgres(
    api: Api, factory: sessionmaker[Session], parties: PartyRegistry
) -> None:
    with factory() as s:
        assert s.get_bind().dialect.name == "postgresql"
    seeded = seed(factory, parties, readings=40, committed=33)
    mine = api.get("/orders", "buyer", params={"state": "Shipped"}).json()
    assert [o["id"] for o in mine["data"]] == [1]
    assert mine["data"][0]["terms"]["price"] == str(10 * ETHER)  # NUMERIC(78,0) round trip
    page = api.get("/orders/1/telemetry", params={"limit": 10, "offset": 30}).json()
    assert [r["seq"] for r in page["data"]] == list(range(30, 40)) and page["count"] == 40
    for seq in (0, 17, 32):
        proof = api.get(f"/orders/1/readings/{seeded.device}/{seq}/proof").json()
        leaf = fleet_leaf(1, seeded.device, reading_digest(seeded.readings[seq], DOMAIN), seq)
        root = bytes.fromhex(proof["root"][2:])
        assert verify_proof([bytes.fromhex(p[2:]) for p in proof["reading_proof"]], root, leaf)
    assert api.get("/orders/2", "buyer").status_code == 404
    assert api.get("/account", "supplier").json()["credits"][0]["amount"] == str(7 * ETHER)


def test_write_then_read_on_postgres(chain_api: ChainApi) -> None:
    api = chain_api
    supplier = api.stack.accounts.supplier.address
    r = api.call(
        "POST",
        "/orders",
        "buyer",
        json={"supplier": supplier, "terms": api.terms_json(), "fund": True},
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["order"]["id"]
    assert (
        api.call("POST", f"/orders/{order_id}/accept", "supplier").json()["order"]["state"]
        == "Funded"
    )
    r = api.call("POST", f"/orders/{order_id}/cancel", "supplier")
    assert r.status_code == 200 and r.json()["order"]["state"] == "Cancelled"
    listed = api.call("GET", "/orders", "auditor", params={"state": "Cancelled"}).json()
    assert order_id in [o["id"] for o in listed["data"]]
    refund = api.call("POST", "/account/withdraw", "buyer", json={})
    assert refund.status_code == 200 and int(refund.json()["amount"]) == 10 * ETHER


def test_epcis_export_and_capture_on_postgres(
    api: Api, factory: sessionmaker[Session], parties: PartyRegistry
) -> None:
    from backend.sharing.schema import load_schema
    from backend.store import repositories as repo
    from tests.api.test_epcis import DEPLOYMENT, capture, document, receiving

    seed(factory, parties, readings=30, committed=20)
    with factory.begin() as s:
        repo.set_cursor(s, "chain", 10, deployment=DEPLOYMENT)
    schema = load_schema(api.context.settings.EPCIS_SCHEMA_DIR)
    r = capture(api, document(receiving()), who="supplier")
    assert r.status_code == 201, r.text
    [ref] = r.json()["captured"]
    again = capture(api, document(receiving()), who="buyer")
    assert again.status_code == 200 and again.json()["duplicates"] == [ref]
    doc = api.get("/orders/1/epcis").json()
    assert schema.violations(doc) == []
    events = doc["epcisBody"]["eventList"]
    assert [e["bizStep"] for e in events] == ["shipping", "sensor_reporting", "receiving"]
    assert events[-1]["eventID"] == ref["event_id"]  # JSON column round trip on PostgreSQL
    listed = api.get("/orders/1/epcis/events").json()
    assert listed["count"] == 1 and listed["data"][0]["event"] == events[-1]


def test_the_hot_reads_run_outside_a_transaction_on_postgres(
    api: Api, factory: sessionmaker[Session], parties: PartyRegistry
) -> None:
    """A read route's queries run with no transaction open (no BEGIN and ROLLBACK round
    trips: backend.api.context.reading_sessions); any other session keeps its own."""
    from psycopg.pq import TransactionStatus
    from sqlalchemy import event

    from backend.api import queries

    seed(factory, parties, readings=40, committed=33)
    engine = factory.kw["bind"]
    states: list[TransactionStatus] = []

    def before(conn: Any, *_: Any) -> None:
        states.append(conn.connection.dbapi_connection.info.transaction_status)

    event.listen(engine, "before_cursor_execute", before)
    try:
        page = api.get("/orders/1/telemetry", "buyer", params={"limit": 10}).json()
        read, states[:] = states[:], []
        with factory() as s:
            queries.readings(s, 1, limit=10)
        other = states[:]
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert page["count"] == 40 and len(read) == 3  # the order, the page, the count
    assert set(read) == {TransactionStatus.IDLE}
    assert other[0] == TransactionStatus.IDLE and set(other[1:]) == {TransactionStatus.INTRANS}
