"""deploy/mosquitto.conf + deploy/acl on a real mosquitto: who may connect, who
may publish where, and a whole scenario published with per-device credentials."""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.telemetry import decode_message, recover_device, status_topic, telemetry_topic
from backend.telemetry.access import DEFAULT_SHARE_GROUP, TELEMETRY_FILTER
from backend.telemetry.receipts import RECEIPT_FILTER, Receipt, decode_receipt, receipt_topic
from iot_simulator import build_fleet, load_scenario, publish
from iot_simulator.credentials import device_credentials
from testkit.servers import start_secured_mosquitto
from tests.iot_simulator.helpers import DOMAIN, SCENARIOS, T0

pytestmark = pytest.mark.integration

ORACLE_PW = "oracle-test-password"
#: One user per oracle connection: the broker makes the client id the username.
ORACLES = {"oracle": ORACLE_PW, "oracle-q": ORACLE_PW, "oracle-late": ORACLE_PW}
SPOOFED = SCENARIOS / "spoofed_device.yaml"
GAP = SCENARIOS / "connectivity_gap.yaml"


class Client:
    """A paho MQTT 5 client that records CONNACK, PUBACKs and messages."""

    def __init__(
        self, port: int, user: str | None, password: str | None, client_id: str = "",
        clean_start: bool = True, subscribe: str | list[str] | None = None,
    ) -> None:  # fmt: skip
        self.port = port
        self.connack: mqtt.ReasonCode | None = None
        self.pubacks: dict[int, str] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Condition()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.subscribe_to = [subscribe] if isinstance(subscribe, str) else (subscribe or [])
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", port, clean_start=clean_start, properties=props)
        self.client.loop_start()

    def _on_connect(self, c: mqtt.Client, u: Any, f: Any, rc: mqtt.ReasonCode, p: Any) -> None:
        with self.lock:
            self.connack = rc
            self.lock.notify_all()
        if not rc.is_failure and self.subscribe_to:
            c.subscribe([(t, 1) for t in self.subscribe_to])

    def _on_publish(self, c: mqtt.Client, u: Any, mid: int, rc: mqtt.ReasonCode, p: Any) -> None:
        with self.lock:
            self.pubacks[mid] = str(rc)
            self.lock.notify_all()

    def _on_message(self, c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(m)
            self.lock.notify_all()

    def wait_connack(self, timeout: float = 10) -> str:
        with self.lock:
            assert self.lock.wait_for(lambda: self.connack is not None, timeout), "no CONNACK"
            return str(self.connack)

    def publish(self, topic: str, payload: bytes, timeout: float = 10) -> str:
        info = self.client.publish(topic, payload, qos=1)
        with self.lock:
            assert self.lock.wait_for(lambda: info.mid in self.pubacks, timeout), "no PUBACK"
            return self.pubacks[info.mid]

    def topics(self) -> list[str]:
        with self.lock:
            return [m.topic for m in self.messages]

    def wait_count(self, n: int, timeout: float = 30, prefix: str = "") -> int:
        def count() -> int:
            return sum(1 for m in self.messages if m.topic.startswith(prefix))

        with self.lock:
            self.lock.wait_for(lambda: count() >= n, timeout)
            return count()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def fleet_creds() -> dict[str, str]:
    return device_credentials([SPOOFED, GAP])


@pytest.fixture(scope="module")
def broker(fleet_creds: dict[str, str]) -> Iterator[Any]:
    server = start_secured_mosquitto(fleet_creds, oracles=ORACLES)
    yield server
    server.stop()


@pytest.fixture
def oracle(broker: Any, request: pytest.FixtureRequest) -> Iterator[Client]:
    """The oracle, reading one order's topics (the order id is the indirect parameter)."""
    order_id = request.param
    topics = [
        f"trustship/v1/orders/{order_id}/devices/+/{kind}" for kind in ("telemetry", "status")
    ]
    c = Client(broker.port, "oracle", ORACLE_PW, subscribe=topics)
    assert c.wait_connack() == "Success"
    assert c.subscribed.wait(10)
    yield c
    c.close()


def test_anonymous_and_wrong_passwords_are_refused(
    broker: Any, fleet_creds: dict[str, str]
) -> None:
    device = next(iter(fleet_creds))
    refused = {"Not authorized", "Bad user name or password"}  # mosquitto 2.0.11 says the first
    attempts = [
        (None, None),
        (device, "wrong"),
        ("oracle", "wrong"),
        ("0x" + "ab" * 20, "x"),
        (device, fleet_creds[device]),
    ]
    clients = [Client(broker.port, user, pw) for user, pw in attempts]
    try:
        assert [c.wait_connack() in refused for c in clients] == [True] * 4 + [False]
        assert clients[-1].wait_connack() == "Success"
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("oracle", [5], indirect=True)
def test_a_device_publishes_only_under_its_own_address(
    broker: Any, oracle: Client, fleet_creds: dict[str, str]
) -> None:
    fleet = build_fleet(load_scenario(SPOOFED), DOMAIN, {"tapas": 5}, T0)
    me = fleet.devices[0]
    other = next(a for a in fleet_creds if a != me.address)
    c = Client(broker.port, me.address, me.mqtt_password)
    try:
        assert c.wait_connack() == "Success"
        msg = next(m for m in fleet.messages() if m.kind == "telemetry" and m.device == me.address)
        assert c.publish(msg.topic, msg.payload) == "Success"
        # another device's topics: refused at the broker, never delivered
        assert c.publish(telemetry_topic(5, other), msg.payload) == "Not authorized"
        assert c.publish(status_topic(5, other), b'{"status":"offline"}') == "Not authorized"
        assert c.publish("trustship/v1/orders/5/anything", b"x") == "Not authorized"
        assert oracle.wait_count(1) >= 1
        time.sleep(0.5)
        assert oracle.topics() == [msg.topic]
    finally:
        c.close()


@pytest.mark.parametrize("oracle", [1], indirect=True)
def test_the_oracle_only_reads(broker: Any, oracle: Client, fleet_creds: dict[str, str]) -> None:
    """The oracle publishes storage receipts and nothing else (not as a device)."""
    device = next(iter(fleet_creds))
    assert oracle.publish(telemetry_topic(1, device), b"{}") == "Not authorized"
    assert oracle.publish(status_topic(1, device), b"{}") == "Not authorized"


@pytest.mark.parametrize("oracle", [9], indirect=True)
def test_scenario_with_per_device_credentials(broker: Any, oracle: Client) -> None:
    """Every bound device's message arrives and verifies; the spoofers (no broker
    login) are refused at connect and their messages skipped."""
    fleet = build_fleet(load_scenario(SPOOFED), DOMAIN, {"tapas": 9}, T0)
    expected = [m for m in fleet.messages() if m.device in set(fleet.devices_of("tapas"))]
    stats = publish(fleet, broker.extra["url"], speed=math.inf, progress=False, connection="device")
    assert sorted(stats.refused_devices) == sorted(d.address for d in fleet.spoofers)
    assert stats.skipped == 9 and stats.acked == stats.messages == len(expected)
    assert oracle.wait_count(len(expected)) == len(expected)
    seqs: list[int] = []
    for m in oracle.messages:
        if m.topic.endswith("/telemetry"):
            s = decode_message(m.payload, m.topic)
            assert recover_device(s.reading, DOMAIN, s.signature) == s.device
            seqs.append(s.reading.seq)
    assert seqs == list(range(1, 31))


def test_spoofer_with_a_stolen_login_is_confined_to_its_own_topics(
    fleet_creds: dict[str, str],
) -> None:
    fleet = build_fleet(load_scenario(SPOOFED), DOMAIN, {"tapas": 9}, T0)
    creds = device_credentials([SPOOFED], include_spoofers=True)
    server = start_secured_mosquitto(creds, oracles=ORACLES)
    try:
        stats = publish(fleet, server.extra["url"], speed=math.inf, progress=False)
        # the impersonating spoofer's 3 readings on the real logger's topic are refused
        assert stats.refused == 3 and not stats.refused_devices
    finally:
        server.stop()


@pytest.mark.parametrize("oracle", [21], indirect=True)
def test_last_will_marks_a_device_offline(broker: Any, oracle: Client) -> None:
    """connectivity_gap drops the connections (DISCONNECT with will): the broker
    publishes each device's retained offline status, then the device comes back."""
    fleet = build_fleet(load_scenario(GAP), DOMAIN, {"berries": 21}, T0)
    stats = publish(fleet, broker.extra["url"], speed=math.inf, progress=False, connection="device")
    assert stats.wills == 3 and stats.reconnects == 3  # each drop is followed by a reconnect
    n_expected = sum(1 for m in fleet.messages())
    assert oracle.wait_count(n_expected) == n_expected
    wills = [
        json.loads(m.payload)
        for m in oracle.messages
        if m.topic.endswith("/status") and json.loads(m.payload).get("reason") == "connection_lost"
    ]
    assert len(wills) == 3 and all(w["status"] == "offline" for w in wills)
    # the retained status is the last one: offline after shutdown
    late = Client(
        broker.port, "oracle-late", ORACLE_PW, subscribe=status_topic(21, fleet.devices[0].address)
    )
    try:
        assert late.wait_count(1) == 1
        assert (
            late.messages[0].retain and json.loads(late.messages[0].payload)["reason"] == "shutdown"
        )
    finally:
        late.close()


def test_an_oracle_offline_for_a_while_loses_nothing(broker: Any) -> None:
    """More than mosquitto's default 1000 queued messages wait for a persistent session."""
    c = Client(broker.port, "oracle-q", ORACLE_PW, clean_start=False,
               subscribe=["trustship/v1/orders/+/devices/+/telemetry",
                          "trustship/v1/orders/+/devices/+/status"])  # fmt: skip
    assert c.wait_connack() == "Success" and c.subscribed.wait(10)
    c.close()  # the session (and its subscription) stays on the broker
    fleet = build_fleet(load_scenario(GAP), DOMAIN, {"berries": 330}, T0)
    total = 0
    for order_id in range(330, 336):  # the same devices, six orders: ~1,600 messages
        f = build_fleet(fleet.scenario, DOMAIN, {"berries": order_id}, T0)
        stats = publish(f, broker.extra["url"], speed=math.inf, progress=False)
        total += stats.messages + stats.wills  # the broker publishes each will itself
    assert total > 1000
    back = Client(broker.port, "oracle-q", ORACLE_PW, clean_start=False)
    try:
        assert back.wait_count(total, timeout=60, prefix="trustship/v1/orders/33") == total
    finally:
        back.close()


# ---- what a device login may not do ------------------------------------------------

SHARE = f"$share/{DEFAULT_SHARE_GROUP}/{TELEMETRY_FILTER}"


def mosquitto_sub(
    port: int, user: str, password: str, topic: str, *, until_subscribed: bool = False
) -> subprocess.CompletedProcess:
    """The stock client (Debian's mosquitto-clients), as an outside tester runs it: it
    waits up to 3 s for one message, or with ``until_subscribed`` exits as soon as the
    broker has answered the subscription (``-E``; a refusal is printed either way)."""
    wait = ["-E"] if until_subscribed else ["-C", "1", "-W", "3"]
    return subprocess.run(
        ["mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
         "-u", user, "-P", password, "-t", topic, *wait, "-v"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip


@pytest.mark.parametrize(
    "topic",
    [
        SHARE,
        f"$share/another-group/{TELEMETRY_FILTER}",
        TELEMETRY_FILTER,
        "trustship/v1/#",
        "#",
        "$share/trustship-oracle/#",
        "trustship/v1/orders/+/devices/+/status",
        "$SYS/#",
    ],
)
def test_a_device_login_is_refused_every_subscription_but_its_own_status(
    broker: Any, fleet_creds: dict[str, str], topic: str
) -> None:
    device, password = next(iter(fleet_creds.items()))
    done = mosquitto_sub(broker.port, device, password, topic)
    assert "All subscription requests were denied" in done.stderr, done
    assert done.stdout == ""
    own = mosquitto_sub(
        broker.port, device, password, status_topic(1, device), until_subscribed=True
    )
    assert own.returncode == 0 and "denied" not in own.stderr, own


def test_receipts_come_only_from_the_oracle_and_reach_only_their_device(
    broker: Any, fleet_creds: dict[str, str]
) -> None:
    (device, password), (other, other_pw) = list(fleet_creds.items())[:2]
    for topic in (receipt_topic(other), RECEIPT_FILTER, "trustship/v1/receipts/#"):
        done = mosquitto_sub(broker.port, device, password, topic)
        assert "All subscription requests were denied" in done.stderr, (topic, done)
    mine = Client(broker.port, device, password, subscribe=receipt_topic(device))
    theirs = Client(broker.port, other, other_pw, subscribe=receipt_topic(other))
    oracle = Client(broker.port, "oracle-late", ORACLE_PW)
    try:
        assert mine.subscribed.wait(10) and theirs.subscribed.wait(10)
        forged = Receipt(1, device, ((1, 100),))
        # no device may publish a receipt: neither its own nor another device's
        assert mine.publish(receipt_topic(device), forged.encode()) == "Not authorized"
        assert theirs.publish(receipt_topic(device), forged.encode()) == "Not authorized"
        real = Receipt(1, device, ((1, 3), (5, 5)))
        assert oracle.publish(receipt_topic(device), real.encode()) == "Success"
        assert mine.wait_count(1, timeout=10) == 1
        got = mine.messages[0]
        assert decode_receipt(bytes(got.payload), got.topic) == real
        assert theirs.wait_count(1, timeout=1) == 0
    finally:
        for c in (mine, theirs, oracle):
            c.close()


def test_a_device_login_cannot_take_the_oracles_client_id(
    broker: Any, fleet_creds: dict[str, str]
) -> None:
    """The broker makes every client id its username: a device asking for the oracle's
    client id gets its own, and the oracle's connection and session stay untouched."""
    drops: list[str] = []
    topics = [f"trustship/v1/orders/77/devices/+/{k}" for k in ("telemetry", "status")]
    o = Client(broker.port, "oracle", ORACLE_PW, client_id="oracle", subscribe=topics)
    o.client.on_disconnect = lambda *a: drops.append(str(a[3]))
    assert o.wait_connack() == "Success" and o.subscribed.wait(10)
    device, password = next(iter(fleet_creds.items()))
    squatter = Client(broker.port, device, password, client_id="oracle")
    try:
        assert squatter.wait_connack() == "Success"
        assert squatter.publish(status_topic(77, device), b'{"v":1}') == "Success"
        assert o.wait_count(1, timeout=10) == 1
        time.sleep(0.5)
        assert drops == [], f"the oracle was pushed off: {drops}"
    finally:
        squatter.close()
        o.close()


def test_control_an_acl_file_lets_one_spy_drop_half_the_telemetry(
    fleet_creds: dict[str, str], tmp_path: Any
) -> None:
    """The control for the tests above: with the old broker config (password_file +
    acl_file), mosquitto accepts a device login into the oracles' share group, then
    drops every message it routes to it — about half of them with one spy."""
    from testkit.servers import start_mosquitto

    device, password = next(iter(fleet_creds.items()))
    (tmp_path / "pw").write_text(f"oracle:{ORACLE_PW}\n{device}:{password}\n")
    subprocess.run(["mosquitto_passwd", "-U", str(tmp_path / "pw")], check=True)
    (tmp_path / "acl").write_text(
        "user oracle\ntopic read trustship/v1/#\npattern write trustship/v1/orders/+/devices/%u/#\n"
    )
    broker = start_mosquitto(
        ("user root\n" if os.geteuid() == 0 else "")
        + f"allow_anonymous false\npassword_file {tmp_path / 'pw'}\nacl_file {tmp_path / 'acl'}\n"
    )
    oracle = Client(broker.port, "oracle", ORACLE_PW, client_id="oracle", subscribe=SHARE)
    spy_proc = subprocess.Popen(
        ["mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
         "-u", device, "-P", password, "-i", "spy1", "-t", SHARE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pub = Client(broker.port, device, password)
    try:
        assert oracle.wait_connack() == "Success" and oracle.subscribed.wait(10)
        assert pub.wait_connack() == "Success"
        time.sleep(1.0)  # the spy has joined the group
        for i in range(100):
            assert pub.publish(telemetry_topic(1, device), b"%d" % i) == "Success"
        time.sleep(1.0)
        received = len(oracle.messages)
    finally:
        spy_proc.kill()
        spy_proc.communicate()
        pub.close()
        oracle.close()
        broker.stop()
    assert 30 <= received <= 70, f"the oracle received {received} of 100"
