"""No input crashes ingest: each message is stored, a duplicate, or refused and counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.oracle.ingest import Inbound, Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesEngine
from backend.store.db import upgrade_to_head
from backend.store.models import ReadingRow
from backend.telemetry import FIELD_RANGES, encode_message, telemetry_topic
from testkit.readings import DEVICES, DOMAIN, KEYS, T0, make_reading, seed, signed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from([*FIELD_RANGES, "device", "signature", "v", "extra"])


@st.composite
def valid_message(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    key = draw(st.sampled_from(range(5)))  # 0,1 bound to order 1; 2 to order 2; 3,4 unbound
    order = draw(st.sampled_from([1, 2]))
    seq = draw(st.integers(0, 400))
    reading = make_reading(
        order,
        seq,
        timestamp=T0 + draw(st.integers(0, 20_000)),
        temperature_centi_c=draw(st.integers(-3000, 3000)),
        shock_milli_g=draw(st.integers(0, 10_000)),
        flags=draw(st.integers(0, 7)),
    )
    s = signed(KEYS[key], reading)
    return telemetry_topic(order, s.device), json.loads(encode_message(s))


@st.composite
def inbound_message(draw: st.DrawFn) -> Inbound:
    kind = draw(st.sampled_from(["bytes", "json", "valid", "mutated", "byteflip"]))
    topic, body = draw(valid_message())
    if kind == "bytes":
        return Inbound(topic, draw(st.binary(max_size=1200)))
    if kind == "json":
        return Inbound(topic, json.dumps(draw(json_values)).encode())
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 3))):
            name = draw(field_names)
            op = draw(st.sampled_from(["set", "delete"]))
            if op == "delete":
                body.pop(name, None)
            else:
                body[name] = draw(json_values | st.integers(-(2**300), 2**300))
        if draw(st.booleans()):
            topic = telemetry_topic(draw(st.integers(0, 3)), draw(st.sampled_from(DEVICES)))
    payload = json.dumps(body).encode()
    if kind == "byteflip" and payload:
        i = draw(st.integers(0, len(payload) - 1))
        payload = payload[:i] + bytes([payload[i] ^ draw(st.integers(1, 255))]) + payload[i + 1 :]
    return Inbound(topic, payload)


def test_random_payloads_never_escape_and_are_all_accounted_for(tmp_path: Path) -> None:
    engine = upgrade_to_head(f"sqlite:///{tmp_path / 'fuzz.db'}")
    seed(engine, {1: [0, 1], 2: [2]})
    metrics = Metrics()
    ingestor = Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    seen = {"messages": 0, "stored": 0}

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(inbound_message(), min_size=1, max_size=16))
    def run(batch: list[Inbound]) -> None:
        result = ingestor.ingest(batch)
        assert len(result.verdicts) == len(batch)
        for v in result.verdicts:
            assert v.status in ("stored", "duplicate", "rejected")
            assert (v.reason is not None) == (v.status == "rejected")
        assert result.stored + result.duplicates + sum(result.rejected.values()) == len(batch)
        seen["messages"] += len(batch)
        seen["stored"] += result.stored

    run()
    received = metrics.get("trustship_ingest_received_total")
    accepted = metrics.get("trustship_ingest_accepted_total")
    duplicates = metrics.get("trustship_ingest_duplicates_total")
    rejected = metrics.total("trustship_ingest_rejected_total")
    assert received == seen["messages"] >= 1000
    assert accepted + duplicates + rejected == received
    assert "invalid_payload" not in metrics.by_label("trustship_ingest_rejected_total", "reason")
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(ReadingRow)) == accepted == seen["stored"]
    assert seen["stored"] > 0, "no valid message was generated"
    engine.dispose()
