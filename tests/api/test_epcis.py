"""GET /orders/{id}/epcis and POST /epcis/capture on a seeded database (docs/epcis.md)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.api.app import create_app
from backend.api.context import ApiContext
from backend.api.parties import PartyRegistry, dev_api_key
from backend.core.settings import Settings
from backend.sharing.epcis import EPCIS_CONTEXT, Identity
from backend.sharing.schema import load_schema
from backend.store import repositories as repo
from backend.store.models import EpcisEventRow
from testkit.api_seed import DOMAIN, T0, Seeded, seed
from tests.api.conftest import Api, headers

IDENTITY = Identity(DOMAIN.chain_id, DOMAIN.verifying_contract)
DEPLOYMENT = f"{DOMAIN.chain_id}:{DOMAIN.verifying_contract}:0x{'ab' * 32}"


@pytest.fixture
def seeded(factory: sessionmaker[Session], parties: PartyRegistry) -> Seeded:
    out = seed(factory, parties, readings=12, committed=8)
    with factory.begin() as s:  # what the indexer records of the deployment it follows
        repo.set_cursor(s, "chain", 10, deployment=DEPLOYMENT)
    return out


def receiving(order_id: int = 1, **event: Any) -> dict[str, Any]:
    """A warehouse's receiving event for the order, as its own system would send it."""
    base: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": "2027-01-16T09:15:00.000+01:00",
        "eventTimeZoneOffset": "+01:00",
        "epcList": [IDENTITY.consignment(order_id)],
        "action": "OBSERVE",
        "bizStep": "receiving",
        "disposition": "in_progress",
        "readPoint": {"id": "urn:epc:id:sgln:4012345.00001.0"},
        "bizTransactionList": [{"type": "po", "bizTransaction": IDENTITY.po(order_id)}],
        "wh:dock": "D7",
    }
    base.update(event)
    return {k: v for k, v in base.items() if v is not None}


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": [EPCIS_CONTEXT, {"wh": "https://warehouse.example/epcis/"}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2027-01-16T08:20:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def capture(api: Api, body: Any, who: str = "buyer") -> Any:
    if isinstance(body, bytes):
        return api.client.post("/epcis/capture", content=body, headers=headers(who))
    return api.client.post("/epcis/capture", json=body, headers=headers(who))


def stored(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(EpcisEventRow)) or 0)


def test_export_validates_and_links_the_chain(api: Api, seeded: Seeded) -> None:
    r = api.get("/orders/1/epcis")
    assert r.status_code == 200, r.text
    doc = r.json()
    schema = load_schema(api.context.settings.EPCIS_SCHEMA_DIR)
    assert schema.violations(doc) == []
    events = doc["epcisBody"]["eventList"]
    assert [e["bizStep"] for e in events] == ["shipping", "sensor_reporting"]
    shipping, sensor = events
    assert shipping["eventTime"] == "2027-01-15T08:01:00Z"  # T0 + 60
    assert shipping["ts:chainEvent"]["ts:event"] == "OrderShipped"
    assert sensor["ts:readings"] == {"ts:count": 12, "ts:firstSeq": 0, "ts:lastSeq": 11,
                                     "ts:committed": 8}  # fmt: skip
    proof = sensor["ts:proof"]
    assert proof == f"/orders/1/readings/{seeded.device}/0/proof"
    assert api.get(proof).status_code == 200  # the link leads to the reading's proof
    assert sensor["ts:commitments"][0]["ts:txHash"] == "0x" + "11" * 32
    assert sensor["sensorElementList"][0]["sensorMetadata"]["deviceID"] == (
        f"did:pkh:eip155:{DOMAIN.chain_id}:{seeded.device}"
    )
    # 450 .. 461 centi-°C
    temp = sensor["sensorElementList"][0]["sensorReport"][0]
    assert (temp["minValue"], temp["maxValue"], temp["meanValue"]) == (4.5, 4.61, 4.56)
    assert api.get("/orders/1/epcis").json() == doc  # the same records, the same document
    assert api.get("/orders/2/epcis").status_code == 404  # the stranger's order
    assert api.get("/orders/2/epcis", who="stranger").status_code == 200


