"""The EPCIS 2.0 builder, the CBV event hash ID and capture parsing, checked with tools we
did not write: GS1's JSON schema (read by jsonschema) and GS1's reference event hash
(epcis-event-hash-generator)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from epcis_event_hash_generator import hash_generator, json_to_py
from epcis_event_hash_generator.dl_normaliser import normaliser

from backend.core.settings import Settings
from backend.sharing.capture import CaptureError, parse_capture
from backend.sharing.epcis import (
    EPCIS_CONTEXT,
    TS_NAMESPACE,
    CapturedEvent,
    EpcisRecords,
    Identity,
    build_document,
    iso,
)
from backend.sharing.hashid import digital_link, event_hash_id, pre_hash_string
from backend.sharing.schema import EpcisSchema, SchemaUnavailableError, load_schema

T0 = 1_800_000_000  # 2027-01-15T08:00:00Z, on the hour
DEVICE = "0x5620A6Dc0000000000000000000000000000aBcD"
OTHER = "0x1111111111111111111111111111111111111111"
IDENTITY = Identity(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


def reference_ids(document: dict[str, Any]) -> list[str]:
    """GS1's reference implementation's hash IDs of the document's events."""
    events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(document))
    return list(hash_generator.epcis_hashes_from_events(events))


def reference_prehashes(document: dict[str, Any]) -> list[str]:
    events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(document))
    return list(hash_generator.derive_prehashes_from_events(events))


@pytest.fixture(scope="module")
def schema() -> EpcisSchema:
    return load_schema(Settings(_env_file=None).EPCIS_SCHEMA_DIR)  # type: ignore[call-arg]


def order(**kw: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "id": 7,
        "created_at": T0 - 600,
        "shipped_at": T0 - 60,
        "delivered_at": T0 + 3 * 3600,
        "breached": True,
        "late_seconds": 0,
        "min_temp_centi_c": 200,
        "max_temp_centi_c": 800,
        "max_humidity_permille": 900,
        "max_shock_milli_g": 5000,
    }
    values.update(kw)
    return SimpleNamespace(**values)


def reading(seq: int, at: int, temp: int, hum: int = 551, shock: int = 100, **kw: Any) -> Any:
    values = {
        "device": DEVICE,
        "seq": seq,
        "timestamp": at,
        "temperature_centi_c": temp,
        "humidity_permille": hum,
        "shock_milli_g": shock,
        "batch_seq": 1,
    }
    values.update(kw)
    return SimpleNamespace(**values)


def records(**kw: Any) -> EpcisRecords:
    readings = [
        # hour 0: 4.25 .. 6.25 °C, in range
        *(reading(i, T0 + 600 * i, 425 + 50 * i, shock=100 * i) for i in range(5)),
        # hour 1: two readings above 8 °C (the worst 9.10), humidity over 90 %, a shock
        reading(6, T0 + 3600, 790, hum=880),
        reading(7, T0 + 4200, 850, hum=905, shock=5200, batch_seq=2),
        reading(8, T0 + 4800, 910, hum=950, batch_seq=None),
        # a second device, same hour as the first
        reading(0, T0 + 300, 500, device=OTHER, batch_seq=None),
    ]
    commitments = [
        SimpleNamespace(batch_seq=1, root=b"\x01" * 32, tx_hash=b"\x02" * 32, log_index=0),
        SimpleNamespace(batch_seq=2, root=b"\x03" * 32, tx_hash=b"\x04" * 32, log_index=1),
    ]
    chain = [
        SimpleNamespace(event="OrderShipped", tx_hash=b"\x05" * 32, block_number=5, args={}),
        SimpleNamespace(
            event="ExcursionProven",
            tx_hash=b"\x06" * 32,
            block_number=9,
            args={"device": DEVICE, "firstSeq": 7, "lastSeq": 8},
        ),
        SimpleNamespace(event="OrderDelivered", tx_hash=b"\x07" * 32, block_number=12, args={}),
        SimpleNamespace(
            event="ArrivalProven", tx_hash=b"\x08" * 32, block_number=12, args={"device": DEVICE}
        ),
    ]
    values: dict[str, Any] = {
        "order": order(),
        "readings": readings,
        "commitments": commitments,
        "chain_events": chain,
    }
    values.update(kw)
    return EpcisRecords(**values)


