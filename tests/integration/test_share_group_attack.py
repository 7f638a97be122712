"""A device login must not be able to hide breach evidence (hardening finding 1).

The attack as outside testers ran it: while the cold-chain breach scenario is
published, spies log in with a real device's credentials using the stock
``mosquitto_sub`` (Debian's mosquitto-clients) and ask to join the oracles' shared
subscription group. Against the old broker config (``acl_file``) mosquitto accepted
them, gave each its round-robin turn, then refused it read access and dropped the
message for the whole group: one spy lost half the readings and the breach was
never proven. The shipped config (dynamic security) refuses the subscription, so:
every reading is stored, the breach is proven, the settlement is the terms', and
no device misses a reading.

Also: a device login that connects with an oracle's client id gets its own client id
(its username) and does not push the oracle off its persistent session.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from backend.telemetry.access import DEFAULT_SHARE_GROUP, TELEMETRY_FILTER
from iot_simulator import PublishStats, publish
from tests.integration.oracle_stack import (
    assert_every_reading_stored_once,
    assert_no_readings_missing,
    assert_nothing_twice_on_chain,
    assert_settled_as_expected,
    oracle_stack,
    wait_until_done,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SHARE = f"$share/{DEFAULT_SHARE_GROUP}/{TELEMETRY_FILTER}"


def spy(port: int, user: str, password: str, client_id: str, topic: str) -> subprocess.Popen[str]:
    """The outside testers' command line, verbatim but for host and port."""
    return subprocess.Popen(
        ["mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
         "-u", user, "-P", password, "-i", client_id, "-t", topic, "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.parametrize("spies", [1, 3])
def test_spies_with_device_logins_hide_nothing(tmp_path: Path, spies: int) -> None:
    with oracle_stack("postgresql", tmp_path) as stack:
        stack.oracle.start()
        stack.oracle.wait_subscribed()
        (fleet,) = stack.open_and_ship(["cold_chain_breach.yaml"])
        stack.move_clock_past_the_voyages()
        port = stack.broker.port
        logins = [(d.address, d.mqtt_password) for d in fleet.devices]
        procs = [spy(port, *logins[i % len(logins)], f"spy{i + 1}", SHARE) for i in range(spies)]
        result: dict[str, PublishStats] = {}

        def run() -> None:
            result["stats"] = publish(
                fleet, stack.device_url, speed=fleet.scenario.end_offset_s / 6.0,
                progress=False, connection="device",
            )  # fmt: skip

        publisher = threading.Thread(target=run, daemon=True)
        publisher.start()
        outputs = []
        for p in procs:
            try:
                out, err = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:  # still subscribed: the attack got in
                p.kill()
                out, err = p.communicate()
            outputs.append((p.returncode, out, err))
        publisher.join(timeout=60)
        stats = result["stats"]
        assert stats.refused == 0 and stats.acked == stats.messages

        # the spies: refused at SUBSCRIBE, never given a message
        for code, out, err in outputs:
            assert "All subscription requests were denied" in err, (code, out, err)
            assert out == ""

        wait_until_done(stack, timeout=120)
        assert assert_every_reading_stored_once(stack) == stats.telemetry
        assert_no_readings_missing(stack)
        events = assert_nothing_twice_on_chain(stack)
        assert events["ExcursionProven"] == 1
        assert_settled_as_expected(stack)  # the buyer's 40 % refund, as the terms say


def test_a_device_login_cannot_take_over_the_oracles_session(tmp_path: Path) -> None:
    """The oracle's process connects as MQTT user ``oracle`` (client id ``oracle``); a
    device login asking for client ids ``oracle`` and the configured ORACLE_CLIENT_ID
    is given its own username as client id: the oracle stays connected throughout."""
    with oracle_stack("sqlite", tmp_path) as stack:
        stack.oracle.start()
        stack.oracle.wait_subscribed()
        (fleet,) = stack.open_and_ship(["on_time_clean.yaml"])
        stack.move_clock_past_the_voyages()
        device = fleet.devices[0]
        squatters = []
        for client_id in ("oracle", "trustship-oracle-1"):
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
            c.username_pw_set(device.address, device.mqtt_password)
            c.connect("127.0.0.1", stack.broker.port)
            c.loop_start()
            squatters.append(c)
        time.sleep(1.0)
        stats = publish(fleet, stack.device_url, speed=float("inf"), progress=False)
        wait_until_done(stack, timeout=120)
        for c in squatters:
            c.disconnect()
            c.loop_stop()
        log = stack.oracle.output()
        assert log.count("connected to MQTT") == 1, "the oracle was pushed off the broker"
        assert "MQTT connection lost" not in log
        assert assert_every_reading_stored_once(stack) == stats.telemetry
        assert_settled_as_expected(stack)
