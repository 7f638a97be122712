"""Reads answer from the database, only for the parties of an order."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.api.parties import PartyRegistry
from backend.api.schemas import OrderPublic, OrdersPublic, ReadingsPublic
from backend.chain.settlement import settlement
from backend.store.models import OrderRow, ReadingRow
from backend.telemetry import reading_digest, verify_proof
from backend.telemetry.fleet import FleetLog, fleet_leaf
from testkit.api_seed import COMMITTER, DOMAIN, ETHER, T0, Seeded, order_values, seed
from tests.api.conftest import Api, headers
from tests.conftest import BACKENDS


@pytest.fixture
def seeded(factory: sessionmaker[Session], parties: PartyRegistry) -> Seeded:
    return seed(factory, parties, readings=12, committed=8)


def ids(body: dict) -> list[int]:
    return [o["id"] for o in body["data"]]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("buyer", [1]),
        ("supplier", [1]),
        ("arbiter", [1]),
        ("stranger", [2]),
        ("auditor", [2, 1]),
        ("admin", [2, 1]),
    ],
)
def test_list_orders_shows_only_the_callers_orders(
    api: Api, seeded: Seeded, who: str, expected: list[int]
) -> None:
    r = api.get("/orders", who)
    assert r.status_code == 200
    assert ids(r.json()) == expected
    assert r.json()["count"] == len(expected)


def test_get_order_fields(api: Api, seeded: Seeded, parties: PartyRegistry) -> None:
    r = api.get("/orders/1")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == 1
    assert body["state"] == "Shipped"
    assert body["buyer"] == parties.by_name("buyer").address
    assert body["terms"]["price"] == str(10 * ETHER)  # money as a decimal string
    assert body["terms"]["min_temp_centi_c"] == 200
    assert body["settlement"] is None


def test_others_order_is_404_like_a_missing_one(api: Api, seeded: Seeded) -> None:
    other = api.get("/orders/2", "buyer")
    missing = api.get("/orders/999", "buyer")
    assert other.status_code == missing.status_code == 404
    assert other.json()["code"] == missing.json()["code"] == "not_found"
    # and every sub-resource of it
    for path in ("telemetry", "commitments", "events", "alerts", "devices"):
        assert api.get(f"/orders/2/{path}", "buyer").status_code == 404


@pytest.mark.parametrize("who", ["none", "bad"])
def test_missing_or_bad_key_is_401(api: Api, seeded: Seeded, who: str) -> None:
    r = api.get("/orders/1", who)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "APIKey"


def test_filters_and_paging(
    api: Api, factory: sessionmaker[Session], parties: PartyRegistry
) -> None:
    buyer = parties.by_name("buyer").address
    supplier = parties.by_name("supplier").address
    arbiter = parties.by_name("arbiter").address
    stranger = parties.by_name("stranger").address
    with factory.begin() as s:
        for i in range(1, 31):
            state = "Created" if i % 3 else "Settled"
            # every 5th order: the buyer is the supplier of someone else's order
            b, sup = (stranger, buyer) if i % 5 == 0 else (buyer, supplier)
            s.add(OrderRow(**order_values(i, b, sup, arbiter, state=state)))
    page = api.get("/orders", params={"limit": 7, "offset": 0}).json()
    assert page["count"] == 30
    assert ids(page) == list(range(30, 23, -1))
    last = api.get("/orders", params={"limit": 7, "offset": 28}).json()
    assert ids(last) == [2, 1] and last["count"] == 30
    settled = api.get("/orders", params={"state": "Settled"}).json()
    assert ids(settled) == [30, 27, 24, 21, 18, 15, 12, 9, 6, 3]
    both = api.get("/orders", params=[("state", "Settled"), ("state", "Created")]).json()
    assert both["count"] == 30
    as_supplier = api.get("/orders", params={"role": "supplier"}).json()
    assert ids(as_supplier) == [30, 25, 20, 15, 10, 5]
    by_buyer = api.get("/orders", "auditor", params={"buyer": stranger}).json()
    assert ids(by_buyer) == [30, 25, 20, 15, 10, 5]
    # a supplier filter narrows, never widens, what the caller may see
    by_supplier = api.get("/orders", "supplier", params={"supplier": buyer}).json()
    assert by_supplier == {"data": [], "count": 0, "next": None}
    bad = api.get("/orders", params={"state": "Sailing"})
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    assert api.get("/orders", params={"limit": 0}).status_code == 422
    assert api.get("/orders", params={"limit": 201}).status_code == 422


def test_telemetry_pages_and_time_range(api: Api, seeded: Seeded) -> None:
    page = api.get("/orders/1/telemetry", params={"limit": 5}).json()
    assert page["count"] == 12
    assert [r["seq"] for r in page["data"]] == [0, 1, 2, 3, 4]
    nxt = api.get("/orders/1/telemetry", params={"limit": 5, "offset": 10}).json()
    assert [r["seq"] for r in nxt["data"]] == [10, 11]
    first = page["data"][0]
    assert first["temperature_centi_c"] == 450
    assert first["digest"] == "0x" + reading_digest(seeded.readings[0], DOMAIN).hex()
    assert first["batch_seq"] == 1
    since, until = T0 + 120 + 60 * 3, T0 + 120 + 60 * 6  # seq 3, 4, 5
    ranged = api.get("/orders/1/telemetry", params={"since": since, "until": until}).json()
    assert [r["seq"] for r in ranged["data"]] == [3, 4, 5] and ranged["count"] == 3
    other_device = api.get("/orders/1/telemetry", params={"device": "0x" + "ab" * 20}).json()
    assert other_device == {"data": [], "count": 0, "next": None}


def _walk(api: Api, path: str, params: dict[str, object]) -> list[dict]:
    """Every page of ``path`` by its ``next`` cursors: the pages' bodies."""
    pages = [api.get(path, params=params).json()]
    while pages[-1]["next"] is not None:
        assert len(pages) < 50, "the cursor does not move on"
        pages.append(api.get(path, params={**params, "after": pages[-1]["next"]}).json())
    return pages


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_keyset_pages_hold_what_offset_pages_hold(
    api: Api, factory: sessionmaker[Session], parties: PartyRegistry
) -> None:
    buyer, supplier, arbiter, stranger = (
        parties.by_name(n).address for n in ("buyer", "supplier", "arbiter", "stranger")
    )
    with factory.begin() as s:
        for i in range(1, 31):
            b = stranger if i % 4 == 0 else buyer  # the buyer sees 23 of them
            state = "Created" if i % 3 else "Settled"
            s.add(OrderRow(**order_values(i, b, supplier, arbiter, state=state)))
    for params in ({"limit": 7}, {"limit": 5, "state": "Settled"}, {"limit": 23}):
        pages = _walk(api, "/orders", params)
        offset = [
            api.get("/orders", params={**params, "offset": n * params["limit"]}).json()
            for n in range(len(pages))
        ]
        assert [ids(p) for p in pages] == [ids(p) for p in offset]
        assert {p["count"] for p in pages} == {offset[0]["count"]}
        walked = [i for p in pages for i in ids(p)]
        assert walked == sorted(walked, reverse=True) and len(walked) == offset[0]["count"]
    # a full last page is followed by an empty one; a short one has no next
    assert [len(p["data"]) for p in _walk(api, "/orders", {"limit": 23})] == [23, 0]
    assert [len(p["data"]) for p in _walk(api, "/orders", {"limit": 7})] == [7, 7, 7, 2]
    # the cursor is an order id: below it, what the caller sees
    after = api.get("/orders", "stranger", params={"after": 13}).json()
    assert ids(after) == [12, 8, 4]


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_keyset_telemetry_pages_break_ties_in_arrival_order(
    api: Api, seeded: Seeded, factory: sessionmaker[Session]
) -> None:
    with factory.begin() as s:  # a second device whose readings share the first's times
        for r in s.scalars(select(ReadingRow).where(ReadingRow.order_id == 1)).all():
            values = {c.key: getattr(r, c.key) for c in ReadingRow.__table__.columns}
            s.add(ReadingRow(**{**values, "id": None, "device": "0x" + "cd" * 20}))
    offset = api.get("/orders/1/telemetry", params={"limit": 24}).json()["data"]
    assert len(offset) == 24
    for limit in (5, 7, 12):
        pages = _walk(api, "/orders/1/telemetry", {"limit": limit})
        assert [r for p in pages for r in p["data"]] == offset
        assert all(p["count"] == 24 for p in pages)
    # a time range and a device narrow the keyset pages like the offset ones
    since = T0 + 120 + 60 * 3
    params = {"limit": 3, "since": since, "device": seeded.device}
    walked = [r["seq"] for p in _walk(api, "/orders/1/telemetry", params) for r in p["data"]]
    assert walked == list(range(3, 12))


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "abc",
        "5",
        "-5",
        "5-",
        "1-0",
        "01-5",
        "5-05",
        "1 -5",
        "9007199254740992-1",
        "1-" + "9" * 16,
    ],
)
def test_a_malformed_reading_cursor_is_422(api: Api, seeded: Seeded, cursor: str) -> None:
    r = api.get("/orders/1/telemetry", params={"after": cursor})
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text