def events_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["epcisBody"]["eventList"])


def test_the_document_validates_against_gs1s_schema(schema: EpcisSchema) -> None:
    document = build_document(records(), IDENTITY)
    assert schema.violations_of(document) == []  # jsonschema
    assert schema.is_valid(document)  # jsonschema-rs agrees
    assert document["schemaVersion"] == "2.0" and document["type"] == "EPCISDocument"
    assert document["@context"] == [EPCIS_CONTEXT, {"ts": TS_NAMESPACE}]
    steps = [(e["bizStep"], e["disposition"]) for e in events_of(document)]
    assert steps[0] == ("shipping", "in_transit")
    assert steps[-1] == ("receiving", "non_conformant")  # a breach was proven
    assert steps[1:-1] == [("sensor_reporting", "in_transit")] * 3  # 2 hours + other device
    for e in events_of(document):
        assert e["bizTransactionList"] == [
            {"type": "po", "bizTransaction": IDENTITY.po(7)},
        ]
        assert e["epcList"] == [IDENTITY.consignment(7)]
    assert IDENTITY.po(7) == ("urn:trustship:po:31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:7")


def test_a_clean_delivery_is_received_in_progress(schema: EpcisSchema) -> None:
    document = build_document(records(order=order(breached=False)), IDENTITY)
    assert events_of(document)[-1]["disposition"] == "in_progress"
    assert schema.violations(document) == []


def test_every_event_id_equals_gs1s_reference_implementation() -> None:
    document = build_document(records(), IDENTITY)
    ours = [e["eventID"] for e in events_of(document)]
    assert all(i.startswith("ni:///sha-256;") and i.endswith("?ver=CBV2.0") for i in ours)
    assert len(set(ours)) == len(ours)
    assert ours == reference_ids(document)


def test_the_pre_hash_string_is_the_reference_implementations() -> None:
    document = build_document(records(), IDENTITY)
    ours = [pre_hash_string(e, document["@context"]) for e in events_of(document)]
    assert ours == reference_prehashes(document)
    shipping = ours[0]
    assert shipping.startswith(
        f"eventType=ObjectEventeventTime={iso(T0 - 60)[:-1]}.000ZeventTimeZoneOffset=+00:00"
    )
    assert "bizStep=https://ref.gs1.org/cbv/BizStep-shipping" in shipping
    assert "{https://trustship.example/ns/epcis/}chainEvent" in shipping


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("eventTime",), "2027-01-15T08:00:01Z"),
        (("disposition",), "damaged"),
        (("sensorElementList", 0, "sensorReport", 0, "maxValue"), 6.26),
        (("sensorElementList", 0, "sensorMetadata", "deviceID"), "did:pkh:eip155:1:0x00"),
        (("bizTransactionList", 0, "bizTransaction"), IDENTITY.po(8)),
        (("ts:readings", "ts:count"), 6),
    ],
)
def test_a_tampered_field_changes_the_id(where: tuple[Any, ...], value: Any) -> None:
    document = build_document(records(), IDENTITY)
    event = next(e for e in events_of(document) if e["bizStep"] == "sensor_reporting")
    tampered = copy.deepcopy(event)
    target: Any = tampered
    for part in where[:-1]:
        target = target[part]
    assert target[where[-1]] != value
    target[where[-1]] = value
    context = document["@context"]
    assert event_hash_id(tampered, context) != event["eventID"]
    # and ours still agrees with the reference on the tampered event
    doc = {**document, "epcisBody": {"eventList": [tampered]}}
    assert (
        event_hash_id({k: v for k, v in tampered.items() if k != "eventID"}, context)
        == (reference_ids(doc)[0])
    )


def test_the_id_does_not_depend_on_key_order_or_time_zone() -> None:
    document = build_document(records(), IDENTITY)
    context = document["@context"]
    event = {k: v for k, v in events_of(document)[1].items() if k != "eventID"}
    shuffled = dict(reversed(list(event.items())))
    assert event_hash_id(shuffled, context) == event_hash_id(event, context)
    elsewhere = {**event, "eventTime": iso(event_time := T0 + 2400).replace("Z", "+00:00")}
    assert event_hash_id(elsewhere, context) == event_hash_id(
        {**event, "eventTime": iso(event_time)}, context
    )


