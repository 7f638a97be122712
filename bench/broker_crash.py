"""The cost of storage receipts (docs/oracle.md, "Broker crashes"), side by side in one run.

Devices keep each reading until the oracle's receipt names it, so that a broker crash
loses nothing the broker acknowledged. What that costs, with and without receipts:

drain: as ``bench/ingest.py drain`` — N signed readings from 1,000 devices wait in a
mosquitto this script starts for the oracle's offline persistent session; then the
oracle's ingest (subscriber + worker + store + rules, and with receipts the receipt
publisher, wired as :class:`backend.oracle.service.Oracle` wires it) drains them.
Figures: readings/s, CPU µs per reading, receipts sent.

live: the oracle's ingest runs; the devices (one shared simulator connection, the
publisher's own :class:`~iot_simulator.publisher._Connection` with and without
:class:`~iot_simulator.Retention`) publish the N readings as fast as the broker
acknowledges. Figures: readings/s until the oracle stored all (drained) and until the
devices were done (acknowledged by the broker; with receipts: confirmed stored), the
most readings and bytes (topic + payload) the devices held at once, resends, receipts.

    .venv/bin/python -m bench.broker_crash                   # 10,000 readings, 2 runs each
    .venv/bin/python -m bench.broker_crash --readings 20000 --runs 3

Columns: receipts off, on at the oracle's default interval (0.5 s), on at 2 s.
Prints a table and writes bench/results/broker_crash.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from backend.oracle.ingest import BatchResult, Inbound, Ingestor, IngestWorker
from backend.oracle.metrics import Metrics
from backend.oracle.receipts import ReceiptPublisher
from backend.oracle.rules import RulesEngine
from backend.oracle.service import OracleConfig
from backend.oracle.subscriber import SubscriberConfig, TelemetrySubscriber
from backend.telemetry import decode_message
from backend.telemetry.broker import BrokerURL
from backend.telemetry.receipts import RECEIPT_FILTER
from bench.ingest import DOMAIN, database, device_keys, open_session, presign, publish, seed
from iot_simulator import Message, PublishStats, Retention
from iot_simulator.publisher import _Connection
from testkit import REPO
from testkit.servers import Server, start_mosquitto
from testkit.waiting import wait_for

console = Console()
#: The oracle's default receipt interval, and a longer one (fewer receipts, devices hold more).
INTERVALS = (OracleConfig().receipt_interval_secs, 2.0)
#: column → receipt interval (None: no receipts, the devices forget at the broker's PUBACK)
SETTINGS: dict[str, float | None] = {
    "off": None,
    **{f"on {i:g} s": i for i in INTERVALS},
}


class Pipeline:
    """The oracle's ingest, with or without receipts, as the Oracle service wires it."""

    def __init__(self, engine: Any, url: str, interval: float | None, client_id: str) -> None:
        self.metrics = Metrics()
        self.ingestor = Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=self.metrics)
        self.ingestor.bindings.load_all()
        inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.sub = TelemetrySubscriber(SubscriberConfig(url=url, client_id=client_id), inbox.put)
        self.receipts: ReceiptPublisher | None = None
        on_batch: Callable[[BatchResult], None] | None = None
        if interval is not None:
            publisher = self.receipts = ReceiptPublisher(self.sub.publish, self.metrics, interval)

            def on_batch(result: BatchResult) -> None:
                publisher.add(result.confirmed)

        self.worker = IngestWorker(
            self.ingestor,
            self.sub.ack,
            inbox=inbox,
            batch_size=500,
            batch_ms=20,
            on_batch=on_batch,
        )

    def start(self) -> None:
        self.worker.start()
        if self.receipts is not None:
            self.receipts.start()
        self.sub.start()

    def stored(self) -> float:
        return self.metrics.get("trustship_ingest_accepted_total")

    def stop(self) -> None:
        if self.receipts is not None:
            self.receipts.stop()
        self.sub.stop()
        self.worker.stop()


def broker(n: int) -> Server:
    return start_mosquitto(
        "allow_anonymous true\n"
        f"max_queued_messages {n * 4}\n"
        "max_queued_bytes 0\n"
        "max_inflight_messages 1000\n"
    )


def wait_stored(p: Pipeline, n: int, timeout: float = 600) -> None:
    if not wait_for(lambda: p.stored() >= n, timeout, interval=0.005):
        raise RuntimeError(f"timed out: {p.stored():.0f} of {n} readings stored")


@contextlib.contextmanager
def seeded_broker(n: int, keys: list[bytes]) -> Iterator[tuple[Server, Engine]]:
    """A broker that can queue ``n`` readings and a SQLite database that knows the devices."""
    srv = broker(n)
    try:
        with database("sqlite") as engine:
            seed(engine, keys)
            yield srv, engine
    finally:
        srv.stop()