def test_without_a_known_deployment_the_export_says_so(
    api: Api, factory: sessionmaker[Session], parties: PartyRegistry
) -> None:
    seed(factory, parties, readings=2, committed=1)
    r = api.get("/orders/1/epcis")
    assert r.status_code == 503 and r.json()["code"] == "no_deployment"


def test_a_partner_receiving_event_is_stored_and_shows_with_its_order(
    api: Api, seeded: Seeded, factory: sessionmaker[Session]
) -> None:
    r = capture(api, document(receiving()), who="supplier")
    assert r.status_code == 201, r.text
    body = r.json()
    [ref] = body["captured"]
    assert body["count"] == 1 and body["duplicates"] == [] and ref["order_id"] == 1
    assert ref["event_id"].startswith("ni:///sha-256;")
    listed = api.get("/orders/1/epcis/events").json()
    assert listed["count"] == 1
    [row] = listed["data"]
    assert row["event_id"] == ref["event_id"] and row["biz_step"] == "receiving"
    assert row["captured_by_name"] == "supplier"
    assert row["event_time"] == T0 + 86400 + 15 * 60  # 09:15+01:00 on the 16th
    assert row["event"]["wh:dock"] == "D7"
    doc = api.get("/orders/1/epcis").json()
    assert load_schema(api.context.settings.EPCIS_SCHEMA_DIR).violations(doc) == []
    events = doc["epcisBody"]["eventList"]
    assert events[-1]["eventID"] == ref["event_id"] and events[-1]["wh:dock"] == "D7"
    assert doc["@context"][1]["wh"] == "https://warehouse.example/epcis/"
    # capturing it again stores nothing and says so
    again = capture(api, document(receiving()), who="buyer")
    assert again.status_code == 200, again.text
    assert again.json()["duplicates"] == [ref] and again.json()["captured"] == []
    assert stored(factory) == 1


@pytest.mark.parametrize(
    ("change", "where", "keyword"),
    [
        ({"eventTime": "tomorrow"}, "$.epcisBody.eventList[0].eventTime", "format"),
        ({"action": "PEEK"}, "$.epcisBody.eventList[0].action", "enum"),
        ({"epcList": "not a list"}, "$.epcisBody.eventList[0].epcList", "type"),
    ],
)
def test_a_schema_violation_is_a_422_naming_it(
    api: Api,
    seeded: Seeded,
    factory: sessionmaker[Session],
    change: dict[str, Any],
    where: str,
    keyword: str,
) -> None:
    r = capture(api, document(receiving(**change)))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "epcis_schema_violation" and where in body["message"]
    assert {"path": where, "keyword": keyword} in [
        {"path": d["path"], "keyword": d["keyword"]} for d in body["details"]
    ]
    assert stored(factory) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"type": "EPCISDocument",', 422, "malformed_json"),
        (b"\xff\xfe\x00", 422, "malformed_json"),
        (json.dumps({"type": "EPCISQueryDocument"}).encode(), 422, "not_an_epcis_document"),
        (json.dumps(document()).encode(), 422, "no_events"),
    ],
)
def test_what_is_not_a_capturable_document_is_refused(
    api: Api, seeded: Seeded, body: bytes, status: int, code: str
) -> None:
    r = capture(api, body)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text


def test_an_unknown_or_invisible_order_is_404_naming_it(api: Api, seeded: Seeded) -> None:
    for order_id in (99, 2):  # missing, and the stranger's
        r = capture(api, document(receiving(order_id)))
        assert r.status_code == 404, r.text
        assert f"order {order_id} not found" in r.json()["message"]
        assert "$.epcisBody.eventList[0]" in r.json()["message"]


