"""Every kind of bad message is refused with its counted reason, and the next good one is stored."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from backend.oracle.ingest import Inbound, Ingestor
from backend.oracle.metrics import Metrics
from backend.store.models import ReadingRow
from backend.telemetry import MAX_PAYLOAD_BYTES, encode_message, telemetry_topic
from testkit.readings import DEVICES, DOMAIN, KEYS, T0, inbound, make_reading, msg, signed


def body(seq: int = 1) -> dict[str, object]:
    return json.loads(encode_message(signed(KEYS[0], make_reading(1, seq))))


def raw(payload: bytes | dict[str, object], order: int = 1, device: str = DEVICES[0]) -> Inbound:
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    return Inbound(telemetry_topic(order, device), payload)


def _with(**changes: object) -> Inbound:
    b = body()
    b.update(changes)
    return raw(b)


def _without(key: str) -> Inbound:
    b = body()
    del b[key]
    return raw(b)


def _forged_by_other_key() -> Inbound:
    # Signed by an unbound key but claiming device 0: the signature recovers someone else.
    s = signed(KEYS[5], make_reading(1, 1))
    b = json.loads(encode_message(s))
    b["device"] = DEVICES[0]
    return raw(b)


def _bad_v() -> Inbound:
    b = body()
    sig = bytes.fromhex(str(b["signature"])[2:])
    b["signature"] = "0x" + (sig[:64] + bytes([29])).hex()
    return raw(b)


def _high_s() -> Inbound:
    b = body()
    sig = bytes.fromhex(str(b["signature"])[2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = n - int.from_bytes(sig[32:64], "big")
    b["signature"] = "0x" + (sig[:32] + s.to_bytes(32, "big") + bytes([55 - sig[64]])).hex()
    return raw(b)


CASES: dict[str, tuple[Callable[[], Inbound], str]] = {
    "malformed json": (lambda: raw(b'{"v":1,'), "malformed_json"),
    "not utf-8": (lambda: raw(b"\xff\xfe{}"), "not_utf8"),
    "utf-16": (lambda: raw(json.dumps(body()).encode("utf-16-le")), "not_utf8"),
    "utf-8 byte order mark": (
        lambda: raw(b"\xef\xbb\xbf" + json.dumps(body()).encode()),
        "utf8_bom",
    ),
    "repeated key": (
        lambda: raw(json.dumps(body())[:-1].encode() + b', "seq": 9}'),
        "duplicate_field",
    ),
    "json array": (lambda: raw(b"[1,2,3]"), "malformed_json"),
    "NaN constant": (lambda: raw(b'{"v": NaN}'), "malformed_json"),
    "missing field": (lambda: _without("flags"), "missing_field"),
    "extra field": (lambda: _with(note="hi"), "extra_field"),
    "float": (lambda: _with(temperatureCentiC=4.25), "bad_type"),
    "integral float": (lambda: _with(seq=1.0), "bad_type"),
    "bool": (lambda: _with(flags=True), "bad_type"),
    "string number": (lambda: _with(shockMilliG="12"), "bad_type"),
    "out of range": (lambda: _with(humidityPermille=70_000), "out_of_range"),
    "negative uint": (lambda: _with(seq=-1), "out_of_range"),
    "latitude past the pole": (lambda: _with(latitudeE6=90_000_001), "out_of_range"),
    "wrong version": (lambda: _with(v=2), "bad_version"),
    "lower-case device": (lambda: _with(device=DEVICES[0].lower()), "bad_device"),
    "short signature": (lambda: _with(signature="0x1234"), "bad_signature_format"),
    "signature v=29": (_bad_v, "bad_signature"),
    "malleable high-s signature": (_high_s, "bad_signature"),
    "forged signature": (_forged_by_other_key, "signature_mismatch"),
    "tampered reading": (lambda: _with(temperatureCentiC=-2000), "signature_mismatch"),
    "another order's device": (lambda: msg(KEYS[2], 1, 1), "device_wrong_order"),
    "unbound device": (lambda: msg(KEYS[3], 1, 1), "unknown_device"),
    "topic names another order": (lambda: raw(body(), order=2), "topic_mismatch"),
    "topic names another device": (lambda: raw(body(), device=DEVICES[1]), "topic_mismatch"),
    "not a trustship topic": (
        lambda: Inbound("a/b", encode_message(signed(KEYS[0], make_reading(1, 1)))),
        "bad_topic",
    ),
    "oversized": (lambda: raw(b" " * (MAX_PAYLOAD_BYTES + 1)), "oversized"),
    "from the future": (lambda: msg(KEYS[0], 1, 1, timestamp=T0 + 10**9), "future_timestamp"),
    "deep nesting": (lambda: raw(b"[" * 500 + b"]" * 500), "malformed_json"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_message_is_refused_counted_and_the_pipeline_goes_on(
    case: str, ingestor: Ingestor, metrics: Metrics, sqlite_engine: Engine
) -> None:
    make, reason = CASES[case]
    good = msg(KEYS[0], 1, 7)
    result = ingestor.ingest([make(), good])
    assert result.verdicts[0].status == "rejected"
    assert result.verdicts[0].reason == reason
    assert result.verdicts[1].status == "stored"
    assert metrics.get("trustship_ingest_rejected_total", reason=reason) == 1
    assert metrics.get("trustship_ingest_accepted_total") == 1
    # Refused on its own in a batch, too, and the next batch still works.
    alone = ingestor.ingest([make()])
    assert [v.reason for v in alone.verdicts] == [reason]
    assert ingestor.ingest([msg(KEYS[0], 1, 8)]).stored == 1
    with Session(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(ReadingRow)) == 2


def test_a_reading_on_a_status_topic_is_not_a_status(ingestor: Ingestor) -> None:
    s = signed(KEYS[0], make_reading(1, 1))
    topic = telemetry_topic(1, DEVICES[0]).replace("/telemetry", "/status")
    assert ingestor.ingest([inbound(s, topic=topic)]).verdicts[0].reason == "bad_status"


def test_replays_exact_copy_is_a_duplicate_and_changed_copy_is_refused(
    ingestor: Ingestor, metrics: Metrics
) -> None:
    first = msg(KEYS[0], 1, 3)
    assert ingestor.ingest([first]).stored == 1
    again = ingestor.ingest([first, first])
    assert [v.status for v in again.verdicts] == ["duplicate", "duplicate"]
    changed = msg(KEYS[0], 1, 3, temperature_centi_c=420)  # same seq, new content, validly signed
    res = ingestor.ingest([changed])
    assert res.verdicts[0].reason == "seq_reused"
    # Within one batch: the first wins, an exact copy is a duplicate, a different one refused.
    res = ingestor.ingest([msg(KEYS[0], 1, 4), msg(KEYS[0], 1, 4), msg(KEYS[0], 1, 4, flags=1)])
    assert [(v.status, v.reason) for v in res.verdicts] == [
        ("stored", None),
        ("duplicate", None),
        ("rejected", "seq_reused"),
    ]
    assert metrics.get("trustship_ingest_duplicates_total") == 3
    assert metrics.get("trustship_ingest_rejected_total", reason="seq_reused") == 2


def test_future_tolerance_follows_the_chain_clock(sqlite_engine: Engine, metrics: Metrics) -> None:
    from testkit.readings import seed

    seed(sqlite_engine, {1: [0]})
    chain_now = {"t": None}
    ing = Ingestor(sqlite_engine, DOMAIN, metrics=metrics, chain_time=lambda: chain_now["t"])
    ahead = T0 + 20_000 + 10**6  # far ahead of the wall clock
    assert (
        ing.ingest([msg(KEYS[0], 1, 1, timestamp=ahead)]).verdicts[0].reason == "future_timestamp"
    )
    chain_now["t"] = ahead - 100  # a dev replay moved the chain clock forward
    assert ing.ingest([msg(KEYS[0], 1, 1, timestamp=ahead)]).stored == 1


def test_binding_indexed_after_a_refusal_is_seen(sqlite_engine: Engine, metrics: Metrics) -> None:
    from backend.store import repositories as repo
    from testkit.readings import seed

    seed(sqlite_engine, {1: [0]})
    ing = Ingestor(sqlite_engine, DOMAIN, metrics=metrics)
    ing.bindings._ttl = 0.0  # ask the database on every miss
    assert ing.ingest([msg(KEYS[4], 1, 1)]).verdicts[0].reason == "unknown_device"
    with Session(sqlite_engine) as s, s.begin():
        repo.bind_devices(s, [dict(order_id=1, device=DEVICES[4])])
    assert ing.ingest([msg(KEYS[4], 1, 1)]).stored == 1
