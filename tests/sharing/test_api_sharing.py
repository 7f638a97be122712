"""The sharing policy through the API, on SQLite and PostgreSQL: a party in another
jurisdiction sees low data, is refused medium data (403 naming the class and the rule)
until the owner grants it, never receives high data; every grant use is in
``GET /disclosures`` and its chain verifies; expiry and revoke close the door again;
the alert stream is filtered the same way. Then the matrix class × role × same/other
jurisdiction × grant state through the API."""

# ruff: noqa: F811  (the tests/api fixtures are imported and then requested by name)
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session, sessionmaker

from backend.api.context import ApiContext
from backend.api.parties import Party, PartyRegistry, dev_api_key
from backend.api.sharing import pseudonyms_for
from backend.domain.sensitivity import HIGH, LOW, MEDIUM, Coarsening, Owner
from backend.sharing.policy import Outcome, coarsen
from backend.store.models import GrantRow
from testkit.api_seed import Seeded, seed
from tests.api.conftest import (  # noqa: F401
    Api,
    api,
    factory,
    headers,
    parties,
    settings,
)
from tests.api.test_alert_stream import add_alert, frames
from tests.api.uvicorn_thread import ServerThread
from tests.conftest import migrated_empty_engine
from tests.sharing.test_policy import GRANT_STATES, ROLES, expected

OVERSEAS = {"X-API-Key": dev_api_key("overseas-auditor")}
NOW = 1_900_000_000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from migrated_empty_engine(request.param, request, tmp_path)


@pytest.fixture
def seeded(api: Api, factory: sessionmaker[Session], parties: PartyRegistry) -> Seeded:
    api.context.clock = lambda: NOW
    return seed(factory, parties)


def call(api: Api, method: str, path: str, who: dict[str, str] | str, **kw: Any) -> Any:
    h = headers(who) if isinstance(who, str) else who
    return api.client.request(method, path, headers=h, **kw)


def refused(r: Any) -> dict[str, Any]:
    assert r.status_code == 403, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == "policy_refused"
    assert body["sensitivity"] == "medium"
    assert body["policy"] == "medium-cross-border-needs-approved-grant"
    return body


