"""The publisher against the embedded (in-process amqtt) broker: round trip,
flow control, pacing, URL handling and refusal errors."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from backend.telemetry import decode_message, recover_device
from backend.telemetry.receipts import Receipt
from iot_simulator import (
    PublishError,
    Retention,
    build_fleet,
    load_scenario,
    publish,
    start_embedded_broker,
)
from iot_simulator.publisher import BrokerURL, _Connection, parse_url
from iot_simulator.scenario import parse_scenario
from tests.iot_simulator.helpers import DOMAIN, SCENARIOS, T0, minimal_scenario


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    url, stop = start_embedded_broker()
    yield url
    stop()


class Collector:
    """A 3.1.1 subscriber (amqtt has no MQTT 5) that keeps every message."""

    def __init__(self, url: str) -> None:
        u = BrokerURL.parse(url)
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, *a: c.subscribe("trustship/v1/#", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(u.host, u.port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, m.payload))

    def wait_for(self, n: int, timeout: float = 30) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_embedded_broker_round_trip(broker: str) -> None:
    sc = load_scenario(SCENARIOS / "spoofed_device.yaml")
    fleet = build_fleet(sc, DOMAIN, {"tapas": 11}, T0)
    expected = [(m.topic, m.payload) for m in fleet.messages()]
    sub = Collector(broker)
    try:
        stats = publish(fleet, broker, speed=math.inf, progress=False)
        got = sub.wait_for(len(expected))
    finally:
        sub.close()
    assert stats.messages == len(expected) and stats.acked == len(expected)
    assert sorted(got) == sorted(expected)
    per_device: dict[str, list[int]] = {}
    for topic, payload in got:
        if topic.endswith("/telemetry"):
            s = decode_message(payload, topic)
            signer = recover_device(s.reading, DOMAIN, s.signature)
            assert signer in {d.address for d in fleet.all_devices}
            per_device.setdefault(signer, []).append(s.reading.seq)
    assert all(seqs == sorted(seqs) for seqs in per_device.values())  # in order per device


def test_window_bounds_unacknowledged_messages(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    peak = 0
    original = _Connection.publish

    def watched(self: _Connection, topic: str, payload: bytes, retain: bool) -> None:
        nonlocal peak
        original(self, topic, payload, retain)
        with self.cond:
            peak = max(peak, len(self.inflight))

    monkeypatch.setattr(_Connection, "publish", watched)
    fleet = build_fleet(load_scenario(SCENARIOS / "on_time_clean.yaml"), DOMAIN, None, T0)
    stats = publish(fleet, broker, speed=math.inf, progress=False, connection="shared", window=4)
    assert 1 <= peak <= 4
    assert stats.acked == stats.messages == fleet.message_count()


def test_pacing_follows_speed(broker: str) -> None:
    data = minimal_scenario(arrive_after_s=3600, terms={**minimal_scenario()["orders"][0]["terms"]})
    data["orders"][0]["route"] = ["rotterdam", "hamburg"]
    sc = parse_scenario(data)
    fleet = build_fleet(sc, DOMAIN, None, T0)
    start = time.monotonic()
    stats = publish(fleet, broker, speed=3600, progress=False)  # one scenario hour = 1 s
    elapsed = time.monotonic() - start
    assert stats.telemetry == 12
    assert 0.9 < stats.wall_s < 5 and elapsed >= 0.9


def test_unreachable_broker_is_a_clear_error() -> None:
    fleet = build_fleet(load_scenario(SCENARIOS / "on_time_clean.yaml"), DOMAIN, None, T0)
    from testkit.servers import free_port

    with pytest.raises(
        PublishError, match=r"cannot reach the MQTT broker at mqtt://127.0.0.1:\d+: "
    ):
        publish(fleet, f"mqtt://127.0.0.1:{free_port()}", progress=False, connect_timeout=1.5)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://h", ("h", 1883, None, None, False)),
        ("mqtts://h", ("h", 8883, None, None, True)),
        ("mqtt://u%40x:p%3Aw@h:1999", ("h", 1999, "u@x", "p:w", False)),
    ],
)
def test_broker_url(url: str, expected: tuple[object, ...]) -> None:
    u = BrokerURL.parse(url)
    assert (u.host, u.port, u.username, u.password, u.tls) == expected
    assert "p:w" not in u.redacted()


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://h:notaport"])
def test_bad_broker_url(url: str) -> None:
    with pytest.raises(PublishError, match="MQTT URL"):
        parse_url(url)


class Receipter(Collector):
    """Stands in for the oracle: answers each reading with a receipt naming it, except
    the first time it sees the seqs in ``lose`` (as if the broker had lost them)."""

    def __init__(self, url: str, lose: set[int]) -> None:
        self.lose = set(lose)
        super().__init__(url)

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        super()._on_message(c, u, m)
        if not m.topic.endswith("/telemetry"):
            return
        s = decode_message(m.payload, m.topic)
        if s.reading.seq in self.lose:
            self.lose.discard(s.reading.seq)
            return
        r = Receipt(s.reading.order_id, s.device, ((s.reading.seq, s.reading.seq),))
        c.publish(r.topic, r.encode(), qos=1)


def _small_fleet() -> Any:
    data = minimal_scenario(devices=1, route=["rotterdam", "hamburg"], arrive_after_s=3600)
    data["interval_s"] = 300
    return build_fleet(parse_scenario(data), DOMAIN, {"box": 5}, T0)


def test_retention_resends_what_no_receipt_named_until_it_is_stored(broker: str) -> None:
    fleet = _small_fleet()
    n = sum(1 for m in fleet.messages() if m.kind == "telemetry")
    oracle = Receipter(broker, lose={2, 3})
    try:
        keep = Retention(resend_after_s=0.3, confirm_timeout_s=20)
        stats = publish(fleet, broker, speed=math.inf, progress=False, retention=keep)
    finally:
        oracle.close()
    assert stats.unconfirmed == 0 and stats.retention_dropped == 0
    assert stats.resent >= 2 and stats.receipts >= n
    assert 1 <= stats.held_peak <= n and stats.held_peak_bytes > 0
    seqs = [
        decode_message(p, t).reading.seq for t, p in oracle.messages if t.endswith("/telemetry")
    ]
    assert seqs.count(2) >= 2 and seqs.count(3) >= 2 and set(seqs) == set(range(1, n + 1))


def test_without_receipts_the_readings_stay_unconfirmed_and_a_full_buffer_drops(
    broker: str,
) -> None:
    fleet = _small_fleet()
    n = sum(1 for m in fleet.messages() if m.kind == "telemetry")
    keep = Retention(max_readings=5, resend_after_s=60, confirm_timeout_s=0.5)
    stats = publish(fleet, broker, speed=math.inf, progress=False, retention=keep)
    assert n > 5
    assert stats.unconfirmed == 5 and stats.retention_dropped == n - 5
    assert stats.held_peak == 5