def run_drain(
    messages: list[tuple[str, bytes]], keys: list[bytes], interval: float | None
) -> dict[str, Any]:
    n = len(messages)
    with seeded_broker(n, keys) as (srv, engine):
        open_session(srv, "bench-oracle")
        publish(srv.port, messages)
        p = Pipeline(engine, srv.extra["url"], interval, "bench-oracle")
        cpu0, t0 = time.process_time(), time.perf_counter()
        p.start()
        wait_stored(p, n)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        p.stop()
        return {
            "readings": n,
            "seconds": elapsed,
            "readings_per_s": n / elapsed,
            "cpu_us_per_reading": cpu / n * 1e6,
            "receipts": p.metrics.get("trustship_receipts_published_total"),
        }


def run_live(
    messages: list[tuple[str, bytes]], keys: list[bytes], interval: float | None
) -> dict[str, Any]:
    n = len(messages)
    with seeded_broker(n, keys) as (srv, engine):
        p = Pipeline(engine, srv.extra["url"], interval, "bench-oracle-live")
        p.start()
        if not p.sub.wait_subscribed(10):
            raise RuntimeError("could not subscribe:\n" + srv.log_tail())
        stats = PublishStats()
        retention = Retention() if interval is not None else None
        conn = _Connection(
            BrokerURL.parse(srv.extra["url"]),
            "bench-devices",
            None,
            None,
            100,
            stats,
            retention=retention,
            receipts_filter=RECEIPT_FILTER,
        )
        conn.start()
        conn.wait_connected(10)
        msgs = []
        for topic, payload in messages:
            s = decode_message(payload, topic)
            msgs.append(Message(0, 0, topic, payload, "telemetry", s.device, "", reading=s))
        cpu0, t0 = time.process_time(), time.perf_counter()
        for m in msgs:
            conn.publish(m.topic, m.payload, False)
            conn.hold(m, time.monotonic())
        conn.drain(600)
        if retention is not None:
            conn.settle(600)
        device_s = time.perf_counter() - t0
        wait_stored(p, n)
        stored_s = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        conn.close()
        p.stop()
        return {
            "readings": n,
            "stored_seconds": stored_s,
            "readings_per_s": n / stored_s,
            "device_done_seconds": device_s,
            "device_readings_per_s": n / device_s,
            "cpu_us_per_reading": cpu / n * 1e6,
            "held_peak": stats.held_peak,
            "held_peak_bytes": stats.held_peak_bytes,
            "unconfirmed_at_end": conn.unconfirmed,
            "resent": stats.resent,
            "receipts_sent": p.metrics.get("trustship_receipts_published_total"),
            "receipts_received": stats.receipts,
        }


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--readings", type=int, default=10_000)
    ap.add_argument("--devices", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=2, help="runs per mode and setting (alternated)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "broker_crash.json")
    args = ap.parse_args()
    keys = device_keys(args.devices)
    messages = presign(args.readings, keys)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {name: [] for name in SETTINGS} for mode in ("drain", "live")
    }
    for i in range(args.runs):
        order = list(SETTINGS) if i % 2 == 0 else list(reversed(SETTINGS))
        for name in order:
            runs["drain"][name].append(run_drain(messages, keys, SETTINGS[name]))
            runs["live"][name].append(run_live(messages, keys, SETTINGS[name]))
            console.print(f"run {i + 1} receipts {name}: done")

    table = Table(title=f"receipts off vs on: {args.readings:,} readings, {args.devices:,} devices")
    table.add_column("figure (median)")
    for name in SETTINGS:
        table.add_column(f"receipts {name}", justify="right")
    rows = [
        ("drain: readings/s", "drain", "readings_per_s", "{:,.0f}"),
        ("drain: CPU µs/reading", "drain", "cpu_us_per_reading", "{:.0f}"),
        ("drain: receipts sent", "drain", "receipts", "{:,.0f}"),
        ("live: readings/s stored", "live", "readings_per_s", "{:,.0f}"),
        ("live: devices done, readings/s", "live", "device_readings_per_s", "{:,.0f}"),
        ("live: CPU µs/reading (all in-process)", "live", "cpu_us_per_reading", "{:.0f}"),
        ("live: devices held at most, readings", "live", "held_peak", "{:,.0f}"),
        ("live: devices held at most, bytes", "live", "held_peak_bytes", "{:,.0f}"),
        ("live: resent", "live", "resent", "{:,.0f}"),
        ("live: receipts received", "live", "receipts_received", "{:,.0f}"),
    ]
    summary: dict[str, dict[str, float]] = {}
    for label, mode, key, fmt in rows:
        values = {name: median(runs[mode][name], key) for name in SETTINGS}
        summary[f"{mode}.{key}"] = values
        table.add_row(label, *(fmt.format(v) for v in values.values()))
    console.print(table)
    body = {
        "readings": args.readings,
        "devices": args.devices,
        "runs": args.runs,
        "receipt_interval_secs": {name: i for name, i in SETTINGS.items()},
        "database": "sqlite",
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "median": summary,
        "runs_detail": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    console.print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
