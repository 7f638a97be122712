"""Ingest benchmarks: how fast one oracle process empties a backlog (``drain``), and
how long a breach takes from the device to the chain (``live``).

drain: with the oracle's persistent MQTT session offline, N signed readings from
1,000 devices are published into a mosquitto this script starts (free port, queue
limits raised, stopped by PID). Then the oracle's ingest starts — subscriber +
worker + store + rules, devices pre-bound in the database — and the clock runs
until every reading is received, verified, stored and evaluated. Signing and
publishing are not timed.

live: a fresh anvil, a mosquitto with deploy/mosquitto.conf's queue limits and the
whole oracle as its own process (``python -m backend.oracle``, default settings).
Background devices on other orders publish one reading per second each; every
``--spacing`` seconds one breach order's device publishes the reading that
completes an excursion. Measured per breach: from just before that publish to
the ``ExcursionProven`` event on anvil (a watcher polls the node every few ms),
split into MQTT (publish → the oracle's ``received_at``), ingest (→ the outbox
entry written with the reading) and outbox + chain (→ the event seen).

    .venv/bin/python bench/ingest.py                      # drain: SQLite and PostgreSQL, 3 runs,
                                                          # and PostgreSQL with 1 and 2 processes
    .venv/bin/python bench/ingest.py --readings 50000 --backends sqlite --profile
    .venv/bin/python bench/ingest.py live                 # 40 breaches, 300 background devices
    .venv/bin/python bench/ingest.py live --breaches 60 --background-devices 500

Prints a table and writes bench/results/ingest.json (each mode keeps the other's
figures: drain under "results", live under "live_latency" → database).
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
import queue
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from backend.oracle.fastpath import use_fast_keccak
from backend.oracle.ingest import Inbound, Ingestor, IngestWorker
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesEngine
from backend.oracle.subscriber import SubscriberConfig, TelemetrySubscriber
from backend.store import repositories as repo
from backend.store.db import make_engine, upgrade_to_head
from backend.store.models import HandoffRow
from backend.telemetry import Domain, Reading, decode_message, device_address, reading_digest
from backend.telemetry.access import DEFAULT_SHARE_GROUP
from backend.telemetry.broker import ReadBufferedClient
from backend.telemetry.eip712 import recover_from_digest
from testkit import REPO
from testkit.databases import fresh_postgres_database, migrated_engine
from testkit.oracle_process import OracleProcess
from testkit.readings import wire_message
from testkit.servers import Server, deploy_broker_settings, start_anvil, start_mosquitto

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
                out.append(wire_message(key, r, DOMAIN))
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
                    arbiter=zero, device_issuer=zero, second_device_issuer=zero,
                    arrival_quorum=1, funded=True, breached=False, shipped_at=0, updated_block=1,
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
    """A migrated, empty database: a SQLite file, or a new schema of BENCH_POSTGRES_URL."""
    with (
        tempfile.TemporaryDirectory(prefix="trustship-bench-") as d,
        migrated_engine(backend, Path(d), POSTGRES_URL, "trustship_bench_") as engine,
    ):
        yield engine


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


def open_session(broker: Server, client_id: str, group: str | None = DEFAULT_SHARE_GROUP) -> None:
    """Create the oracle's persistent session (``client_id``, in share ``group``; None: a
    plain subscription) and go offline, so that the broker queues what the devices
    publish next for the oracle to drain."""
    first = TelemetrySubscriber(
        SubscriberConfig(url=broker.extra["url"], client_id=client_id, group=group),
        lambda m: None,
    )
    first.start()
    if not first.wait_subscribed(10):
        raise RuntimeError("could not subscribe:\n" + broker.log_tail())
    first.stop()


def backlog_broker(n: int) -> Server:
    """A mosquitto (free port, stopped by PID) that queues a backlog of ``n`` messages
    for an offline session."""
    return start_mosquitto(
        "allow_anonymous true\n"
        f"max_queued_messages {n * 2}\n"
        "max_queued_bytes 0\n"
        "max_inflight_messages 1000\n"
    )


def drain_figures(
    n: int, elapsed: float, cpu: float, load_before: float, pub_rate: float
) -> dict[str, float]:
    """A drain's figures: ``cpu`` is the CPU time of the oracle process(es), all threads
    (per reading it is independent of other load on the machine)."""
    return {
        "readings": n,
        "seconds": elapsed,
        "readings_per_s": n / elapsed,
        "cpu_us_per_reading": cpu / n * 1e6,
        "readings_per_cpu_s": n / cpu,
        "load_avg_1m": load_before,
        "publish_per_s": pub_rate,
    }


def _cpu_seconds(role: Callable[[int, str], str | None]) -> dict[int, tuple[str, float]]:
    """(role, CPU seconds: user + system) of each running process that ``role(pid, comm)``
    names (None: not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        name = role(int(entry.name), comm)
        if name is not None:
            fields = stat[stat.rindex(")") + 2 :].split()
            out[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


class CpuAccount:
    """CPU the processes that ``role(pid, comm)`` names spent since this was made,
    summed per role; a process that exited meanwhile is not counted."""

    def __init__(self, role: Callable[[int, str], str | None]) -> None:
        self.role = role
        self._t0 = time.monotonic()
        self._before = _cpu_seconds(role)

    def spent(self) -> dict[str, float]:
        """CPU seconds per role."""
        out: dict[str, float] = {}
        for pid, (name, cpu) in _cpu_seconds(self.role).items():
            before = self._before.get(pid, (name, 0.0))[1]
            out[name] = out.get(name, 0.0) + cpu - before
        return dict(sorted(out.items()))

    def cores(self) -> dict[str, float]:
        """Cores used per role (CPU seconds per second)."""
        seconds = time.monotonic() - self._t0
        return {name: cpu / seconds for name, cpu in self.spent().items()}


def run_once(
    backend: str, messages: list[tuple[str, bytes]], keys: list[bytes], batch: int, profile: bool
) -> dict[str, Any]:
    n = len(messages)
    broker = backlog_broker(n)
    try:
        with database(backend) as engine:
            seed(engine, keys)
            cfg = SubscriberConfig(url=broker.extra["url"], client_id="bench-oracle")
            open_session(broker, "bench-oracle")
            pub_rate = publish(broker.port, messages)

            metrics = Metrics()
            ingestor = Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
            ingestor.bindings.load_all()
            inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
            sub = TelemetrySubscriber(cfg, inbox.put)
            worker = IngestWorker(ingestor, sub.ack, inbox=inbox, batch_size=batch, batch_ms=20)
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
                **drain_figures(n, elapsed, cpu, load_before, pub_rate),
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


# ---------------------------------------------------------------------------
# drain with several oracle processes (one share group, one PostgreSQL database)
# ---------------------------------------------------------------------------

SHARE_GROUP = "bench-oracles"


def _drain_child(
    url: str,
    broker_url: str,
    client_id: str,
    batch: int,
    ready: Any,
    go: Any,
    stop: Any,
    received: Any,
    results: Any,
) -> None:
    """One oracle process's ingest (subscriber + worker + store + rules): drains its
    share of the backlog, reporting how many it has received, until told to stop."""
    engine = make_engine(url)
    metrics = Metrics()
    ingestor = Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    ingestor.bindings.load_all()
    inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    cfg = SubscriberConfig(url=broker_url, client_id=client_id, group=SHARE_GROUP)
    sub = TelemetrySubscriber(cfg, inbox.put)
    worker = IngestWorker(ingestor, sub.ack, inbox=inbox, batch_size=batch, batch_ms=20)
    ready.set()
    go.wait()
    cpu0 = time.process_time()
    worker.start()
    sub.start()
    while not stop.is_set():
        received.value = int(metrics.get("trustship_ingest_received_total"))
        time.sleep(0.005)
    cpu = time.process_time() - cpu0
    sub.stop()
    worker.stop()
    assert ingestor.rules is not None
    results.put(
        {
            "client_id": client_id,
            "received": metrics.get("trustship_ingest_received_total"),
            "stored": metrics.get("trustship_ingest_accepted_total"),
            "refused": metrics.total("trustship_ingest_rejected_total"),
            "handed_off": ingestor.handed_off,
            "taken_over": ingestor.taken_over,
            "cpu_s": cpu,
            # how the process batched: readings per batch and its time in the store
            "batches": metrics.get("trustship_ingest_batches_total"),
            "store_s": metrics.get("trustship_ingest_store_seconds_total"),
        }
    )
    engine.dispose()


def run_processes(
    messages: list[tuple[str, bytes]], keys: list[bytes], batch: int, processes: int
) -> dict[str, Any]:
    """Drain the backlog with ``processes`` oracle processes on PostgreSQL: each its own
    persistent session in one share group, so the broker queued its share for it."""
    import multiprocessing

    n = len(messages)
    ctx = multiprocessing.get_context("spawn")
    broker = backlog_broker(n)
    try:
        with fresh_postgres_database(POSTGRES_URL) as url:
            engine = upgrade_to_head(url)
            seed(engine, keys)
            engine.dispose()
            ids = [f"bench-oracle-{i + 1}" for i in range(processes)]
            for cid in ids:
                open_session(broker, cid, group=SHARE_GROUP)
            pub_rate = publish(broker.port, messages)
            go, stop = ctx.Event(), ctx.Event()
            results = ctx.Queue()
            children = []
            for cid in ids:
                ready, received = ctx.Event(), ctx.Value("q", 0)
                proc = ctx.Process(
                    target=_drain_child,
                    args=(url, broker.extra["url"], cid, batch, ready, go, stop, received, results),
                    daemon=True,
                )
                proc.start()
                children.append((proc, ready, received))
            for proc, ready, _ in children:
                if not ready.wait(60):
                    raise RuntimeError(f"an oracle process did not start (exit {proc.exitcode})")
            load_before = os.getloadavg()[0]
            # every postgres process of the machine (server and backends) and the
            # bench's broker: on this 2-core machine they share the cores with the
            # oracle processes, which bounds what more processes can add
            servers = CpuAccount(
                lambda pid, comm: (
                    "broker" if pid == broker.pid else "postgres" if comm == "postgres" else None
                )
            )
            t0 = time.perf_counter()
            go.set()
            deadline = t0 + 600
            while sum(r.value for _, _, r in children) < n and time.perf_counter() < deadline:
                time.sleep(0.005)
            # ... and evaluated: what one process stored for another's orders waits in
            # the handoff table until the owner takes it
            engine = make_engine(url)
            with Session(engine) as s:
                while s.scalar(select(func.count()).select_from(HandoffRow)) and (
                    time.perf_counter() < deadline
                ):
                    s.rollback()
                    time.sleep(0.005)
            engine.dispose()
            elapsed = time.perf_counter() - t0
            spent = servers.spent()
            pg_cpu, broker_cpu = spent.get("postgres", 0.0), spent.get("broker", 0.0)
            stop.set()
            per = [results.get(timeout=60) for _ in children]
            for proc, _, _ in children:
                proc.join(30)
            stored = sum(p["stored"] for p in per)
            if stored != n:
                raise RuntimeError(f"only {stored} of {n} readings stored: {per}")
            cpu = sum(p["cpu_s"] for p in per)
            return {
                "backend": "postgresql",
                "processes": processes,
                **drain_figures(n, elapsed, cpu, load_before, pub_rate),
                "postgres_cpu_us_per_reading": pg_cpu / n * 1e6,
                "broker_cpu_us_per_reading": broker_cpu / n * 1e6,
                "per_process": per,
            }
    finally:
        broker.stop()


def ceilings(messages: list[tuple[str, bytes]], sample: int = 3000) -> dict[str, float]:
    """Per core: how many readings/s signature checking alone allows (decode, EIP-712
    digest, ecrecover), and how many messages/s one MQTT client receives from a backlog
    (nothing else done with them): the oracle's read-buffered client and stock paho."""
    use_fast_keccak()
    part = messages[:sample]
    cpu0 = time.process_time()
    for topic, payload in part:
        signed = decode_message(payload, topic)
        recover_from_digest(reading_digest(signed.reading, DOMAIN), signed.signature)
    verify = len(part) / (time.process_time() - cpu0)
    receive = {name: _receive_rate(messages, cls) for name, cls in RECEIVERS.items()}
    return {
        "verify_per_core_s": verify,
        "receive_per_core_s": receive["buffered"],
        "receive_stock_paho_per_core_s": receive["stock"],
    }


#: The oracle's subscriber (reads the socket in chunks) and paho as it comes.
RECEIVERS: dict[str, type[mqtt.Client]] = {"buffered": ReadBufferedClient, "stock": mqtt.Client}


def _receive_rate(messages: list[tuple[str, bytes]], client_class: type[mqtt.Client]) -> float:
    """Messages per CPU-second one client of ``client_class`` receives from a backlog,
    acknowledging each (nothing else done with them)."""
    broker = backlog_broker(len(messages))
    try:
        open_session(broker, "bench-receive")
        publish(broker.port, messages)
        got = threading.Event()
        count = [0]

        def on_message(_c: Any, _u: Any, _m: Any) -> None:
            count[0] += 1
            if count[0] == len(messages):
                got.set()

        client = client_class(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-receive", protocol=mqtt.MQTTv5
        )
        client.on_message = on_message
        cpu0 = time.process_time()
        client.connect("127.0.0.1", broker.port, clean_start=False)
        client.loop_start()
        got.wait(300)
        rate = count[0] / (time.process_time() - cpu0)
        client.disconnect()
        client.loop_stop()
    finally:
        broker.stop()
    return rate


# ---------------------------------------------------------------------------
# live: breach latency with background telemetry, the oracle in its own process
# ---------------------------------------------------------------------------

LIVE_TOLERATED_S = 60  # excursion seconds the breach orders tolerate


@contextmanager
def database_url(backend: str) -> Iterator[str]:
    """A database URL for the oracle process: a SQLite file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="trustship-bench-") as d:
            yield f"sqlite:///{d}/oracle.db"
        return
    from testkit.databases import fresh_postgres_database

    with fresh_postgres_database() as url:
        yield url


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class EventWatcher(threading.Thread):
    """Polls the node for new blocks and notes when each order's ExcursionProven appears."""

    def __init__(self, chain: Any, address: str, poll_s: float = 0.005) -> None:
        super().__init__(name="bench-watcher", daemon=True)
        self.chain = chain
        self.address = address
        self.poll_s = poll_s
        self.seen: dict[int, float] = {}
        self.blocks = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def run(self) -> None:
        w3 = self.chain.w3
        last = int(w3.eth.block_number)
        while not self._stop_event.is_set():
            head = int(w3.eth.block_number)
            if head > last:
                now = time.time()
                logs = w3.eth.get_logs(
                    {"fromBlock": last + 1, "toBlock": head, "address": self.address}
                )
                for e in self.chain.registry.decode_logs(logs):
                    if e.name == "ExcursionProven":
                        self.seen.setdefault(int(e.args["orderId"]), now)
                self.blocks += head - last
                last = head
            else:
                time.sleep(self.poll_s)


def _signed(
    domain: Domain, key: bytes, order_id: int, seq: int, ts: int, temp: int
) -> tuple[str, bytes]:
    r = Reading(
        order_id=order_id,
        seq=seq,
        timestamp=ts,
        temperature_centi_c=temp,
        humidity_permille=600,
        shock_milli_g=200,
        latitude_e6=40_000_000 + seq,
        longitude_e6=-30_000_000 + seq,
        flags=0,
    )
    return wire_message(key, r, domain)


def _client(port: int, name: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def ship_orders(
    chain: Any, c: Any, groups: list[list[bytes]]
) -> tuple[list[tuple[int, list[bytes]]], dict[int, int]]:
    """One order per group of device keys, funded, accepted and shipped with the group's
    devices certified (the live benchmarks' fleet): (order id, keys) and each shipment time."""
    from backend.chain.testing import certify, default_terms, issuer_key

    a = chain.accounts
    buyer, supplier = a.require("buyer"), a.require("supplier")
    orders: list[tuple[int, list[bytes]]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("opening and shipping orders", total=len(groups))
        for keys in groups:
            terms = default_terms(
                chain.now(),
                a.require("arbiter").address,
                buyer=buyer.address,
                supplier=supplier.address,
                price=10**15,
                tolerated_excursion_secs=LIVE_TOLERATED_S,
                delivery_deadline=chain.now() + 30 * 86400,
            )
            oid = int(c.po.create_and_fund_order(terms, by=buyer).value)
            c.po.accept_order(oid, by=supplier)
            domain = c.qv.domain()
            certs = [certify(domain, oid, device_address(k), issuer_key(1)) for k in keys]
            c.po.ship_order(oid, certs, by=supplier)
            orders.append((oid, keys))
            progress.advance(task)
    shipped = {oid: int(c.po.get_order(oid).timestamp) for oid, _ in orders}
    return orders, shipped


@dataclass
class LiveStack:
    """A fresh anvil with the contracts, a mosquitto with deploy/mosquitto.conf's queue
    limits, the oracle as its own process with the fleet's orders shipped and indexed,
    an :class:`EventWatcher` on the chain, and the MQTT clients the run opens."""

    chain: Any
    contracts: Any
    domain: Domain
    anvil: Server
    broker: Server
    oracle: OracleProcess
    engine: Engine
    watcher: EventWatcher
    #: One (order id, device keys) per group, in the order of the groups.
    orders: list[tuple[int, list[bytes]]]
    #: Each order's shipment time.
    shipped: dict[int, int]
    clients: list[mqtt.Client] = field(default_factory=list)

    def client(self, name: str) -> mqtt.Client:
        """An MQTT client connected to the broker (disconnected when the stack stops)."""
        c = _client(self.broker.port, name)
        self.clients.append(c)
        return c

    def count(self, row: Any) -> int:
        """Rows of a store table in the oracle's database."""
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(row)) or 0)


@contextmanager
def live_stack(
    backend: str,
    groups: list[list[bytes]],
    *,
    client_id: str,
    clock_ahead_secs: int,
    index_timeout_secs: float,
    oracle_env: dict[str, str] | None = None,
    oracle_log: Path | None = None,
    oracles: int = 1,
) -> Iterator[LiveStack]:
    """The live benchmarks' whole stack on ``backend`` (sqlite or postgresql), with one
    order per group of device keys (:func:`ship_orders`) bound in the oracle's database;
    the chain's clock is moved ``clock_ahead_secs`` on so that readings stamped after
    shipment are not ahead of it. Everything is stopped on exit; the oracle's log is
    kept at ``oracle_log``. With ``oracles`` > 1, that many oracle processes share the
    work (their own keys, each a fleet-log committer of the deployment; client ids
    ``client_id``, ``client_id-2`` ...; one share group; PostgreSQL only)."""
    from backend.chain.connection import connect
    from backend.chain.contracts import Contracts
    from backend.chain.deploy import deploy_all
    from backend.core.settings import Settings
    from backend.store.models import DeviceRow

    limits = deploy_broker_settings(
        ("max_queued_messages", "max_queued_bytes", "max_inflight_messages", "max_packet_size")
    )
    broker_conf = "allow_anonymous true\n" + "".join(f"{k} {v}\n" for k, v in limits.items())
    workdir = Path(tempfile.mkdtemp(prefix="trustship-bench-live-"))
    anvil = start_anvil()
    broker = start_mosquitto(broker_conf)
    oracle: OracleProcess | None = None
    extra: list[OracleProcess] = []
    stack: LiveStack | None = None
    if oracles > 1 and backend != "postgresql":
        raise ValueError("several oracle processes need PostgreSQL (docs/oracle.md)")
    try:
        with database_url(backend) as db_url:
            chain = connect(Settings(_env_file=None, RPC_URL=anvil.extra["url"], DEV_MODE=True))  # type: ignore[call-arg]
            from eth_account import Account

            keys = [chain.accounts.oracle.key.hex()]
            for _ in range(oracles - 1):
                acct = Account.create()
                chain.request("anvil_setBalance", acct.address, hex(10**21))
                keys.append(bytes(acct.key).hex())
            deployment = deploy_all(
                chain,
                oracle_addresses=[Account.from_key(k).address for k in keys],
                write_to=workdir / "deployment.json",
            )
            c = Contracts.from_deployment(chain, deployment)
            env = {
                "RPC_URL": anvil.extra["url"],
                "MQTT_URL": broker.extra["url"],
                "DATABASE_URL": db_url,
                "DEPLOYMENT_FILE": str(workdir / "deployment.json"),
                "ORACLE_CLIENT_ID": client_id,
                "DEV_MODE": "true",
                "LOG_LEVEL": "INFO",
                **(oracle_env or {}),
            }
            oracle = OracleProcess(env, workdir / "oracle.log")
            for i, key in enumerate(keys[1:], start=2):
                extra.append(
                    OracleProcess(
                        {**env, "ORACLE_CLIENT_ID": f"{client_id}-{i}",
                         "ORACLE_PRIVATE_KEY": "0x" + key.removeprefix("0x")},
                        workdir / f"oracle-{i}.log",
                    )
                )  # fmt: skip
            for proc in (oracle, *extra):
                proc.start()
            for proc in (oracle, *extra):
                proc.wait_subscribed()
            orders, shipped = ship_orders(chain, c, groups)
            chain.time_travel(chain.now() + clock_ahead_secs)
            stack = LiveStack(
                chain=chain,
                contracts=c,
                domain=c.quality.domain(),
                anvil=anvil,
                broker=broker,
                oracle=oracle,
                engine=make_engine(db_url),
                watcher=EventWatcher(chain, c.quality.address),
                orders=orders,
                shipped=shipped,
            )
            n_devices = sum(len(g) for g in groups)
            deadline = time.monotonic() + index_timeout_secs
            while stack.count(DeviceRow) != n_devices:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        "the oracle did not index the device bindings:\n" + oracle.tail()
                    )
                time.sleep(0.2)
            stack.watcher.start()
            try:
                yield stack
            finally:
                stack.engine.dispose()
    finally:
        if stack is not None:
            for cl in stack.clients:
                cl.disconnect()
                cl.loop_stop()
            if stack.watcher.is_alive():
                stack.watcher.stop()
        for proc in extra:
            proc.stop()
        if oracle is not None:
            oracle.stop()
            if oracle_log is not None and oracle.log.exists():
                oracle_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(oracle.log, oracle_log)
        broker.stop()
        anvil.stop()
        shutil.rmtree(workdir, ignore_errors=True)


#: Slices of a second in which the background fleet publishes (each its share of devices).
SLICES = 10


class Paced(threading.Thread):
    """Calls ``tick(sec, j)`` at ``sec + j / slices`` seconds after it starts, for each
    slice ``j`` of each second, for ``seconds`` seconds or until :meth:`stop`;
    ``lag`` is the most it fell behind (seconds)."""

    def __init__(
        self,
        tick: Callable[[int, int], None],
        *,
        seconds: int | None = None,
        slices: int = SLICES,
        name: str = "bench-background",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.tick = tick
        self.seconds = seconds
        self.slices = slices
        self.lag = 0.0
        self._stop_event = threading.Event()

    def stop(self, timeout: float = 10) -> None:
        self._stop_event.set()
        self.join(timeout)

    def run(self) -> None:
        start = time.monotonic()
        sec = 0
        while not self._stop_event.is_set() and (self.seconds is None or sec < self.seconds):
            for j in range(self.slices):
                delay = start + sec + j / self.slices - time.monotonic()
                if delay > 0 and self._stop_event.wait(delay):
                    return
                self.lag = max(self.lag, -delay)
                self.tick(sec, j)
            sec += 1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def live_roles(broker_pid: int, anvil_pid: int) -> Callable[[int, str], str | None]:
    """The parts of the live stack for a :class:`CpuAccount`: the oracle processes,
    this script (background and breach publishers, the chain watcher), anvil, the
    broker and PostgreSQL (server and backends). Shows which part is short of a core
    when ingest falls behind."""
    fixed = {
        os.getpid(): "bench (publishers, watcher)",
        broker_pid: "mosquitto",
        anvil_pid: "anvil",
    }

    def role(pid: int, comm: str) -> str | None:
        if pid in fixed:
            return fixed[pid]
        if comm == "postgres":
            return "postgresql"
        if comm.startswith("python") and "backend.oracle" in _cmdline(pid):
            return "oracle"
        return None

    return role


def run_live(args: argparse.Namespace) -> dict[str, Any]:
    from backend.store.models import OutboxRow, ReadingRow

    n_bg = args.background_devices
    per_order = args.background_per_order
    n_bg_orders = -(-n_bg // per_order) if n_bg else 0
    n_breach = args.breaches
    duration = args.warmup + n_breach * args.spacing + 15  # seconds of background telemetry
    bg_keys = device_keys(n_bg)
    breach_keys = [(10_000 + i).to_bytes(32, "big") for i in range(n_breach)]
    groups = [bg_keys[i : i + per_order] for i in range(0, n_bg, per_order)] + [
        [k] for k in breach_keys
    ]
    env = {k: v for k, _, v in (knob.partition("=") for knob in args.oracle_env)}
    # readings are stamped after shipment and before the chain's clock: move it 2 h on
    with live_stack(
        args.backend,
        groups,
        client_id="bench-live-oracle",
        clock_ahead_secs=7200,
        index_timeout_secs=60,
        oracle_env=env,
        oracle_log=args.oracle_log,
        oracles=args.oracles,
    ) as live:
        domain, shipped, watcher, oracle = live.domain, live.shipped, live.watcher, live.oracle
        bg_orders, breach_orders = live.orders[:n_bg_orders], live.orders[n_bg_orders:]
        # background: one reading per device per second, pre-signed
        seconds = int(duration) + 1
        background: list[list[tuple[str, bytes]]] = [[] for _ in range(seconds)]
        for oid, keys in bg_orders:
            for key in keys:
                for sec in range(seconds):
                    background[sec].append(
                        _signed(domain, key, oid, sec + 1, shipped[oid] + 1 + sec, 450 + sec % 50)
                    )
        # breach: seq 1 out of range, seq 2 out of range 70 s later → completes the breach
        breach_msgs = [
            (
                oid,
                _signed(domain, keys[0], oid, 1, shipped[oid] + 10, 1200),
                _signed(domain, keys[0], oid, 2, shipped[oid] + 10 + LIVE_TOLERATED_S + 10, 1250),
                device_address(keys[0]),
            )
            for oid, keys in breach_orders
        ]
        bg_client = live.client("bench-background")
        breach_client = live.client("bench-breach")
        bg_sent = [0]

        def publish_slice(sec: int, j: int) -> None:
            for topic, payload in background[sec][j::SLICES]:
                bg_client.publish(topic, payload, qos=1)
                bg_sent[0] += 1

        bg_thread = Paced(publish_slice, seconds=seconds)
        rng = random.Random(7)
        published: dict[int, float] = {}
        console.print(
            f"live: {n_breach} breaches every ~{args.spacing:.1f} s with {n_bg} background "
            f"devices at 1 reading/s on {n_bg_orders} orders ({args.backend})"
        )
        bg_thread.start()
        time.sleep(args.warmup)
        t_start = time.monotonic()
        load_before = os.getloadavg()[0]
        cpu = CpuAccount(live_roles(live.broker.pid, live.anvil.pid))
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("breaches", total=n_breach)
            for i, (oid, first, completing, _dev) in enumerate(breach_msgs):
                at = t_start + i * args.spacing + rng.uniform(0, args.spacing / 3)
                breach_client.publish(*first, qos=1)
                time.sleep(max(0.0, at + 1.0 - time.monotonic()))
                published[oid] = time.time()
                breach_client.publish(*completing, qos=1)
                progress.advance(task)
            deadline = time.monotonic() + 60
            while len(watcher.seen) < n_breach and time.monotonic() < deadline:
                time.sleep(0.05)
        load_after = os.getloadavg()[0]
        cores = cpu.cores()
        bg_thread.stop()
        watcher.stop()
        missing = [oid for oid in published if oid not in watcher.seen]
        if missing:
            raise RuntimeError(
                f"no ExcursionProven for orders {missing} within 60 s:\n" + oracle.tail()
            )
        # every background reading sent must be stored (a loss would show here)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if live.count(ReadingRow) == bg_sent[0] + 2 * n_breach:
                break
            time.sleep(0.2)
        # the oracle's own stamps, for the split
        rows: list[dict[str, float]] = []
        with Session(live.engine) as s:
            for oid, _f, _c, dev in breach_msgs:
                received = s.scalar(
                    select(ReadingRow.received_at).where(
                        ReadingRow.device == dev, ReadingRow.seq == 2
                    )
                )
                entry = s.scalars(
                    select(OutboxRow).where(OutboxRow.dedup_key == f"breach:{oid}")
                ).one()
                if received is None:
                    raise RuntimeError(f"order {oid}: the completing reading is not stored")
                t_pub, t_seen = published[oid], watcher.seen[oid]
                rows.append(
                    {
                        "order_id": oid,
                        "total_s": t_seen - t_pub,
                        "mqtt_s": float(received) - t_pub,
                        "ingest_s": float(entry.created_at) - float(received),
                        "outbox_chain_s": t_seen - float(entry.created_at),
                        "outbox_done_s": float(entry.updated_at) - float(entry.created_at),
                    }
                )
        stored_bg = live.count(ReadingRow) - 2 * n_breach
        measured_s = time.monotonic() - t_start

    def stats(key: str) -> dict[str, float]:
        xs = [r[key] for r in rows]
        return {
            "p50": percentile(xs, 50),
            "p90": percentile(xs, 90),
            "p99": percentile(xs, 99),
            "max": max(xs),
            "mean": statistics.fmean(xs),
        }

    parts = {k: stats(k) for k in ("total_s", "mqtt_s", "ingest_s", "outbox_chain_s")}
    table = Table(
        title=f"Breach latency: completing reading published → ExcursionProven on anvil "
        f"({n_breach} breaches, {n_bg} background devices at 1/s, {args.backend})"
    )
    for col in ("stage", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"):
        table.add_column(col, justify="right")
    labels = {
        "total_s": "total",
        "mqtt_s": "MQTT: publish → received",
        "ingest_s": "ingest: received → outbox entry",
        "outbox_chain_s": "outbox + chain: → event seen",
    }
    for k, label in labels.items():
        st = parts[k]
        table.add_row(
            label, *(f"{st[q] * 1000:,.0f}" for q in ("p50", "p90", "p99", "max", "mean"))
        )
    console.print(table)
    console.print(
        f"background: {bg_sent[0]:,} readings sent, {stored_bg:,} stored; "
        f"{measured_s:.0f} s measured; load average {load_before:.1f} → {load_after:.1f}"
    )
    console.print(
        "cores used while breaches ran: "
        + ", ".join(f"{role} {c:.2f}" for role, c in cores.items())
        + f" (of {os.cpu_count()})"
    )
    return {
        "benchmark": "breach latency (completing reading published → ExcursionProven on anvil)",
        "backend": args.backend,
        "oracles": args.oracles,
        "breaches": n_breach,
        "spacing_s": args.spacing,
        "background_devices": n_bg,
        "background_orders": n_bg_orders,
        "background_devices_per_order": per_order,
        "background_readings_per_s": n_bg,
        "background_readings_sent": bg_sent[0],
        "background_readings_stored": stored_bg,
        "oracle_env": list(args.oracle_env),
        "load_avg_1m": [load_before, load_after],
        "cpu_cores": cores,
        "target_p99_s": 2.0,
        "latency_s": parts,
        "samples": rows,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }


def save(out: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` into the JSON at ``out`` (each mode keeps the other's figures)."""
    body: dict[str, Any] = {}
    if out.exists():
        try:
            body = json.loads(out.read_text())
        except ValueError:
            body = {}
    body.update(update)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=2) + "\n")
    console.print(f"saved {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", nargs="?", choices=("drain", "live"), default="drain")
    ap.add_argument("--readings", type=int, default=20_000, help="drain: readings in the backlog")
    ap.add_argument("--devices", type=int, default=1_000, help="drain: devices")
    ap.add_argument("--runs", type=int, default=3, help="drain: runs per database")
    ap.add_argument("--batch", type=int, default=500, help="drain: ingest batch size")
    ap.add_argument("--backends", default="sqlite,postgresql", help="drain: databases")
    ap.add_argument("--profile", action="store_true", help="cProfile the ingest worker (first run)")
    ap.add_argument(
        "--processes",
        default="1,2",
        help="drain: oracle process counts on PostgreSQL, one share group (empty: none)",
    )
    ap.add_argument("--breaches", type=int, default=40, help="live: breaches measured")
    ap.add_argument("--spacing", type=float, default=1.5, help="live: seconds between breaches")
    ap.add_argument(
        "--background-devices", type=int, default=300, help="live: devices at 1 reading/s"
    )
    ap.add_argument(
        "--background-per-order", type=int, default=10, help="live: background devices per order"
    )
    ap.add_argument("--warmup", type=float, default=5.0, help="live: background-only seconds")
    ap.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"), help="live")
    ap.add_argument(
        "--oracle-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="live: extra environment for the oracle (e.g. ORACLE_OUTBOX_POLL_SECS=0.5)",
    )
    ap.add_argument("--label", help="live: key of this run in the JSON (default: the database)")
    ap.add_argument(
        "--oracles", type=int, default=1, help="live: oracle processes (several: PostgreSQL)"
    )
    ap.add_argument("--oracle-log", type=Path, help="live: keep the oracle's log here")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.mode == "live":
        result = run_live(args)
        previous = json.loads(args.out.read_text()) if args.out.exists() else {}
        live = previous.get("live_latency", {})
        if "benchmark" in live:  # an older single-backend section
            live = {}
        save(args.out, {"live_latency": {**live, args.label or args.backend: result}})
        return 0
    keys = device_keys(args.devices)
    t = time.perf_counter()
    messages = presign(args.readings, keys)
    console.print(
        f"signed {len(messages)} readings from {args.devices} devices "
        f"in {time.perf_counter() - t:.1f} s"
    )

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    runs: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    processes = [int(p) for p in args.processes.split(",") if p.strip()]
    scaling: dict[int, list[dict[str, Any]]] = {p: [] for p in processes}
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
        for p in processes:
            r = run_processes(messages, keys, args.batch, p)
            scaling[p].append(r)
            shares = ", ".join(
                f"{x['stored']:,.0f} in {x['batches']:,.0f} batches, {x['store_s']:.1f} s storing"
                for x in r["per_process"]
            )
            console.print(
                f"run {i + 1} postgresql × {p} process(es): {r['readings_per_s']:,.0f} "
                f"readings/s ({r['seconds']:.2f} s, {r['cpu_us_per_reading']:.0f} µs CPU each, "
                f"PostgreSQL {r['postgres_cpu_us_per_reading']:.0f} µs; stored {shares}; "
                f"load {r['load_avg_1m']:.1f})"
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
    scale: dict[str, Any] = {}
    if processes:
        ceiling = ceilings(messages)
        st = Table(title="Drain on PostgreSQL with several oracle processes (one share group)")
        for col in (
            "processes",
            "readings/s",
            "× one",
            "oracle CPU µs each",
            "postgres µs",
            "broker µs",
            "cores bound /s",
            "drain s",
            "load 1m",
        ):
            st.add_column(col, justify="right")
        base = None
        cores = os.cpu_count() or 1
        for p, rs in scaling.items():
            med = {
                k: statistics.median(r[k] for r in rs)
                for k in (
                    "readings_per_s",
                    "cpu_us_per_reading",
                    "postgres_cpu_us_per_reading",
                    "broker_cpu_us_per_reading",
                    "seconds",
                    "load_avg_1m",
                )
            }
            # what the machine's cores allow when every process shares them
            med["cores_bound_per_s"] = (
                cores
                * 1e6
                / (
                    med["cpu_us_per_reading"]
                    + med["postgres_cpu_us_per_reading"]
                    + med["broker_cpu_us_per_reading"]
                )
            )
            base = base or (med["readings_per_s"] if p == 1 else None)
            ratio = med["readings_per_s"] / base if base else None
            scale[str(p)] = {"median": med, "ratio_to_one": ratio, "runs": rs}
            st.add_row(
                str(p),
                f"{med['readings_per_s']:,.0f}",
                f"{ratio:.2f}" if ratio else "–",
                f"{med['cpu_us_per_reading']:.0f}",
                f"{med['postgres_cpu_us_per_reading']:.0f}",
                f"{med['broker_cpu_us_per_reading']:.0f}",
                f"{med['cores_bound_per_s']:,.0f}",
                f"{med['seconds']:.2f}",
                f"{med['load_avg_1m']:.1f}",
            )
        console.print(st)
        console.print(
            f"ceiling per core: signature checks alone {ceiling['verify_per_core_s']:,.0f} "
            f"readings/s; MQTT receive alone {ceiling['receive_per_core_s']:,.0f} messages/s "
            f"(stock paho {ceiling['receive_stock_paho_per_core_s']:,.0f}) "
            f"({os.cpu_count()} cores)"
        )
        scale = {"by_processes": scale, "ceiling_per_core": ceiling}
    save(
        args.out,
        {
            "benchmark": "ingest drain (MQTT backlog → verify → store → rules)",
            "scaling": scale,
            "readings": args.readings,
            "devices": args.devices,
            "batch_size": args.batch,
            "runs": args.runs,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "results": summary,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