def test_lean_answers_are_their_response_models(api: Api, seeded: Seeded) -> None:
    """The routes that answer without FastAPI's validation (backend.api.lean) still
    answer exactly what their response model describes."""
    for path, model in (
        ("/orders", OrdersPublic),
        ("/orders/1", OrderPublic),
        ("/orders/1/telemetry?limit=5", ReadingsPublic),
    ):
        r = api.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        as_model = model.model_validate_json(r.content, strict=True)
        assert as_model.model_dump(mode="json") == r.json()


def test_commitments_and_proofs(api: Api, seeded: Seeded) -> None:
    commitments = api.get("/orders/1/commitments").json()
    assert commitments["count"] == 1
    c = commitments["data"][0]
    assert c["batch_seq"] == 1 and c["reading_count"] == 8 and c["status"] == "done"
    assert api.get("/orders/1/commitments/1").json() == c
    assert api.get("/orders/1/commitments/2").status_code == 404
    for seq in range(8):
        r = api.get(f"/orders/1/readings/{seeded.device}/{seq}/proof")
        assert r.status_code == 200, r.text
        body = r.json()
        leaf = fleet_leaf(1, seeded.device, reading_digest(seeded.readings[seq], DOMAIN), seq)
        assert body["leaf"] == "0x" + leaf.hex()
        assert body["leaf_index"] == seq
        proof = [bytes.fromhex(p[2:]) for p in body["reading_proof"]]
        assert verify_proof(proof, bytes.fromhex(c["root"][2:]), leaf)
        assert body["reading"]["seq"] == seq and body["reading"]["orderId"] == 1
        assert len(bytes.fromhex(body["signature"][2:])) == 65
        # the batch's place in the committer's log, up to the log's root
        assert (body["committer"], body["log_index"], body["count"]) == (COMMITTER, 0, 8)
        log = FleetLog()
        log.append(1, bytes.fromhex(c["root"][2:]), 8)
        assert body["log_root"] == "0x" + log.root().hex()
        assert body["log_proof"] == ["0x" + p.hex() for p in log.proof(0)]
        assert body["certificate"]["device"] == seeded.device
        assert body["certificate"]["order_id"] == 1
    # a reading waiting for its batch, and one that does not exist
    pending = api.get(f"/orders/1/readings/{seeded.device}/9/proof")
    assert pending.status_code == 409 and pending.json()["code"] == "not_committed"
    assert api.get(f"/orders/1/readings/{seeded.device}/99/proof").status_code == 404
    assert api.get(f"/orders/2/readings/{seeded.device}/0/proof").status_code == 404


