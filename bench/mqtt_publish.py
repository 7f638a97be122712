"""Simulator publish benchmark: readings per second into a real mosquitto.

A fleet of 1,000 devices (20 orders x 50 devices, `--readings` each) is
published by iot_simulator.publish (QoS 1, unpaced, shared connection: the mode
for big fleets) into a mosquitto this script starts (free port, queue limits
raised, stopped by PID). A subscriber in a separate process counts receipts; the
rate is telemetry received / time from the first to the last receipt. Signing
and message generation are measured on their own, so the publisher's limits are
visible: a reading is signed when the stream is consumed, so publish <= generate.

    .venv/bin/python bench/mqtt_publish.py                 # 3 runs, medians
    .venv/bin/python bench/mqtt_publish.py --runs 5 --readings 40

Prints a table and writes bench/results/mqtt_publish.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from backend.telemetry import Domain, Reading, sign_reading
from iot_simulator import build_fleet, publish
from iot_simulator.fleet import Fleet
from iot_simulator.scenario import parse_scenario
from testkit import REPO
from testkit.servers import start_mosquitto

DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
BROKER_CONF = """allow_anonymous true
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 1000
"""
console = Console()

# Runs in its own process: counts telemetry receipts, prints one JSON line.
SUBSCRIBER = r"""
import json, sys, threading, time
import paho.mqtt.client as mqtt
port, expected, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
state = {"n": 0, "first": None, "last": None}
done = threading.Event()
ready = threading.Event()
def on_connect(c, u, f, rc, p):
    c.subscribe("trustship/v1/orders/+/devices/+/telemetry", qos=1)
def on_subscribe(*a):
    ready.set()
def on_message(c, u, m):
    now = time.perf_counter()
    if state["first"] is None:
        state["first"] = now
    state["n"] += 1
    state["last"] = now
    if state["n"] >= expected:
        done.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=mqtt.MQTTv5)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", port)
c.loop_start()
ready.wait(10)
print("ready", flush=True)
done.wait(timeout)
c.loop_stop()
span = (state["last"] - state["first"]) if state["n"] > 1 else 0.0
print(json.dumps({"received": state["n"], "span_s": span}), flush=True)
"""


def mosquitto_version() -> str:
    out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "mosquitto"


def make_fleet(devices: int, readings: int, orders: int = 20) -> Fleet:
    per_order = devices // orders
    interval = 60
    order_template: dict[str, Any] = {
        "devices": per_order,
        "route": ["rotterdam", "hamburg"],
        "arrive_after_s": readings * interval,
        "terms": {
            "price": 1_000_000,
            "token": "TUSD",
            "deadline_s": readings * interval + 3600,
            "geofence_e6": 20000,
            "min_temp_centi_c": 200,
            "max_temp_centi_c": 800,
        },
        "sensors": {"set_point_centi_c": 500},
        "expected": {"buyer": 0, "supplier": 1_000_000, "breach": False, "late_s": 0},
    }
    data = {
        "name": "bench",
        "seed": "bench",
        "interval_s": interval,
        "status_interval_s": 10**9,  # telemetry only, apart from boot/shutdown status
        "parties": {"buyer": "B", "supplier": "S", "arbiter": "A"},
        "orders": [{**order_template, "name": f"o{i}"} for i in range(orders)],
    }
    # a 1-reading-per-minute truck covering 400 km in a few minutes is too fast: this
    # benchmark does not care, so the speed check is relaxed by a longer route
    data["orders"] = [
        {**o, "route": ["rotterdam", {"name": "near", "lat": 51.99, "lon": 4.2}]}
        for o in data["orders"]
    ]
    return build_fleet(parse_scenario(data), DOMAIN, None, 1_700_000_000)


def signing_rate(n: int = 5000) -> float:
    key = (7).to_bytes(32, "big")
    readings = [
        Reading(1, i, 1_700_000_000 + i, 450, 800, 100, 51_000_000, 4_000_000, 0) for i in range(n)
    ]
    start = time.perf_counter()
    for r in readings:
        sign_reading(r, DOMAIN, key)
    return n / (time.perf_counter() - start)


def generation_rate(fleet: Fleet) -> tuple[float, int, int]:
    start = time.perf_counter()
    total = telemetry = 0
    for m in fleet.messages():
        total += 1
        telemetry += m.kind == "telemetry"
    return telemetry / (time.perf_counter() - start), total, telemetry


def publish_run(fleet: Fleet, telemetry: int, connection: str) -> dict[str, float]:
    broker = start_mosquitto(BROKER_CONF)
    sub = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, str(broker.port), str(telemetry), "300"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != "ready":
            raise RuntimeError("subscriber did not start")
        start = time.perf_counter()
        stats = publish(
            fleet,
            broker.extra["url"],
            speed=math.inf,
            progress=False,
            connection=connection,  # type: ignore[arg-type]
        )
        publish_s = time.perf_counter() - start
        result = json.loads(sub.stdout.readline())
        sub.wait(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
        broker.stop()
    if result["received"] != telemetry:
        raise RuntimeError(f"subscriber received {result['received']} of {telemetry}")
    return {
        "published_per_s": stats.telemetry / publish_s,
        "received_per_s": result["received"] / result["span_s"],
        "publish_wall_s": publish_s,
        "acked": stats.acked,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=20, help="readings per device")
    parser.add_argument("--per-device-devices", type=int, default=100,
                        help="fleet size for the one-connection-per-device row")  # fmt: skip
    args = parser.parse_args()

    sign = statistics.median(signing_rate() for _ in range(args.runs))
    rows: list[dict[str, Any]] = []
    for label, devices, connection in (
        (f"{args.devices} devices, shared connection", args.devices, "shared"),
        (
            f"{args.per_device_devices} devices, one connection each",
            args.per_device_devices,
            "device",
        ),
    ):
        fleet = make_fleet(devices, args.readings, orders=min(20, devices))
        gens, pubs, recs = [], [], []
        total = telemetry = 0
        for i in range(args.runs):
            g, total, telemetry = generation_rate(fleet)
            gens.append(g)
            r = publish_run(fleet, telemetry, connection)
            pubs.append(r["published_per_s"])
            recs.append(r["received_per_s"])
            console.print(f"{label}: run {i + 1}: published {r['published_per_s']:.0f}/s, "
                          f"received {r['received_per_s']:.0f}/s")  # fmt: skip
        rows.append(
            {
                "case": label,
                "devices": devices,
                "connection": connection,
                "telemetry_messages": telemetry,
                "all_messages": total,
                "generate_and_sign_per_s": statistics.median(gens),
                "published_per_s": statistics.median(pubs),
                "received_per_s": statistics.median(recs),
                "runs": {"generate": gens, "published": pubs, "received": recs},
            }
        )
    table = Table(title=f"simulator publish, QoS 1, mosquitto, medians of {args.runs} runs")
    for col in ("case", "readings", "generate+sign /s", "published /s", "received /s"):
        table.add_column(col, justify="right" if col != "case" else "left")
    for r in rows:
        table.add_row(
            r["case"],
            str(r["telemetry_messages"]),
            f"{r['generate_and_sign_per_s']:,.0f}",
            f"{r['published_per_s']:,.0f}",
            f"{r['received_per_s']:,.0f}",
        )
    console.print(table)
    console.print(f"signing alone (sign_reading, one core): {sign:,.0f} readings/s")
    out = REPO / "bench" / "results" / "mqtt_publish.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "mqtt_publish",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                },
                "broker": mosquitto_version(),
                "qos": 1,
                "readings_per_device": args.readings,
                "signing_per_s": sign,
                "cases": rows,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
