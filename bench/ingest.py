"""Ingest drain benchmark: how fast one oracle process empties a backlog.

With the oracle's persistent MQTT session offline, N signed readings from 1,000
devices are published into a mosquitto this script starts (free port, queue
limits raised, stopped by PID). Then the oracle's ingest starts — subscriber +
worker + store + rules, devices pre-bound in the database — and the clock runs
until every reading is received, verified, stored and evaluated. Signing and
publishing are not timed.

    .venv/bin/python bench/ingest.py                      # SQLite and PostgreSQL, 3 runs
    .venv/bin/python bench/ingest.py --readings 50000 --backends sqlite --profile

Prints a table of medians and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from backend.oracle.ingest import Ingestor, IngestWorker  # noqa: E402
from backend.oracle.metrics import Metrics  # noqa: E402
from backend.oracle.rules import RulesEngine  # noqa: E402
from backend.oracle.subscriber import SubscriberConfig, TelemetrySubscriber  # noqa: E402
from backend.store import repositories as repo  # noqa: E402
from backend.store.db import make_engine, upgrade_to_head  # noqa: E402
from backend.telemetry import (  # noqa: E402
    Domain,
    Reading,
    SignedReading,
    device_address,
    encode_message,
    sign_reading,
    telemetry_topic,
)
from tests.servers import start_mosquitto  # noqa: E402

DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DEVICES_PER_ORDER = 10
console = Console()


def device_keys(n: int) -> list[bytes]:
    return [(i + 1).to_bytes(32, "big") for i in range(n)]


def presign(n_readings: int, keys: list[bytes]) -> list[tuple[str, bytes]]:
    """(topic, payload) for n readings, round-robin over the devices (interleaved, as live)."""
    per_device = -(-n_readings // len(keys))
    t0 = int(time.time()) - per_device * 60 - 600
    addresses = [device_address(k) for k in keys]
    out: list[tuple[str, bytes]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("signing readings", total=n_readings)
        for seq in range(1, per_device + 1):
            for i, key in enumerate(keys):
                if len(out) == n_readings:
                    break
                order_id = i // DEVICES_PER_ORDER + 1
                r = Reading(
                    order_id=order_id,
                    seq=seq,
                    timestamp=t0 + seq * 60,
                    temperature_centi_c=450 + (seq * 7 + i) % 120,
                    humidity_permille=600,
                    shock_milli_g=300 + (seq * 13) % 500,
                    latitude_e6=40_000_000 + seq * 100,
                    longitude_e6=-30_000_000 + seq * 100,
                    flags=0,
                )
                s = SignedReading(r, addresses[i], sign_reading(r, DOMAIN, key))
                out.append((telemetry_topic(order_id, s.device), encode_message(s)))
                progress.advance(task)
    return out


def seed(engine: Engine, keys: list[bytes]) -> None:
    zero = "0x" + "00" * 20
    n_orders = -(-len(keys) // DEVICES_PER_ORDER)
    with Session(engine) as s, s.begin():
        for o in range(1, n_orders + 1):
            repo.upsert_order(
                s,
                dict(
                    id=o, buyer=zero, supplier=zero, state="Shipped", token=zero, price=10**18,
                    delivery_deadline=2**40, expiry_grace_secs=0, dest_lat_e6=1_290_000,
                    dest_lon_e6=103_850_000, geofence_e6=20_000, min_temp_centi_c=200,
                    max_temp_centi_c=800, max_humidity_permille=900, max_shock_milli_g=5000,
                    tolerated_excursion_secs=1800, late_penalty_bps_per_hour=100,
                    late_penalty_cap_bps=2000, breach_refund_bps=3000, dispute_window_secs=0,
                    arbiter=zero, funded=True, breached=False, shipped_at=0, updated_block=1,
                ),
            )  # fmt: skip
        repo.bind_devices(
            s,
            [
                dict(order_id=i // DEVICES_PER_ORDER + 1, device=device_address(k))
                for i, k in enumerate(keys)
            ],
        )


@contextmanager
def database(backend: str) -> Iterator[Engine]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="trustship-bench-") as d:
            engine = upgrade_to_head(f"sqlite:///{d}/bench.db")
            try:
                yield engine
            finally:
                engine.dispose()
        return
    schema = "trustship_bench_" + uuid.uuid4().hex[:10]
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        upgrade_to_head(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def publish(port: int, messages: list[tuple[str, bytes]]) -> float:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    t = time.perf_counter()
    infos = [pub.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.perf_counter() - t
    pub.disconnect()
    pub.loop_stop()
    return len(messages) / elapsed


def run_once(
    backend: str, messages: list[tuple[str, bytes]], keys: list[bytes], batch: int, profile: bool
) -> dict[str, Any]:
    n = len(messages)
    conf = (
        "allow_anonymous true\n"
        f"max_queued_messages {n * 2}\n"
        "max_queued_bytes 0\n"
        "max_inflight_messages 1000\n"
    )
    broker = start_mosquitto(conf)
    try:
        with database(backend) as engine:
            seed(engine, keys)
            cfg = SubscriberConfig(url=broker.extra["url"], client_id="bench-oracle")
            # The persistent session exists; then the oracle is offline while devices publish.
            first = TelemetrySubscriber(cfg, lambda m: None)
            first.start()
            if not first.wait_subscribed(10):
                raise RuntimeError("could not subscribe:\n" + broker.log_tail())
            first.stop()
            pub_rate = publish(broker.port, messages)

            metrics = Metrics()
            ingestor = Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
            ingestor.bindings.load_all()
            worker = IngestWorker(ingestor, batch_size=batch, batch_ms=20)
            sub = TelemetrySubscriber(cfg, worker.submit)
            worker.ack = sub.ack
            prof = cProfile.Profile() if profile else None
            if prof is not None:
                worker_run = worker.run

                def profiled_run() -> None:
                    prof.runcall(worker_run)

                worker.run = profiled_run  # type: ignore[method-assign]
            load_before = os.getloadavg()[0]
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            worker.start()
            sub.start()
            deadline = t0 + 600
            while (
                metrics.get("trustship_ingest_received_total") < n
                and time.perf_counter() < deadline
            ):
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            sub.stop()
            worker.stop()
            accepted = metrics.get("trustship_ingest_accepted_total")
            rejected = metrics.total("trustship_ingest_rejected_total")
            if accepted != n:
                raise RuntimeError(f"only {accepted} of {n} readings stored ({rejected} refused)")
            result = {
                "backend": backend,
                "readings": n,
                "seconds": elapsed,
                "readings_per_s": n / elapsed,
                # CPU of this process (all threads) per reading: independent of other load
                "cpu_us_per_reading": cpu / n * 1e6,
                "readings_per_cpu_s": n / cpu,
                "load_avg_1m": load_before,
                "publish_per_s": pub_rate,
                "batches": metrics.get("trustship_ingest_batches_total"),
                "store_seconds": metrics.get("trustship_ingest_store_seconds_total"),
            }
            if prof is not None:
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
                result["profile"] = out.getvalue()
            return result
    finally:
        broker.stop()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--readings", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--profile", action="store_true", help="cProfile the ingest worker (first run)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    keys = device_keys(args.devices)
    t = time.perf_counter()
    messages = presign(args.readings, keys)
    console.print(
        f"signed {len(messages)} readings from {args.devices} devices "
        f"in {time.perf_counter() - t:.1f} s"
    )

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    runs: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    for i in range(args.runs):
        for b in backends:
            r = run_once(b, messages, keys, args.batch, args.profile and i == 0)
            if "profile" in r:
                console.print(f"[bold]profile ({b})[/bold]\n" + r.pop("profile"))
            runs[b].append(r)
            console.print(
                f"run {i + 1} {b}: {r['readings_per_s']:,.0f} readings/s ({r['seconds']:.2f} s, "
                f"{r['cpu_us_per_reading']:.0f} µs CPU each, load {r['load_avg_1m']:.1f})"
            )

    table = Table(
        title=f"Ingest drain: {args.readings:,} readings from {args.devices:,} devices "
        f"(medians of {args.runs})"
    )
    cols = ("database", "readings/s", "per CPU-s", "CPU µs each", "drain s", "store s", "load 1m")
    for col in cols:
        table.add_column(col, justify="right")
    summary: dict[str, Any] = {}
    for b, rs in runs.items():
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in (
                "readings_per_s",
                "readings_per_cpu_s",
                "cpu_us_per_reading",
                "seconds",
                "store_seconds",
                "batches",
                "publish_per_s",
                "load_avg_1m",
            )
        }
        summary[b] = {"median": med, "runs": rs}
        table.add_row(
            b,
            f"{med['readings_per_s']:,.0f}",
            f"{med['readings_per_cpu_s']:,.0f}",
            f"{med['cpu_us_per_reading']:.0f}",
            f"{med['seconds']:.2f}",
            f"{med['store_seconds']:.2f}",
            f"{med['load_avg_1m']:.1f}",
        )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "ingest drain (MQTT backlog → verify → store → rules)",
                "readings": args.readings,
                "devices": args.devices,
                "batch_size": args.batch,
                "runs": args.runs,
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "results": summary,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"saved {args.out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