def test_events_alerts_devices(api: Api, seeded: Seeded) -> None:
    events = api.get("/orders/1/events").json()
    assert [e["event"] for e in events["data"]] == ["OrderCreated", "OrderShipped", "FundsCredited"]
    assert events["data"][0]["tx_hash"] == "0x" + "01" * 32
    alerts = api.get("/alerts").json()
    assert [a["kind"] for a in alerts["data"]] == ["trend"]
    assert api.get("/alerts", "auditor").json()["count"] == 2
    assert api.get("/alerts", "stranger").json()["data"][0]["kind"] == "silence"
    assert api.get("/orders/1/alerts").json()["count"] == 1
    assert api.get("/alerts", params={"severity": "critical"}).json()["count"] == 0
    devices = api.get("/orders/1/devices").json()
    assert devices["count"] == 1
    d = devices["data"][0]
    assert d["device"] == seeded.device
    assert (d["reading_count"], d["first_seq"], d["last_seq"]) == (12, 0, 11)
    assert d["missing_readings"] == 0 and d["status"] is None
    assert api.get("/orders/1/gaps").json() == {"data": [], "count": 0, "missing_readings": 0}
    assert api.get("/devices", "stranger").json() == {"data": [], "count": 0}
    assert api.get("/devices", "auditor").json()["count"] == 1


def test_account_credits(api: Api, seeded: Seeded, parties: PartyRegistry) -> None:
    me = api.get("/account", "supplier").json()
    assert me["party"]["address"] == parties.by_name("supplier").address
    assert me["party"]["roles"] == ["supplier"]
    assert me["credits"] == [
        {"token": "0x0000000000000000000000000000000000000000", "amount": str(7 * ETHER)}
    ]
    assert api.get("/account", "buyer").json()["credits"] == []