def test_hourly_aggregates_and_alarms_are_the_hand_computed_ones() -> None:
    document = build_document(records(), IDENTITY)
    sensors = [e for e in events_of(document) if e["bizStep"] == "sensor_reporting"]
    mine = [e for e in sensors if e["sensorElementList"][0]["sensorMetadata"]["deviceID"]
            == IDENTITY.device(DEVICE)]  # fmt: skip
    first, second = mine
    meta = first["sensorElementList"][0]["sensorMetadata"]
    assert (meta["startTime"], meta["endTime"]) == (iso(T0), iso(T0 + 2400))
    assert first["eventTime"] == iso(T0 + 2400)
    temp, hum, shock = first["sensorElementList"][0]["sensorReport"]
    # 425, 475, 525, 575, 625 centi-°C
    assert temp == {"type": "Temperature", "minValue": 4.25, "maxValue": 6.25,
                    "meanValue": 5.25, "uom": "CEL"}  # fmt: skip
    assert hum == {"type": "RelativeHumidity", "minValue": 55.1, "maxValue": 55.1,
                   "meanValue": 55.1, "uom": "P1"}  # fmt: skip
    # 0, 100, 200, 300, 400 milli-g
    assert shock == {"type": "Acceleration", "minValue": 0.0, "maxValue": 0.4,
                     "meanValue": 0.2, "uom": "K40"}  # fmt: skip
    assert first["ts:readings"] == {"ts:count": 5, "ts:firstSeq": 0, "ts:lastSeq": 4,
                                    "ts:committed": 5}  # fmt: skip
    assert first["ts:proof"] == f"/orders/7/readings/{DEVICE}/0/proof"
    assert first["ts:commitments"] == [
        {"ts:batchSeq": 1, "ts:root": "0x" + "01" * 32, "ts:txHash": "0x" + "02" * 32,
         "ts:logIndex": 0}
    ]  # fmt: skip
    assert "ts:evidence" not in first
    reports = second["sensorElementList"][0]["sensorReport"]
    aggregates = {r["type"]: r for r in reports if "exception" not in r}
    # 790, 850, 910 → mean 850; 880, 905, 950 permille → mean 911.67 → 912
    assert aggregates["Temperature"]["meanValue"] == 8.5
    assert aggregates["RelativeHumidity"]["meanValue"] == 91.2
    alarms = [r for r in reports if r.get("exception") == "ALARM_CONDITION"]
    assert alarms == [
        {"type": "Temperature", "exception": "ALARM_CONDITION", "time": iso(T0 + 4200),
         "value": 9.1, "uom": "CEL"},
        {"type": "RelativeHumidity", "exception": "ALARM_CONDITION", "time": iso(T0 + 4200),
         "value": 95.0, "uom": "P1"},
        {"type": "Acceleration", "exception": "ALARM_CONDITION", "time": iso(T0 + 4200),
         "value": 5.2, "uom": "K40"},
    ]  # fmt: skip
    # the excursion proven on-chain starts with reading 7, in this hour
    assert second["ts:evidence"] == [
        {"ts:event": "ExcursionProven", "ts:txHash": "0x" + "06" * 32, "ts:block": 9,
         "ts:firstSeq": 7, "ts:lastSeq": 8}
    ]  # fmt: skip
    # two of three readings committed, in batches 1 and 2
    assert second["ts:readings"]["ts:committed"] == 2
    assert [c["ts:batchSeq"] for c in second["ts:commitments"]] == [1, 2]
    receiving = events_of(document)[-1]
    assert receiving["ts:chainEvent"]["ts:txHash"] == "0x" + "07" * 32
    assert receiving["ts:evidence"][0]["ts:event"] == "ArrivalProven"


