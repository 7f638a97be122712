"""Store-and-forward across a broker crash: mosquitto (deploy/mosquitto.conf,
persistence on) is killed with SIGKILL mid-scenario and restarted; the devices
keep measuring, buffer what they cannot send and flush it in order when the
broker is back. A persistent-session subscriber sees every seq of every device,
in order, with no gap (duplicates from QoS 1 redelivery are allowed: the oracle
drops them by (device, seq))."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.telemetry import decode_message, recover_device
from iot_simulator import PublishStats, build_fleet, load_scenario, publish
from iot_simulator.credentials import device_credentials
from iot_simulator.scenario import parse_scenario
from testkit.servers import restart, start_secured_mosquitto
from tests.iot_simulator.helpers import DOMAIN, SCENARIOS, T0, minimal_scenario

pytestmark = pytest.mark.integration

ORACLE_PW = "oracle-restart-password"


class PersistentSubscriber:
    """The oracle's side: MQTT 5, clean_start=False, session expiry, QoS 1."""

    def __init__(self, port: int) -> None:
        self.seqs: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.connects = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="oracle-restart", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set("oracle", ORACLE_PW)
        self.client.reconnect_delay_set(0.25, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_connect(self, c: mqtt.Client, u: Any, f: Any, rc: mqtt.ReasonCode, p: Any) -> None:
        if not rc.is_failure:
            self.connects += 1
            c.subscribe("trustship/v1/orders/+/devices/+/telemetry", qos=1)

    def _on_message(self, c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        s = decode_message(m.payload, m.topic)
        assert recover_device(s.reading, DOMAIN, s.signature) == s.device
        with self.lock:
            self.seqs.setdefault(s.device, []).append(s.reading.seq)

    def first_seen(self) -> dict[str, list[int]]:
        """Each device's seqs in arrival order, redeliveries of a seen seq dropped."""
        out: dict[str, list[int]] = {}
        with self.lock:
            for dev, seqs in self.seqs.items():
                seen: set[int] = set()
                out[dev] = [s for s in seqs if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_broker_killed_and_restarted_mid_scenario_loses_nothing() -> None:
    # 3 devices, a reading a minute for 6 h: 360 readings each, published over ~6 s
    data = minimal_scenario(devices=3, route=["rotterdam", "hamburg"], arrive_after_s=21600)
    data["orders"][0]["terms"]["deadline_s"] = 25000
    data["interval_s"] = 60
    sc = parse_scenario(data)
    fleet = build_fleet(sc, DOMAIN, {"box": 77}, T0)
    n = sc.reading_count(sc.orders[0])
    broker = start_secured_mosquitto(device_credentials_for(fleet), oracles={"oracle": ORACLE_PW})
    sub = PersistentSubscriber(broker.port)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["stats"] = publish(
                fleet, broker.extra["url"], speed=21600 / 6, progress=False, connection="device"
            )
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    try:
        deadline = time.monotonic() + 10
        while sub.connects == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        publisher = threading.Thread(target=run)
        publisher.start()
        time.sleep(2.0)
        received_before = sum(len(v) for v in sub.first_seen().values())
        broker.kill()  # SIGKILL by PID: no clean shutdown, no final save
        time.sleep(1.5)  # devices keep measuring and buffering meanwhile
        restart(broker)
        publisher.join(timeout=120)
        assert not publisher.is_alive(), "publisher did not finish"
        assert "error" not in result, result.get("error")
        stats: PublishStats = result["stats"]
        assert stats.reconnects >= 3  # every device connection came back
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = sub.first_seen()
            if len(got) == 3 and all(len(v) >= n for v in got.values()):
                break
            time.sleep(0.1)
        got = sub.first_seen()
        assert 0 < received_before < 3 * n  # the kill did land mid-scenario
        assert sorted(got) == sorted(fleet.devices_of("box"))
        for dev, seqs in got.items():
            assert seqs == list(range(1, n + 1)), f"{dev}: gap or reorder"
    finally:
        sub.close()
        broker.stop()


def device_credentials_for(fleet: Any) -> dict[str, str]:
    return {d.address: d.mqtt_password for d in fleet.devices}


def test_credentials_helper_matches_the_fleet() -> None:
    """The password-file writer and the publisher derive the same device logins."""
    creds = device_credentials([SCENARIOS / "on_time_clean.yaml"])
    fleet = build_fleet(load_scenario(SCENARIOS / "on_time_clean.yaml"), DOMAIN, None, T0)
    assert creds == device_credentials_for(fleet)
