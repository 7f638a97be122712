"""``POST /account/mqtt-credentials`` and the revocation of watcher logins, against a
recording stand-in for the broker's admin (the real broker: tests/integration/test_watcher.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.api.broker_logins import BrokerLogins
from backend.api.parties import PartyRegistry
from backend.store import repositories as repo
from backend.store.models import OrderRow
from backend.telemetry.dynsec import watcher_order, watcher_username
from testkit.api_seed import order_values
from tests.api.broker_standin import FakeAdmin
from tests.api.conftest import Api, headers

PATH = "/account/mqtt-credentials"


@pytest.fixture
def admin(api: Api, factory: sessionmaker[Session], parties: PartyRegistry) -> FakeAdmin:
    fake = FakeAdmin()
    api.context.broker_logins = BrokerLogins(fake, factory, poll_secs=0.05)  # type: ignore[arg-type]
    p = {n: parties.by_name(n).address for n in ("buyer", "supplier", "arbiter")}
    with factory() as s:
        repo.upsert_order(s, order_values(1, p["buyer"], p["supplier"], p["arbiter"]))
        repo.upsert_order(
            s, order_values(2, p["buyer"], p["supplier"], p["arbiter"], state="Settled")
        )
        s.commit()
    return fake


def post(api: Api, body: Any, who: str = "buyer") -> Any:
    return api.client.post(PATH, json=body, headers=headers(who))


@pytest.mark.parametrize("who", ["buyer", "supplier", "arbiter", "auditor"])
def test_a_party_or_auditor_gets_a_login_for_that_order_only(
    api: Api, admin: FakeAdmin, who: str
) -> None:
    r = post(api, {"order_id": 1}, who)
    assert r.status_code == 201, r.text
    body = r.json()
    assert watcher_order(body["username"]) == 1 and admin.logins == {body["username"]: 1}
    assert body["topics"] == [
        "trustship/v1/orders/1/devices/+/telemetry",
        "trustship/v1/orders/1/devices/+/status",
    ]
    assert body["ends_with_order"] is True


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "order_id"]),
        ({"order_id": "1"}, ["body", "order_id"]),
        ({"order_id": 0}, ["body", "order_id"]),
        ({"order_id": 2**53}, ["body", "order_id"]),
        ({"order_id": 1.0}, ["body", "order_id"]),
        ({"order_id": True}, ["body", "order_id"]),
        ({"order_id": 1, "topics": ["#"]}, ["body", "topics"]),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(
    api: Api, admin: FakeAdmin, body: Any, loc: list[str]
) -> None:
    r = post(api, body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert loc in [d["loc"] for d in r.json()["details"]]
    assert admin.logins == {}


def test_no_login_for_a_stranger_an_ended_order_or_without_a_broker(
    api: Api, admin: FakeAdmin
) -> None:
    r = post(api, {"order_id": 1}, "stranger")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = post(api, {"order_id": 2})
    assert (r.status_code, r.json()["code"]) == (409, "order_ended")
    admin.fail = True
    r = post(api, {"order_id": 1})
    assert (r.status_code, r.json()["code"]) == (503, "broker_unavailable")
    assert admin.logins == {}
    api.context.broker_logins = None
    r = post(api, {"order_id": 1})
    assert (r.status_code, r.json()["code"]) == (503, "unavailable")


def test_logins_are_revoked_when_the_indexer_sees_their_order_end(
    api: Api, admin: FakeAdmin, factory: sessionmaker[Session]
) -> None:
    logins = api.context.broker_logins
    assert logins is not None
    first = post(api, {"order_id": 1}).json()["username"]
    stale = watcher_username(2)  # a login left over for an order that has ended
    admin.logins[stale] = 2
    logins.start()
    try:
        deadline = time.monotonic() + 10
        while 2 not in admin.revoked and time.monotonic() < deadline:
            time.sleep(0.02)
        assert admin.revoked == [2] and set(admin.logins) == {first}  # the start-up sweep
        logins.orders_indexed([1])  # still Shipped: nothing happens
        time.sleep(0.2)
        assert admin.revoked == [2]
        with factory() as s:
            row = s.get(OrderRow, 1)
            assert row is not None
            row.state = "Settled"
            s.commit()
        logins.orders_indexed([1])
        while 1 not in admin.revoked and time.monotonic() < deadline:
            time.sleep(0.02)
        assert admin.revoked == [2, 1] and admin.logins == {}
    finally:
        logins.stop()