def test_a_zero_shock_limit_raises_no_shock_alarm() -> None:
    document = build_document(records(order=order(max_shock_milli_g=0)), IDENTITY)
    alarms = [r["type"] for e in events_of(document) for el in e.get("sensorElementList", [])
              for r in el["sensorReport"] if "exception" in r]  # fmt: skip
    assert "Acceleration" not in alarms and "Temperature" in alarms


def test_the_same_records_give_the_same_document() -> None:
    a = build_document(records(), IDENTITY)
    shuffled = list(records().readings)
    random.Random(4).shuffle(shuffled)
    b = build_document(records(readings=shuffled), IDENTITY)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    times = [e["eventTime"] for e in events_of(a)]
    assert times == sorted(times)
    assert a["creationDate"] == times[-1]


def test_an_order_not_shipped_has_no_events(schema: EpcisSchema) -> None:
    empty = records(order=order(shipped_at=None, delivered_at=None), readings=[], chain_events=[])
    document = build_document(empty, IDENTITY)
    assert events_of(document) == [] and document["creationDate"] == iso(T0 - 600)
    assert schema.violations(document) == []


# --- capture ---------------------------------------------------------------------------


def partner_document(**event: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": "2027-01-15T12:30:00.000+01:00",
        "eventTimeZoneOffset": "+01:00",
        "epcList": [IDENTITY.consignment(7)],
        "action": "OBSERVE",
        "bizStep": "receiving",
        "disposition": "in_progress",
        "readPoint": {"id": "urn:epc:id:sgln:4012345.00001.0"},
        "bizTransactionList": [{"type": "po", "bizTransaction": IDENTITY.po(7)}],
        "wh:dock": "7",
    }
    base.update(event)
    return {
        "@context": [EPCIS_CONTEXT, {"wh": "https://warehouse.example/epcis/"}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2027-01-15T12:31:00Z",
        "epcisBody": {"eventList": [{k: v for k, v in base.items() if v is not None}]},
    }


def parse(document: Any, schema: EpcisSchema, **kw: Any) -> Any:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    limits = {"max_bytes": 100_000, "max_events": 10, **kw}
    return parse_capture(body, schema, IDENTITY, **limits)


def test_a_partner_receiving_event_parses_with_our_hash_id(schema: EpcisSchema) -> None:
    document = partner_document()
    parsed = parse(document, schema)
    [event] = parsed.events
    assert event.order_id == 7 and event.biz_step == "receiving"
    assert event.event_time == T0 + 3 * 3600 + 1800  # 12:30+01:00 = 11:30Z
    assert event.event_id == event.hash_id == reference_ids(document)[0]
    assert parsed.prefixes == {"wh": "https://warehouse.example/epcis/"}
    given = parse(partner_document(eventID="urn:uuid:5b5e0c36-7f4a-4d55-a1b4-6a0f6d0c1e11"),
                  schema).events[0]  # fmt: skip
    assert given.event_id == "urn:uuid:5b5e0c36-7f4a-4d55-a1b4-6a0f6d0c1e11"
    assert given.hash_id == event.hash_id  # the eventID is not hashed


def test_captured_events_are_part_of_the_document(schema: EpcisSchema) -> None:
    parsed = parse(partner_document(), schema)
    captured = [CapturedEvent(e.event, parsed.prefixes) for e in parsed.events]
    document = build_document(records(captured=captured), IDENTITY)
    assert schema.violations(document) == []
    assert document["@context"][1] == {"ts": TS_NAMESPACE, "wh": "https://warehouse.example/epcis/"}
    ids = [e["eventID"] for e in events_of(document)]
    assert parsed.events[0].event_id in ids
    assert ids == reference_ids(document)  # the partner's event hashes alike


@pytest.mark.parametrize(
    ("change", "path", "keyword"),
    [
        ({"eventTime": "yesterday"}, "$.epcisBody.eventList[0].eventTime", "format"),
        ({"action": "LOOK"}, "$.epcisBody.eventList[0].action", "enum"),
        ({"bizStep": "flying"}, "$.epcisBody.eventList[0].bizStep", "anyOf"),
        ({"eventTimeZoneOffset": None}, "$.epcisBody.eventList[0]", "required"),
        ({"bizTransactionList": [{"type": "po"}]},
         "$.epcisBody.eventList[0].bizTransactionList[0]", "required"),
    ],
)  # fmt: skip
def test_a_schema_violation_is_named(
    schema: EpcisSchema, change: dict[str, Any], path: str, keyword: str
) -> None:
    with pytest.raises(CaptureError) as info:
        parse(partner_document(**change), schema)
    assert not schema.is_valid(partner_document(**change))  # both validators refuse it
    assert schema.violations_of(partner_document(**change))
    err = info.value
    assert (err.status, err.code) == (422, "epcis_schema_violation")
    assert err.details and {"path": path, "keyword": keyword} in [
        {"path": d["path"], "keyword": d["keyword"]} for d in err.details
    ]
    assert path in err.message


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 422, "malformed_json"),
        (b"\xff\xfe", 422, "malformed_json"),
        (b"[]", 422, "not_an_epcis_document"),
        (json.dumps({"type": "ObjectEvent"}).encode(), 422, "not_an_epcis_document"),
        (
            json.dumps({"type": "EPCISDocument", "epcisBody": []}).encode(),
            422,
            "epcis_schema_violation",
        ),
        (
            json.dumps({"type": "EPCISDocument", "epcisBody": {"eventList": {}}}).encode(),
            422,
            "epcis_schema_violation",
        ),
    ],
)
def test_what_is_not_a_document_is_refused(
    schema: EpcisSchema, body: bytes, status: int, code: str
) -> None:
    with pytest.raises(CaptureError) as info:
        parse(body, schema)
    assert (info.value.status, info.value.code) == (status, code)


