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
from iot_simulator import PublishError, build_fleet, load_scenario, publish, start_embedded_broker
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