def test_an_event_of_another_deployment_is_refused(api: Api, seeded: Seeded) -> None:
    other = Identity(1, DOMAIN.verifying_contract)
    event = receiving(bizTransactionList=[{"type": "po", "bizTransaction": other.po(1)}])
    r = capture(api, document(event))
    assert (r.status_code, r.json()["code"]) == (422, "foreign_order_reference")


def test_who_may_capture(api: Api, seeded: Seeded, factory: sessionmaker[Session]) -> None:
    doc = document(receiving())
    assert capture(api, doc, "none").status_code == 401
    auditor = capture(api, doc, "auditor")
    assert (auditor.status_code, auditor.json()["code"]) == (403, "read_only")
    admin = capture(api, doc, "admin")  # reads every order, is a party to none
    assert (admin.status_code, admin.json()["code"]) == (403, "forbidden")
    assert "not a party to order 1" in admin.json()["message"]
    assert capture(api, doc, "stranger").status_code == 404
    assert stored(factory) == 0
    assert capture(api, doc, "arbiter").status_code == 201


def test_one_bad_event_stores_nothing_of_the_document(
    api: Api, seeded: Seeded, factory: sessionmaker[Session]
) -> None:
    good = receiving()
    for bad in (
        receiving(eventTime="2027-13-45T00:00:00Z"),  # schema
        receiving(99),  # unknown order
        receiving(bizTransactionList=[]),  # names no order
    ):
        r = capture(api, document(good, bad))
        assert r.status_code in (404, 422), r.text
        assert "eventList[1]" in r.json()["message"]
        assert stored(factory) == 0


def test_the_same_event_id_with_other_content_is_a_conflict(
    api: Api, seeded: Seeded, factory: sessionmaker[Session]
) -> None:
    event = receiving(eventID="urn:uuid:0d4e7c54-3c1f-4d9e-9a8e-1f0c2b3a4d5e")
    assert capture(api, document(event)).status_code == 201
    changed = copy.deepcopy(event)
    changed["disposition"] = "damaged"
    r = capture(api, document(receiving(disposition=None), changed))
    assert (r.status_code, r.json()["code"]) == (409, "event_id_conflict")
    assert stored(factory) == 1  # the other, new event of that document was not stored


def test_oversized_bodies_and_too_many_events_are_413(
    settings: Settings, factory: sessionmaker[Session], parties: PartyRegistry, seeded: Seeded
) -> None:
    small = settings.model_copy(update={"EPCIS_CAPTURE_MAX_BYTES": 2000,
                                        "EPCIS_CAPTURE_MAX_EVENTS": 2})  # fmt: skip
    context = ApiContext(settings=small, session_factory=factory, parties=parties)
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        big = json.dumps(document(receiving(**{"wh:note": "x" * 3000}))).encode()
        r = client.post("/epcis/capture", content=big, headers=headers("buyer"))
        assert (r.status_code, r.json()["code"]) == (413, "too_large"), r.text

        def chunks() -> Any:  # no Content-Length: the limit holds on the stream too
            yield big[:1000]
            yield big[1000:]

        r = client.post("/epcis/capture", content=chunks(), headers=headers("buyer"))
        assert (r.status_code, r.json()["code"]) == (413, "too_large"), r.text
        three = document(*(receiving(**{"wh:n": str(i)}) for i in range(3)))
        r = client.post("/epcis/capture", json=three, headers=headers("buyer"))
        assert (r.status_code, r.json()["code"]) == (413, "too_many_events"), r.text
    assert stored(factory) == 0


def test_a_missing_schema_directory_fails_capture_naming_the_setting(
    settings: Settings,
    factory: sessionmaker[Session],
    parties: PartyRegistry,
    seeded: Seeded,
    tmp_path: Path,
) -> None:
    broken = settings.model_copy(update={"EPCIS_SCHEMA_DIR": tmp_path / "no-schemas"})
    context = ApiContext(settings=broken, session_factory=factory, parties=parties)
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        r = client.post("/epcis/capture", json=document(receiving()), headers=headers("buyer"))
        assert r.status_code == 503
        assert r.json()["code"] == "epcis_schema_unavailable"
        assert "EPCIS_SCHEMA_DIR" in r.json()["message"]
        assert client.get("/orders/1/epcis", headers=headers("buyer")).status_code == 503


