"""A party's own watcher on real servers: anvil, mosquitto from deploy/mosquitto.conf
(dynamic security, with an admin login for the API), PostgreSQL for the API's index.

* The oracle is down: the buyer gets a broker login from the API, runs
  ``trustship watch`` with its own key, and the breach the operator never saw is
  proven on chain by the buyer; the order settles as its terms say; the login is
  deleted when the order ends.
* The login reads its own order and nothing else: another order's topics, wildcards
  over all orders and the oracles' share group are refused at SUBSCRIBE, publishing
  is refused (paho and the stock ``mosquitto_sub`` / ``mosquitto_pub``).
* The oracle and a watcher on the same breach: one proof on chain, the watcher's is
  "already done"; forged readings (a wrong signature, a device not bound to the order)
  are refused and never stored or submitted.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from backend.api.app import create_app
from backend.api.broker_logins import BrokerLogins
from backend.api.context import ApiContext
from backend.api.parties import PartyRegistry, dev_api_key, dev_parties
from backend.chain.contracts import OrderState
from backend.core.settings import Settings
from backend.indexer import ChainIndexer
from backend.store.db import session_factory, upgrade_to_head
from backend.store.models import OrderRow
from backend.telemetry import Reading, SignedReading, encode_message, sign_reading, telemetry_topic
from backend.telemetry.access import DEFAULT_SHARE_GROUP
from backend.telemetry.broker import BrokerURL
from backend.telemetry.dynsec import BrokerAdmin
from backend.watcher import ChainView, Subscriber, Watcher, WatcherConfig, WatcherStore
from backend.watcher.service import ALREADY_DONE, PROVEN, PROVEN_BY_ANOTHER, run_watcher
from iot_simulator import build_fleet, load_scenario, publish
from iot_simulator.credentials import device_credentials
from testkit.servers import free_port
from tests.integration.oracle_stack import SCENARIOS, CrashStack, chain_events, oracle_stack

pytestmark = pytest.mark.integration

ADMIN_USER, ADMIN_PASSWORD = "broker-admin", "watcher-test-admin-password"


# ---------------------------------------------------------------------------
# the env: servers, the API (in process, on the env's PostgreSQL), helpers
# ---------------------------------------------------------------------------


class Stack:
    def __init__(self, servers: CrashStack, tmp: Path) -> None:
        self.s = servers
        self.tmp = tmp
        upgrade_to_head(servers.engine)
        c = servers.driver.contracts
        self.indexer = ChainIndexer(
            servers.engine,
            servers.chain,
            c,
            start_block=servers.deployment.block_number,
        )
        admin = BrokerAdmin(
            BrokerURL.parse(f"mqtt://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{servers.broker.port}")
        )
        sessions = session_factory(servers.engine)
        self.logins = BrokerLogins(admin, sessions)
        context = ApiContext(
            settings=Settings(_env_file=None, DEV_MODE=True),  # type: ignore[call-arg]
            session_factory=sessions,
            parties=PartyRegistry(dev_parties()),
            broker_logins=self.logins,
            deployment=servers.deployment,
            chain_id=servers.chain.chain_id,
        )
        self.api = TestClient(create_app(context))
        self.po = c.po

    def sync(self, order_id: int | None = None) -> None:
        """The API's index up to date: this process's indexer while the oracle is down;
        once it runs, the oracle's own indexer (one writer) — wait until it has the order."""
        if not self.s.oracle.alive:
            while self.indexer.run_once():
                pass
            return
        if order_id is not None:
            with Session(self.s.engine) as s:
                self.wait(
                    f"order {order_id} indexed",
                    lambda: s.get(OrderRow, order_id, populate_existing=True) is not None,
                    30,
                )

    def credentials(self, order_id: int, who: str = "buyer") -> dict[str, Any]:
        self.sync(order_id)
        r = self.api.post(
            "/account/mqtt-credentials",
            json={"order_id": order_id},
            headers={"X-API-Key": dev_api_key(who)},
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def ship(self, scenario: str) -> tuple[Any, int]:
        (fleet,) = self.s.open_and_ship([scenario])[-1:]
        (order_id,) = fleet.order_ids.values()
        return fleet, order_id

    def wait(self, what: str, check: Any, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} after {timeout:.0f} s")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("watcher")
    with oracle_stack("postgresql", tmp, broker_admins={ADMIN_USER: ADMIN_PASSWORD}) as servers:
        yield Stack(servers, tmp)


def events_of(env: Stack, order_id: int, name: str) -> list[Any]:
    return [e for e in chain_events(env.s) if e.name == name and int(e.args["orderId"]) == order_id]


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def watch_process(env: Stack, order_id: int, creds: dict[str, Any]) -> Iterator[int]:
    """``trustship watch`` as the buyer on its own machine would run it; the HTTP port."""
    buyer = env.s.chain.accounts.require("buyer")
    creds_file = env.tmp / f"creds-{order_id}.json"
    creds_file.write_text(json.dumps(creds))
    # What the party takes from the operator: PurchaseOrders' address (the rest of the
    # contracts the watcher reads from PurchaseOrders on chain).
    deployment_file = env.tmp / "api-deployment.json"
    deployment_file.write_text(env.api.get("/deployment").text)
    key_file = env.tmp / "buyer.key"
    key_file.write_text(buyer.key.hex())
    port = free_port()
    log = (env.tmp / f"watch-{order_id}.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "trustship"),
            "watch",
            "--order", str(order_id),
            "--rpc-url", env.s.anvil.extra["url"],
            "--deployment", str(deployment_file),
            "--mqtt-url", f"mqtt://127.0.0.1:{env.s.broker.port}",
            "--credentials", str(creds_file),
            "--key-file", str(key_file),
            "--db", str(env.tmp / f"watch-{order_id}.sqlite"),
            "--grace-secs", "1",
            "--serve", str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    def subscribed() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"trustship watch exited: {_tail(env, order_id)}")
        try:
            return bool(_get(port, "/health")["subscribed"])
        except OSError:
            return False

    try:
        env.wait("subscribed", subscribed, 60)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _tail(env: Stack, order_id: int) -> str:
    path = env.tmp / f"watch-{order_id}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""


def _connack(port: int, user: str, password: str) -> str:
    got: queue.Queue[str] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.on_connect = lambda c, u, f, rc, p: got.put(str(rc))
    c.connect_async("127.0.0.1", port)
    c.loop_start()
    try:
        return got.get(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()


# ---------------------------------------------------------------------------
# 1. the operator is down: the buyer's watcher proves the breach
# ---------------------------------------------------------------------------


def test_with_the_oracle_down_the_buyers_watcher_proves_the_breach(env: Stack) -> None:
    assert not env.s.oracle.alive  # never started: nobody but the buyer watches
    buyer = env.s.chain.accounts.require("buyer").address
    fleet, order_id = env.ship("cold_chain_breach.yaml")
    (order,) = fleet.scenario.orders
    creds = env.credentials(order_id)
    assert creds["topics"] == [
        f"trustship/v1/orders/{order_id}/devices/+/telemetry",
        f"trustship/v1/orders/{order_id}/devices/+/status",
    ]
    with watch_process(env, order_id, creds) as port:
        stats = publish(
            fleet, env.s.device_url, speed=math.inf, connection="device", progress=False
        )
        assert stats.refused == 0
        env.wait("breached", lambda: env.po.get_order(order_id).breached)
        (proof,) = events_of(env, order_id, "ExcursionProven")
        assert proof.args["submitter"] == buyer  # the buyer's own key, not the oracle's
        # The readings carry the voyage's times: move the chain past them, and the
        # watcher's arrival proof (retried until then) goes in and settles the order.
        env.s.move_clock_past_the_voyages()
        env.wait("settled", lambda: env.po.get_order(order_id).state == OrderState.SETTLED)

        record = _get(port, f"/orders/{order_id}/readings")
        assert (
            record["count"]
            == stats.telemetry
            == len(fleet.devices) * len(list(fleet.readings(fleet.devices[0])))
        )
        gaps = _get(port, f"/orders/{order_id}/gaps")
        assert gaps["gaps"] == {d.address: [] for d in fleet.devices}
        assert gaps["refused"] == {}
        outcomes = [
            (s["kind"], s["outcome"]) for s in _get(port, f"/orders/{order_id}/submissions")["data"]
        ]
        assert ("prove_excursion", PROVEN) in outcomes
        assert ("prove_arrival", PROVEN) in outcomes, _tail(env, order_id)

    (settled,) = events_of(env, order_id, "OrderSettled")
    assert (settled.args["buyerAmount"], settled.args["supplierAmount"]) == (
        order.expected.buyer,
        order.expected.supplier,
    )
    assert [e.args["submitter"] for e in events_of(env, order_id, "ArrivalProven")] == [buyer]

    # The order has ended: its logins are deleted, the broker refuses them.
    env.sync()
    assert env.logins.revoke_ended([order_id]) == [creds["username"]]
    assert "Not authorized" in _connack(env.s.broker.port, creds["username"], creds["password"])
    r = env.api.post(
        "/account/mqtt-credentials",
        json={"order_id": order_id},
        headers={"X-API-Key": dev_api_key("buyer")},
    )
    assert (r.status_code, r.json()["code"]) == (409, "order_ended")


# ---------------------------------------------------------------------------
# 2. what a watcher's login may not do
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rough(env: Stack) -> tuple[Any, int]:
    """rough_handling (one device, a shock breach), shipped; the oracle runs from now on."""
    env.s.oracle.start()
    env.s.oracle.wait_subscribed()
    return env.ship("rough_handling.yaml")


def test_a_watcher_login_reads_its_order_and_nothing_else(
    env: Stack, rough: tuple[Any, int]
) -> None:
    _, mine = rough
    _, other = env.ship("brief_excursion.yaml")
    creds = env.credentials(mine, who="auditor")  # an auditor may watch too: read-only
    user, pw, port = creds["username"], creds["password"], env.s.broker.port
    refused_filters = [
        f"trustship/v1/orders/{other}/devices/+/telemetry",
        f"trustship/v1/orders/{other}/devices/+/status",
        "trustship/v1/orders/+/devices/+/telemetry",
        "trustship/v1/#",
        "#",
        f"$share/{DEFAULT_SHARE_GROUP}/trustship/v1/orders/{mine}/devices/+/telemetry",
        f"$share/{DEFAULT_SHARE_GROUP}/trustship/v1/orders/+/devices/+/telemetry",
    ]
    assert shutil.which("mosquitto_sub") and shutil.which("mosquitto_pub")
    common = ["-V", "mqttv5", "-h", "127.0.0.1", "-p", str(port), "-u", user, "-P", pw]
    for topic in refused_filters:
        p = subprocess.run(
            ["mosquitto_sub", *common, "-t", topic, "-W", "2", "-d"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        out = p.stdout + p.stderr
        assert "All subscription requests were denied" in out, (topic, out)
    own = f"trustship/v1/orders/{mine}/devices/+/telemetry"
    p = subprocess.run(
        ["mosquitto_sub", *common, "-t", own, "-W", "1", "-d"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert "denied" not in p.stdout + p.stderr and "Subscribed (mid: 1): 0" in p.stdout + p.stderr
    for topic in (
        telemetry_topic(mine, "0x" + "11" * 20),
        f"trustship/v1/orders/{other}/devices/x/telemetry",
        "$CONTROL/dynamic-security/v1",
    ):
        p = subprocess.run(
            ["mosquitto_pub", *common, "-t", topic, "-m", "{}", "-q", "1", "-d"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert "Not authorized" in p.stdout + p.stderr, (topic, p.stdout + p.stderr)

    # Deliveries too: a reading on the other order never reaches this login.
    got: list[str] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, pw)
    subscribed = threading.Event()
    c.on_connect = lambda c, u, f, rc, p: c.subscribe([(own, 1), (refused_filters[0], 1)])
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda c, u, m: got.append(m.topic)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert subscribed.wait(10)
        other_fleet = env.s.fleets[-1]
        publish(other_fleet, env.s.device_url, speed=math.inf, connection="device", progress=False)
        time.sleep(1.0)  # a delivery, if there were one, would be queued by now
        assert [t for t in got if f"/orders/{other}/" in t] == []
    finally:
        c.disconnect()
        c.loop_stop()


# ---------------------------------------------------------------------------
# 3 + 4. oracle and watcher on one breach; forged readings
# ---------------------------------------------------------------------------


def test_oracle_and_watcher_prove_one_breach_and_forgeries_are_refused(
    env: Stack, rough: tuple[Any, int]
) -> None:
    fleet, order_id = rough
    buyer = env.s.chain.accounts.require("buyer")
    creds = env.credentials(order_id)
    c = env.s.driver.contracts
    offset = [0.0]
    watcher = Watcher(
        ChainView(env.s.chain, c, from_block=env.s.deployment.block_number),
        c,
        buyer,
        WatcherStore(env.tmp / "rough.sqlite"),
        WatcherConfig((order_id,), grace_secs=3600, refresh_secs=0.5),
        clock=lambda: time.time() + offset[0],
    )
    inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
    url = BrokerURL.parse(f"mqtt://127.0.0.1:{env.s.broker.port}")
    sub = Subscriber(
        BrokerURL(url.host, url.port, creds["username"], creds["password"], False, None, False),
        [order_id],
        inbox,
    )
    stop = threading.Event()
    thread = threading.Thread(target=run_watcher, args=(watcher, [sub], inbox, stop), daemon=True)
    thread.start()
    try:
        assert sub.subscribed.wait(20) and sub.denied == []
        # Forgeries first: a bound device's login with a signature not the device's, and
        # a properly signed reading of a device that is not bound to this order.
        (device,) = fleet.devices
        logins = device_credentials(sorted(SCENARIOS.glob("*.yaml")))
        forged = Reading(order_id, 900_000, fleet.t0 + 60, 2500, 500, 99_000, 0, 0, 0)
        bad_sig = SignedReading(
            forged, device.address, sign_reading(forged, fleet.domain, b"\x07" * 32)
        )
        stranger_fleet = build_fleet(
            load_scenario(SCENARIOS / "on_time_clean.yaml"),
            fleet.domain,
            {o.name: order_id for o in load_scenario(SCENARIOS / "on_time_clean.yaml").orders},
            t0=fleet.t0,
        )
        stranger = stranger_fleet.devices[0]
        _, unbound = next(iter(stranger_fleet.readings(stranger)))
        for signed, login in ((bad_sig, device), (unbound, stranger)):
            _publish_one(env.s.broker.port, login.address, logins[login.address], signed)
        env.wait(
            "forgeries refused",
            lambda: watcher.refusals(order_id) == {"bad_signature": 1, "unbound_device": 1},
            30,
        )

        # The oracle refuses readings far ahead of its clock: the chain goes past the
        # voyage first (its indexer polls every 0.5 s).
        env.s.move_clock_past_the_voyages()
        time.sleep(2)
        # The voyage up to the destination (an arrival would hurry the watcher: below).
        (order,) = fleet.scenario.orders
        voyage = (m for m in fleet.messages() if m.offset_s < order.arrive_after_s)
        publish(
            fleet, env.s.device_url, speed=math.inf, connection="device", progress=False,
            messages=voyage,
        )  # fmt: skip
        env.wait("breached by the oracle", lambda: env.po.get_order(order_id).breached)
        env.wait("the watcher's evidence", lambda: order_id in watcher.breach)
        # The oracle proved it; the watcher, asked to prove it anyway, is told so.
        second = watcher.prove_breach_now(order_id)
        assert (second.outcome, second.tx_hash) == (ALREADY_DONE, None), second
        assert "AlreadyBreached" in second.detail
        # And when its grace runs out it looks at the chain first and sends nothing.
        offset[0] = 7200
        env.wait("grace over", lambda: order_id not in watcher.breach, 30)
        outcomes = [s.outcome for s in watcher.store.submissions(order_id)]
        assert outcomes[:2] == [ALREADY_DONE, PROVEN_BY_ANOTHER]
    finally:
        stop.set()
        thread.join(timeout=20)

    proofs = events_of(env, order_id, "ShockProven") + events_of(env, order_id, "ExcursionProven")
    assert len(proofs) == 1
    assert proofs[0].args["submitter"] == env.s.chain.accounts.oracle.address
    # The forgeries are nowhere in the watcher's record.
    held = watcher.store.device_readings(order_id)
    assert set(held) == {device.address}
    assert 900_000 not in {r.seq for r in held[device.address]}
    sent = [m for m in fleet.messages() if m.offset_s < order.arrive_after_s and m.reading]
    assert len(held[device.address]) == len(sent)


def _publish_one(port: int, user: str, password: str, signed: SignedReading) -> None:
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.on_publish = lambda *a: done.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(
            telemetry_topic(signed.reading.order_id, signed.device), encode_message(signed), qos=1
        )
        assert done.wait(10)
    finally:
        c.disconnect()
        c.loop_stop()