def test_limits_and_order_references(schema: EpcisSchema) -> None:
    document = partner_document()
    with pytest.raises(CaptureError) as info:
        parse(document, schema, max_bytes=100)
    assert (info.value.status, info.value.code) == (413, "too_large")
    many = copy.deepcopy(document)
    many["epcisBody"]["eventList"] *= 11
    with pytest.raises(CaptureError) as info:
        parse(many, schema)
    assert (info.value.status, info.value.code) == (413, "too_many_events")
    cases = [
        ([], "no_order_reference"),
        ([{"type": "po", "bizTransaction": "urn:other:po:7"}], "foreign_order_reference"),
        (
            [{"type": "po", "bizTransaction": Identity(1, IDENTITY.purchase_orders).po(7)}],
            "foreign_order_reference",
        ),
        (
            [
                {"type": "po", "bizTransaction": IDENTITY.po(7)},
                {"type": "po", "bizTransaction": IDENTITY.po(8)},
            ],
            "ambiguous_order_reference",
        ),
    ]
    for refs, code in cases:
        with pytest.raises(CaptureError) as info:
            parse(partner_document(bizTransactionList=refs), schema)
        assert (info.value.status, info.value.code) == (422, code), refs
        assert "$.epcisBody.eventList[0]" in info.value.message
    twice = copy.deepcopy(document)
    twice["epcisBody"]["eventList"] *= 2
    with pytest.raises(CaptureError) as info:
        parse(twice, schema)
    assert info.value.code == "duplicate_event_id"
    taken = partner_document()
    taken["@context"][1]["ts"] = "https://elsewhere.example/"
    with pytest.raises(CaptureError) as info:
        parse(taken, schema)
    assert info.value.code == "prefix_conflict"


def test_a_missing_schema_directory_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SchemaUnavailableError, match="EPCIS_SCHEMA_DIR"):
        EpcisSchema(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "urn",
    [
        "urn:epc:id:sgln:4012345.00001.0",
        "urn:epc:id:sgln:4012345.00001.12",
        "urn:epc:id:sgtin:4012345.011111.987",
        "urn:epc:id:sscc:4012345.0000000001",
        "urn:epc:class:lgtin:4012345.012345.998877",
        "urn:epc:id:grai:4012345.12345.678",  # a scheme we leave as it is
        "urn:trustship:consignment:1:0xab:7",
    ],
)
def test_epc_urns_become_the_reference_digital_link(urn: str) -> None:
    assert digital_link(urn) == normaliser(urn) or (
        digital_link(urn) is None and urn.startswith(("urn:epc:id:grai", "urn:trustship"))
    )