def test_startup_says_when_the_schemas_are_missing(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from backend.serve import _check_epcis_schemas

    with caplog.at_level("INFO", logger="backend.serve"):
        _check_epcis_schemas(settings)
        _check_epcis_schemas(settings.model_copy(update={"EPCIS_SCHEMA_DIR": tmp_path}))
    info, warning = caplog.records
    assert info.levelname == "INFO" and "GS1's schemas" in info.getMessage()
    assert warning.levelname == "WARNING" and "EPCIS_SCHEMA_DIR" in warning.getMessage()


def test_the_export_follows_the_sharing_policy(api: Api, seeded: Seeded) -> None:
    """A party in another jurisdiction gets the low events and not the readings until the
    supplier grants medium data; then devices come as pseudonyms without proof paths, and
    the release is in the disclosure log (docs/sharing.md, docs/epcis.md)."""
    from backend.api.sharing import pseudonyms_for

    overseas = {"X-API-Key": dev_api_key("overseas-auditor")}
    schema = load_schema(api.context.settings.EPCIS_SCHEMA_DIR)
    # a capture at home, to see it held back as well
    assert capture(api, document(receiving())).status_code == 201

    def export() -> dict[str, Any]:
        r = api.client.get("/orders/1/epcis", headers=overseas)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        assert schema.violations(doc) == []
        return doc

    doc = export()
    steps = [e["bizStep"] for e in doc["epcisBody"]["eventList"]]
    assert steps == ["shipping"]  # no sensor events, no captured event
    held = {(x["path"], x["action"], x["rule"]) for x in doc["ts:policy"]["redactions"]}
    assert ("readings", "left_out", "medium-cross-border-needs-approved-grant") in held
    assert ("captured", "left_out", "medium-cross-border-needs-approved-grant") in held
    assert "did:pkh" not in json.dumps(doc)

    r = api.client.post("/orders/1/grants", headers=overseas,
                        json={"sensitivity": "medium", "reason": "customs audit"})  # fmt: skip
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    now = int(api.context.clock())
    r = api.client.post(f"/grants/{gid}/approve", headers=headers("supplier"),
                        json={"expires_at": now + 3600})  # fmt: skip
    assert r.status_code == 200, r.text

    doc = export()
    events = doc["epcisBody"]["eventList"]
    sensor = [e for e in events if e["bizStep"] == "sensor_reporting"]
    assert sensor and all(e.get("ts:proof") is None for e in sensor)
    device_ids = {e["sensorElementList"][0]["sensorMetadata"]["deviceID"] for e in sensor}
    party = api.context.parties.lookup(overseas["X-API-Key"])
    assert party is not None
    theirs = pseudonyms_for(api.context, party.viewer()).of(seeded.device)
    assert device_ids == {f"urn:trustship:device:{theirs}"}
    assert seeded.device.lower() not in json.dumps(doc).lower()
    held = {(x["path"], x["action"]) for x in doc["ts:policy"]["redactions"]}
    assert held == {("deviceID", "coarsened")}  # the supplier's grant covers the rest
    assert doc["ts:policy"]["grants_used"] == [gid]
    log = api.client.get("/disclosures", headers=headers("supplier")).json()
    routes = [e["route"] for e in log["data"] if e["grant_id"] == gid]
    assert "GET /orders/{order_id}/epcis" in routes and log["verification"]["ok"] is True
    # at home nothing is held back and nothing is said
    home = api.get("/orders/1/epcis", who="auditor").json()
    assert "ts:policy" not in home and "did:pkh" in json.dumps(home)
