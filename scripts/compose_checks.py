"""Broker checks that scripts/compose_smoke.sh runs inside the compose stack.

    docker compose --profile simulator run --rm -T --no-deps \\
        -v "$PWD/scripts/compose_checks.py:/app/compose_checks.py:ro" \\
        --entrypoint python simulator compose_checks.py

It runs in the simulator service's container (the TrustShip image, the stack's
network, ``MQTT_URL=mqtt://mosquitto:1883`` without credentials) and proves, with
each device's own login, what deploy/mosquitto.conf and its access file promise:

* a client without credentials, and a device with a wrong password, are refused
  at CONNECT;
* a device publishing under another device's topics (telemetry, status) gets a
  PUBACK "Not authorized", and the other device, subscribed to its own status
  topic, never receives the spoofed message;
* a device asking to join the oracles' shared subscription, to read every device's
  telemetry, or ``#``, gets SUBACK "Not authorized" (docs/simulator.md, "Broker
  security");
* the controls: the same devices publish under their own topics, and the one
  subscribed receives its own status message (so the checks can fail).

It logs in as devices only, never as the oracle (whose session belongs to the
trustship service). Order 0 is used, which no scenario has: the oracle refuses
the control telemetry as not a reading, and stores nothing. Exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from backend.telemetry import status_topic, telemetry_topic
from backend.telemetry.access import DEFAULT_SHARE_GROUP, TELEMETRY_FILTER
from backend.telemetry.broker import BrokerURL
from iot_simulator.credentials import device_credentials

TIMEOUT_S = 10.0
QUIET_S = 2.0  # how long a message that must not arrive is waited for
ORDER = 0  # an order id no scenario has
#: The oracles' shared subscription: a device login must not get into the group.
SHARE = f"$share/{DEFAULT_SHARE_GROUP}/{TELEMETRY_FILTER}"


class Client:
    """One MQTT 5 connection that records its CONNACK, PUBACKs and messages."""

    def __init__(self, url: BrokerURL, user: str | None, password: str | None) -> None:
        self.lock = threading.Condition()
        self.connack: mqtt.ReasonCode | None = None
        self.pubacks: dict[int, mqtt.ReasonCode] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = False
        self.suback: list[Any] = []
        client_id = user or f"compose-check-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect_async(url.host, url.port, clean_start=True)
        self.client.loop_start()

    def _on_connect(self, c: mqtt.Client, u: Any, f: Any, rc: mqtt.ReasonCode, p: Any) -> None:
        with self.lock:
            self.connack = rc
            self.lock.notify_all()

    def _on_publish(self, c: mqtt.Client, u: Any, mid: int, rc: mqtt.ReasonCode, p: Any) -> None:
        with self.lock:
            self.pubacks[mid] = rc
            self.lock.notify_all()

    def _on_message(self, c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, m.payload))
            self.lock.notify_all()

    def _on_subscribe(self, c: mqtt.Client, u: Any, mid: int, rcs: Any, p: Any) -> None:
        with self.lock:
            self.subscribed = True
            self.suback = list(rcs)
            self.lock.notify_all()

    def wait_connack(self) -> mqtt.ReasonCode:
        with self.lock:
            if not self.lock.wait_for(lambda: self.connack is not None, TIMEOUT_S):
                raise AssertionError("no CONNACK")
            assert self.connack is not None
            return self.connack

    def subscribe(self, topic: str) -> Any:
        """Subscribe with QoS 1 and return the SUBACK's reason code."""
        with self.lock:
            self.subscribed = False
        self.client.subscribe(topic, qos=1)
        with self.lock:
            if not self.lock.wait_for(lambda: self.subscribed, TIMEOUT_S):
                raise AssertionError(f"no SUBACK for {topic}")
            return self.suback[0]

    def publish(self, topic: str, payload: bytes) -> mqtt.ReasonCode:
        """Publish with QoS 1 and return the PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        with self.lock:
            if not self.lock.wait_for(lambda: mid in self.pubacks, TIMEOUT_S):
                raise AssertionError(f"no PUBACK for {topic}")
            return self.pubacks[mid]

    def received(self, topic: str, payload: bytes, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: (topic, payload) in self.messages, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def check(self, ok: bool, what: str, detail: str) -> None:
        print(f"    {'ok  ' if ok else 'FAIL'} {what}: {detail}", flush=True)
        self.failed += not ok


def run(url: BrokerURL, scenarios: list[Path]) -> int:
    creds: dict[str, str] = {}
    for path in scenarios:
        creds.update(device_credentials([path]))
    (a, a_pw), (b, b_pw) = list(creds.items())[:2]
    checks = Checks()
    print(f"    broker {url.host}:{url.port}; device A {a}, device B {b}", flush=True)

    anon = Client(url, None, None)
    rc = anon.wait_connack()
    checks.check(rc.is_failure, "a client without credentials is refused", f"CONNACK {rc}")
    anon.close()

    wrong = Client(url, b, "not-" + b_pw)
    rc = wrong.wait_connack()
    checks.check(rc.is_failure, "device B with a wrong password is refused", f"CONNACK {rc}")
    wrong.close()

    dev_b = Client(url, b, b_pw)
    rc = dev_b.wait_connack()
    checks.check(not rc.is_failure, "device B logs in with its own password", f"CONNACK {rc}")
    dev_a = Client(url, a, a_pw)
    rc = dev_a.wait_connack()
    checks.check(not rc.is_failure, "device A logs in with its own password", f"CONNACK {rc}")
    if checks.failed:
        return 1
    for topic in (SHARE, TELEMETRY_FILTER, "#"):
        rc = dev_a.subscribe(topic)
        checks.check(rc.is_failure, f"device A subscribing to {topic}", f"SUBACK {rc}")
    rc = dev_b.subscribe(status_topic(ORDER, b))
    checks.check(
        not rc.is_failure, "control: device B subscribes to its own status", f"SUBACK {rc}"
    )

    body = json.dumps({"check": "compose smoke", "from": a}).encode()
    rc = dev_a.publish(telemetry_topic(ORDER, b), body)
    checks.check(
        rc.is_failure, "device A publishing telemetry under device B's address", f"PUBACK {rc}"
    )
    rc = dev_a.publish(status_topic(ORDER, b), body)
    checks.check(rc.is_failure, "device A publishing device B's status", f"PUBACK {rc}")
    arrived = dev_b.received(status_topic(ORDER, b), body, QUIET_S)
    checks.check(
        not arrived,
        "device B never receives the status device A spoofed",
        f"nothing in {QUIET_S:.0f} s" if not arrived else "it arrived",
    )

    rc = dev_a.publish(telemetry_topic(ORDER, a), body)
    checks.check(not rc.is_failure, "control: device A under its own address", f"PUBACK {rc}")
    own = json.dumps({"check": "compose smoke", "from": b}).encode()
    rc = dev_b.publish(status_topic(ORDER, b), own)
    checks.check(not rc.is_failure, "control: device B publishes its own status", f"PUBACK {rc}")
    arrived = dev_b.received(status_topic(ORDER, b), own, TIMEOUT_S)
    checks.check(
        arrived, "control: device B receives its own status", "arrived" if arrived else "lost"
    )
    dev_a.close()
    dev_b.close()
    return 1 if checks.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scenarios",
        nargs="*",
        type=Path,
        default=[Path("scenarios/brief_excursion.yaml"), Path("scenarios/on_time_clean.yaml")],
        help="scenarios whose devices act as A and B (the first two devices)",
    )
    args = parser.parse_args(argv)
    url = BrokerURL.parse(os.environ.get("MQTT_URL", "mqtt://mosquitto:1883"))
    return run(url, args.scenarios)


if __name__ == "__main__":
    sys.exit(main())
