"""Payloads that are not UTF-8 JSON with distinct keys, sent by a device through mosquitto
with the shipped config and ACL to the oracle storing into PostgreSQL: each is refused
with its reason and nothing of them is stored (issue 8, finding 6). The stock json
parser accepts every one of them; on main they were stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from backend.oracle.metrics import Metrics
from backend.oracle.service import Oracle, OracleConfig
from backend.oracle.subscriber import SubscriberConfig
from backend.store.db import upgrade_to_head
from backend.store.models import ReadingRow
from testkit.databases import postgres_schema_engine
from testkit.readings import DEVICES, DOMAIN, KEYS, T0, msg, seed
from testkit.servers import Server, start_secured_mosquitto
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

ORACLE_PW = "oracle-wire-password"
DEVICE_PW = "device-wire-password"


@pytest.fixture
def engine() -> Iterator[Engine]:
    with postgres_schema_engine() as eng:
        upgrade_to_head(eng)
        seed(eng, {1: [0]})
        yield eng


@pytest.fixture
def broker() -> Iterator[Server]:
    server = start_secured_mosquitto({DEVICES[0]: DEVICE_PW}, oracles={"oracle": ORACLE_PW})
    yield server
    server.stop()


def repeated(payload: bytes, key: str, value: object) -> bytes:
    return payload[:-1] + b"," + json.dumps({key: value})[1:-1].encode() + b"}"


def test_only_utf8_json_with_distinct_keys_is_stored(broker: Server, engine: Engine) -> None:
    def payload(seq: int) -> bytes:
        return msg(KEYS[0], 1, seq, timestamp=T0 + seq).payload

    sent = [
        (payload(1), "stored"),
        (payload(2).decode().encode("utf-16"), "not_utf8"),
        (payload(3).decode().encode("utf-16-le"), "not_utf8"),
        (b"\xef\xbb\xbf" + payload(4), "utf8_bom"),
        (repeated(payload(5), "temperatureCentiC", 2500), "duplicate_field"),
        (repeated(payload(6), "seq", 6), "duplicate_field"),
        (payload(7), "stored"),
    ]
    for body, _ in sent:
        json.loads(body)  # Python's parser takes every one of them
    metrics = Metrics()
    oracle = Oracle(
        engine,
        DOMAIN,
        OracleConfig(
            subscriber=SubscriberConfig(
                url=f"mqtt://oracle:{ORACLE_PW}@127.0.0.1:{broker.port}",
                client_id="wire-strict-" + uuid.uuid4().hex[:6],
            )
        ),
        metrics=metrics,
    )
    oracle.start()
    try:
        assert oracle.subscriber is not None and oracle.subscriber.wait_subscribed(), (
            broker.log_tail()
        )
        device = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="wire-device", protocol=mqtt.MQTTv5
        )
        device.username_pw_set(DEVICES[0], DEVICE_PW)
        device.connect("127.0.0.1", broker.port)
        device.loop_start()
        topic = msg(KEYS[0], 1, 1).topic
        for body, _ in sent:
            info = device.publish(topic, body, qos=1)
            info.wait_for_publish(10)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS
        device.disconnect()
        device.loop_stop()
        assert wait_for(lambda: metrics.get("trustship_ingest_received_total") == len(sent)), (
            metrics.get("trustship_ingest_received_total"),
            broker.log_tail(),
        )
    finally:
        oracle.stop()
    rejected = metrics.by_label("trustship_ingest_rejected_total", "reason")
    assert rejected == {"not_utf8": 2, "utf8_bom": 1, "duplicate_field": 2}, rejected
    with Session(engine) as s:
        seqs = sorted(s.scalars(select(ReadingRow.seq)))
        assert seqs == [1, 7], seqs
        assert s.scalar(select(func.count()).select_from(ReadingRow)) == 2