@pytest.mark.parametrize(
    ("late_secs", "breach"), [(0, False), (1, False), (3601, False), (30 * 3600, True)]
)
def test_settlement_preview_matches_the_settlement_math(
    api: Api, seeded: Seeded, late_secs: int, breach: bool
) -> None:
    deadline = T0 + 7 * 86400
    r = api.get(
        "/orders/1/settlement-preview",
        params={"delivered_at": deadline + late_secs, "breach": str(breach).lower()},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["late_seconds"] == late_secs
    from backend.api.settlement import row_terms

    with api.context.session_factory() as s:
        row = s.get(OrderRow, 1)
        assert row is not None
        expected = settlement(row.price, row_terms(row), deadline + late_secs, breach)
    assert body["buyer_amount"] == str(expected.buyer_amount)
    assert body["supplier_amount"] == str(expected.supplier_amount)
    assert int(body["buyer_amount"]) + int(body["supplier_amount"]) == 10 * ETHER
    assert body["refund_bps"] == expected.refund_bps


def test_health_and_metrics(api: Api, seeded: Seeded) -> None:
    health = api.client.get("/health")
    assert health.status_code == 200
    assert health.json()["components"]["database"]["status"] == "ok"
    assert health.json()["components"]["chain"]["status"] == "disabled"
    api.get("/orders/1")
    api.get("/orders/2")
    lines = api.client.get("/metrics").text.splitlines()
    assert (
        'trustship_api_requests_total{method="GET",route="/orders/{order_id}",status="200"} 1.0'
        in lines
    )
    assert (
        'trustship_api_requests_total{method="GET",route="/orders/{order_id}",status="404"} 1.0'
        in lines
    )
    bucket = "trustship_api_request_duration_seconds_bucket"
    assert f'{bucket}{{le="+Inf",method="GET",route="/orders/{{order_id}}"}} 2.0' in lines


def test_every_error_has_a_code(api: Api) -> None:
    cases = [
        api.client.get("/nowhere", headers=headers("buyer")),
        api.client.delete("/orders/1", headers=headers("buyer")),
        api.client.get("/orders/abc", headers=headers("buyer")),
        api.client.post("/orders", headers=headers("buyer"), content=b"{not json"),
        api.client.get("/orders/1"),
    ]
    codes = [(r.status_code, r.json()["code"]) for r in cases]
    assert codes == [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (422, "validation_error"),
        (422, "validation_error"),
        (401, "unauthorized"),
    ]


def test_gaps_show_what_the_device_sent_and_the_oracle_never_stored(
    api: Api, seeded: Seeded, factory: sessionmaker[Session]
) -> None:
    from backend.store import repositories as repo

    with factory.begin() as s:  # the device says it has sent #14 (and #0 first)
        repo.record_status(s, [repo.DeviceStatus(1, seeded.device, "online", T0 + 900, 640, 0, 14)])
    d = api.get("/orders/1/devices").json()["data"][0]
    assert (d["status"], d["battery_permille"], d["reported_last_seq"]) == ("online", 640, 14)
    assert d["missing_readings"] == 3
    gaps = api.get("/orders/1/gaps").json()
    assert gaps == {
        "data": [{"device": seeded.device, "first_missing": 12, "last_missing": 14, "missing": 3}],
        "count": 1,
        "missing_readings": 3,
    }
    assert api.get("/orders/1/gaps", "stranger").status_code == 404


def test_refusals_come_from_the_oracle_in_this_process(api: Api, seeded: Seeded) -> None:
    from backend.oracle.ingest import RefusalTally
    from backend.telemetry import telemetry_topic

    assert api.get("/orders/1/refusals").json()["code"] == "unavailable"  # no oracle here
    tally = RefusalTally()
    for reason in ("future_timestamp", "future_timestamp", "signature_mismatch"):
        tally.add(telemetry_topic(1, seeded.device), reason, f"because of {reason}")
    tally.add(telemetry_topic(2, seeded.device), "unknown_device", "another order")
    api.context.refusals = tally.for_order
    body = api.get("/orders/1/refusals").json()
    assert body["count"] == 1
    [r] = body["data"]
    assert r["device"] == seeded.device and r["refused"] == 3
    assert r["by_reason"] == {"future_timestamp": 2, "signature_mismatch": 1}
    assert r["last_reason"] == "signature_mismatch"
    assert r["last_message"] == "because of signature_mismatch"
    assert api.get("/orders/1/refusals", "stranger").status_code == 404


@pytest.mark.parametrize("items", ["events", "alerts", "devices"])
def test_an_orders_list_answers_key_then_parameters_then_order(
    api: Api, seeded: Seeded, items: str
) -> None:
    """No key is 401 before anything; a bad page is 422 whether or not the caller may
    see the order (it is not looked up); with a good page, another's order is 404."""
    other = seeded.other_order
    assert api.get(f"/orders/{other}/{items}?limit=0", "none").status_code == 401
    assert api.get(f"/orders/{other}/{items}?limit=0", "buyer").status_code == 422
    assert api.get(f"/orders/{other}/{items}?offset=-1", "buyer").status_code == 422
    assert api.get(f"/orders/{other}/{items}", "buyer").status_code == 404
    own = api.get(f"/orders/{seeded.own_order}/{items}?limit=1", "buyer")
    assert own.status_code == 200 and len(own.json()["data"]) <= 1