def ask(api: Api, order_id: int = 1) -> int:
    r = call(
        api,
        "POST",
        f"/orders/{order_id}/grants",
        OVERSEAS,
        json={"sensitivity": "medium", "reason": "customs audit"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "requested" and r.json()["grantee_jurisdiction"] == "US"
    return int(r.json()["id"])


def approve(api: Api, grant_id: int, who: dict[str, str] | str, expires_at: int) -> Any:
    """``who`` approves the grant until ``expires_at``: the API's answer."""
    return call(api, "POST", f"/grants/{grant_id}/approve", who, json={"expires_at": expires_at})


def test_low_flows_medium_is_refused_until_granted_high_never_leaves(
    api: Api, seeded: Seeded
) -> None:
    # low: the order's state and outcome; its medium fields are withheld and it says so
    r = call(api, "GET", "/orders/1", OVERSEAS)
    assert r.status_code == 200, r.text
    order = r.json()
    assert order["state"] == "Shipped" and order["terms"] is None and order["buyer"] is None
    withheld = {(x["path"], x["action"], x["sensitivity"]) for x in order["policy"]["redactions"]}
    assert ("terms", "withheld", "medium") in withheld
    assert order["policy"]["viewer_jurisdiction"] == "US"
    # medium: telemetry, alerts, risk, devices, events' arguments
    for path in ("telemetry", "alerts", "risk", "devices", "gaps"):
        body = refused(call(api, "GET", f"/orders/1/{path}", OVERSEAS))
        assert body["args"]["order_id"] == 1
        assert "POST /orders/1/grants" in body["message"]
    events = call(api, "GET", "/orders/1/events", OVERSEAS).json()
    assert events["data"] and all(e["args"] is None for e in events["data"])
    # a list across orders leaves the order's alerts out, and says so
    alerts = call(api, "GET", "/alerts", OVERSEAS).json()
    assert all(a["order_id"] != 1 for a in alerts["data"])
    assert any(x["action"] == "left_out" for x in alerts["policy"]["redactions"])
    # at home nothing changes: the EU auditor reads all of it, with no statement
    home = call(api, "GET", "/orders/1/telemetry", "auditor").json()
    assert home["data"][0]["device"] == seeded.device and "policy" not in home

    # the request, and who may decide it
    gid = ask(api)
    assert approve(api, gid, OVERSEAS, NOW + 60).status_code == 403  # read-only
    assert approve(api, gid, "stranger", NOW + 60).status_code == 404
    assert approve(api, gid, "arbiter", NOW + 60).status_code == 404
    assert approve(api, gid, "supplier", NOW).status_code == 422
    pending = call(api, "GET", "/grants", "supplier").json()["data"]
    assert [g["id"] for g in pending] == [gid]
    refused(call(api, "GET", "/orders/1/telemetry", OVERSEAS))  # requested is not approved
    r = approve(api, gid, "supplier", NOW + 3600)
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    assert r.json()["decided_as"] == "supplier"
    assert approve(api, gid, "supplier", NOW + 60).status_code == 409

    # medium now flows; high is coarsened or withheld, and the answer says so
    r = call(api, "GET", "/orders/1/telemetry", OVERSEAS)
    assert r.status_code == 200, r.text
    page = r.json()
    first = page["data"][0]
    assert first["temperature_c" if "temperature_c" in first else "temperature_centi_c"] == 450
    overseas = api.context.parties.lookup(OVERSEAS["X-API-Key"])
    assert overseas is not None
    theirs = pseudonyms_for(api.context, overseas.viewer())
    assert first["device"] == coarsen(seeded.device, Coarsening.PSEUDONYM, theirs)
    assert first["device"] != seeded.device
    assert first["signature"] is None
    assert first["latitude_e6"] == coarsen(
        seeded.readings[0].latitude_e6, Coarsening.REGION, theirs
    )
    actions = {(x["path"].split(".")[-1], x["action"]) for x in page["policy"]["redactions"]}
    assert {
        ("device", "coarsened"),
        ("signature", "withheld"),
        ("latitude_e6", "coarsened"),
    } <= actions
    assert page["policy"]["grants_used"] == [gid]
    order = call(api, "GET", "/orders/1", OVERSEAS).json()
    assert order["terms"]["price"] and order["terms"]["dest_lat_e6"] % 1_000_000 == 0
    assert call(api, "GET", "/orders/1/alerts", OVERSEAS).status_code == 200

    # every use is in the log, the chain verifies, and who sees it
    log = call(api, "GET", "/disclosures", "supplier").json()
    assert log["count"] == 3 and log["verification"]["ok"] is True
    assert {
        (e["order_id"], e["grant_id"], e["viewer"], e["viewer_jurisdiction"]) for e in log["data"]
    } == {(1, gid, "overseas-auditor", "US")}
    assert [e["route"] for e in log["data"]] == [
        "GET /orders/{order_id}/telemetry",
        "GET /orders/{order_id}",
        "GET /orders/{order_id}/alerts",
    ]
    assert log["verification"]["head"]["hash"] == log["data"][-1]["entry_hash"]
    assert call(api, "GET", "/disclosures", "buyer").json()["count"] == 3
    assert call(api, "GET", "/disclosures", "auditor").json()["count"] == 3
    assert call(api, "GET", "/disclosures", "arbiter").json()["count"] == 0
    assert call(api, "GET", "/disclosures", "stranger").json()["count"] == 0
    # high data inside released medium values (event arguments, alert messages, risk
    # texts) is replaced too: no device address leaves in any answer, and no party's
    # address inside a free-form value (the order's own party fields are medium: the
    # agreement names them, docs/sharing.md)
    parties_ = {
        p.address.lower() for p in api.context.parties.parties() if p.name != "overseas-auditor"
    }
    for path in ("/orders/1/events", "/orders/1/alerts", "/orders/1/risk", "/orders/1"):
        text = call(api, "GET", path, OVERSEAS).text.lower()
        banned = {seeded.device.lower()} | (parties_ if path != "/orders/1" else set())
        leaked = sorted(a for a in banned if a in text)
        assert not leaked, (path, leaked)

    # expiry closes it again
    api.context.clock = lambda: NOW + 3600
    refused(call(api, "GET", "/orders/1/telemetry", OVERSEAS))
    mine = call(api, "GET", "/grants", OVERSEAS).json()["data"]
    assert [g["state"] for g in mine] == ["expired"]
    assert call(api, "POST", f"/grants/{gid}/revoke", "supplier").status_code == 409

    # so does a revoke
    gid2 = ask(api)
    assert approve(api, gid2, "supplier", NOW + 7200).status_code == 200
    assert call(api, "GET", "/orders/1/risk", OVERSEAS).status_code == 200
    assert call(api, "POST", f"/grants/{gid2}/revoke", "supplier").json()["state"] == "revoked"
    body = refused(call(api, "GET", "/orders/1/risk", OVERSEAS))
    assert "the viewer's grant: revoked" in body["message"]
    # the first 3, the leak check's 4 reads, and the risk read under the second grant
    assert call(api, "GET", "/disclosures", "auditor").json()["count"] == 8


def test_deny_needs_a_reason_and_a_buyers_grant_covers_the_agreement_only(
    api: Api, seeded: Seeded
) -> None:
    gid = ask(api)
    r = call(api, "POST", f"/grants/{gid}/deny", "supplier", json={})
    assert r.status_code == 422
    r = call(api, "POST", f"/grants/{gid}/deny", "supplier", json={"reason": "not for this audit"})
    assert r.json()["state"] == "denied" and r.json()["decision_reason"] == "not for this audit"
    assert "grant: denied" in refused(call(api, "GET", "/orders/1/telemetry", OVERSEAS))["message"]
    gid = ask(api)
    r = approve(api, gid, "buyer", NOW + 600)
    assert r.json()["decided_as"] == "buyer"
    assert call(api, "GET", "/orders/1", OVERSEAS).json()["terms"] is not None
    refused(call(api, "GET", "/orders/1/telemetry", OVERSEAS))  # the supplier's data


def test_only_medium_is_grantable_and_a_party_at_home_needs_none(api: Api, seeded: Seeded) -> None:
    for cls in ("low", "high"):
        r = call(
            api, "POST", "/orders/1/grants", OVERSEAS, json={"sensitivity": cls, "reason": "x"}
        )
        assert (r.status_code, r.json()["code"]) == (422, "not_grantable")
    r = call(
        api, "POST", "/orders/1/grants", "auditor", json={"sensitivity": "medium", "reason": "x"}
    )
    assert (r.status_code, r.json()["code"]) == (409, "grant_not_needed")
    r = call(
        api, "POST", "/orders/2/grants", "buyer", json={"sensitivity": "medium", "reason": "x"}
    )
    assert r.status_code == 404  # not the buyer's order: as if it did not exist
    r = call(
        api,
        "POST",
        "/orders/1/grants",
        OVERSEAS,
        json={"sensitivity": "medium", "reason": "x" * 1001},
    )
    assert r.status_code == 422


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_alert_stream_is_filtered_the_same_way(
    api: Api, seeded: Seeded, factory: sessionmaker[Session]
) -> None:
    ctx = api.context
    ctx.sse_poll_seconds = 0.05
    with ServerThread(ctx) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        assert (
            client.get("/alerts/stream", params={"order_id": 1}, headers=OVERSEAS).status_code
            == 403
        )
        gid = ask(api, 2)
        r = approve(api, gid, "stranger", NOW + 600)
        assert r.status_code == 200
        with client.stream("GET", "/alerts/stream", headers=OVERSEAS) as r:
            lines = r.iter_lines()
            frames(lines, 1)  # hello
            add_alert(factory, 1, "door_open")  # medium, another jurisdiction's: left out
            granted = add_alert(factory, 2, "silence")  # order 2, under the grant
            got = frames(lines, 1)[0]
            assert got["id"] == str(granted)
    log = call(api, "GET", "/disclosures", "stranger").json()
    assert [(e["order_id"], e["grant_id"], e["route"]) for e in log["data"]] == [
        (2, gid, "GET /alerts/stream")
    ]


# --- the matrix through the API --------------------------------------------------------


def registry(role: str, jurisdiction: str) -> PartyRegistry:
    """The dev parties, with ``role``'s party (a viewer named ``viewer`` for the roles
    that own nothing) in ``jurisdiction`` and the rest in EU."""
    from backend.api.parties import dev_parties

    out = []
    for key, p in dev_parties("EU"):
        if p.name == role:
            p = Party(p.name, p.address, p.roles, p.private_key, jurisdiction)
        out.append((key, p))
    return PartyRegistry(out, "EU")


def test_policy_matrix_through_the_api(
    api: Api, seeded: Seeded, factory: sessionmaker[Session]
) -> None:
    ctx: ApiContext = api.context
    for role in ROLES:
        for jurisdiction in ("EU", "US"):
            ctx.parties = registry(role, jurisdiction)
            viewer = ctx.parties.by_name(role)
            for state in GRANT_STATES:
                with factory.begin() as s:
                    s.execute(delete(GrantRow))
                    if state != "none":
                        stored = {"expired": "approved"}.get(state, state)
                        s.add(
                            GrantRow(
                                order_id=1,
                                sensitivity="medium",
                                grantee=role,
                                grantee_address=viewer.address,
                                grantee_jurisdiction=jurisdiction,
                                reason="matrix",
                                state=stored,
                                requested_at=NOW - 100,
                                decided_by="supplier" if state != "requested" else None,
                                decided_as="supplier" if state != "requested" else None,
                                expires_at=(NOW - 1 if state == "expired" else NOW + 60)
                                if stored == "approved"
                                else None,
                            )
                        )
                case = f"{role} in {jurisdiction}, grant {state}"
                # low: the order's state, always
                r = call(api, "GET", "/orders/1", role)
                assert r.status_code == 200 and r.json()["state"] == "Shipped", case
                # medium: the readings
                want = expected(role, jurisdiction, MEDIUM, Owner.TELEMETRY, state)
                r = call(api, "GET", "/orders/1/telemetry", role)
                if want.releases:
                    assert r.status_code == 200, case
                    reading = r.json()["data"][0]
                    # high: the device identity leaves only as a pseudonym
                    high = expected(role, jurisdiction, HIGH, Owner.TELEMETRY, state)
                    exact = reading["device"] == seeded.device
                    assert exact == (high is Outcome.ALLOW), case
                else:
                    assert r.status_code == 403 and r.json()["sensitivity"] == "medium", case
                assert expected(role, jurisdiction, LOW, Owner.TELEMETRY, state) is Outcome.ALLOW
