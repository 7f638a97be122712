"""Soak: the whole stack under a steady fleet for a bounded time, watched for drift.

A fresh anvil, a mosquitto with deploy/mosquitto.conf's queue limits, a new
PostgreSQL database and the whole oracle as its own process (``python -m
backend.oracle``, default settings). ``--devices`` devices on orders of
``--per-order`` publish one signed reading per second each (signed as they are
sent, so the run needs no pre-signed backlog); every ``--breach-every`` seconds one
more order's device publishes the two readings of an excursion, and the time from
the completing reading to ``ExcursionProven`` on anvil is its breach latency.

Every ``--sample-secs`` the script records readings stored, the resident memory
(RSS) of the oracle, mosquitto, anvil and this script, and the database's size.
At the end: readings sent and stored, breach latency percentiles per
``--window-mins`` window, and the slope of each process's memory per hour (a
least-squares line over the samples after the first window, and one over the
second half of the run, after the warm-up: goal, flat within noise). Saves
bench/results/soak.json and a plot (reports/soak.png).

    .venv/bin/python -m bench.soak                      # 30 minutes, 1,000 devices
    .venv/bin/python -m bench.soak --minutes 3          # a short run
    .venv/bin/python -m bench.soak --minutes 10 --devices 500
    .venv/bin/python -m bench.soak --resummarize        # slopes again from the saved samples

(``-m``: it shares the live-latency helpers of bench/ingest.py.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bench.ingest import (
    LIVE_TOLERATED_S,
    SLICES,
    Paced,
    _signed,
    console,
    device_keys,
    live_stack,
    percentile,
)
from testkit import REPO

RESULTS = REPO / "bench" / "results" / "soak.json"
PLOT = REPO / "reports" / "soak.png"


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (Linux /proc), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) in value per hour."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def run(args: argparse.Namespace) -> dict[str, Any]:
    from backend.store.models import ReadingRow

    duration = args.minutes * 60.0
    n_breach = max(1, int(duration // args.breach_every))
    samples: list[dict[str, Any]] = []
    breaches: list[dict[str, float]] = []
    sent = [0]
    keys = device_keys(args.devices)
    groups = [keys[i : i + args.per_order] for i in range(0, len(keys), args.per_order)]
    breach_keys = [(50_000 + i).to_bytes(32, "big") for i in range(n_breach)]
    # readings are stamped after shipment and before the chain's clock
    with live_stack(
        "postgresql",
        groups + [[k] for k in breach_keys],
        client_id="bench-soak-oracle",
        clock_ahead_secs=int(duration) + 7200,
        index_timeout_secs=120,
        oracle_log=args.oracle_log,
        oracle_env={k: v for k, _, v in (knob.partition("=") for knob in args.oracle_env)},
    ) as live:
        domain, shipped, watcher, engine = live.domain, live.shipped, live.watcher, live.engine
        bg_orders, breach_orders = live.orders[: len(groups)], live.orders[len(groups) :]
        bg_client = live.client("soak-background")
        breach_client = live.client("soak-breach")

        def publish_slice(sec: int, j: int) -> None:
            for oid, group in bg_orders[j::SLICES]:
                for key in group:
                    bg_client.publish(
                        *_signed(domain, key, oid, sec + 1, shipped[oid] + 1 + sec, 450 + sec % 50),
                        qos=1,
                    )
                    sent[0] += 1

        pids = {"oracle": live.oracle.pid, "mosquitto": live.broker.pid,
                "anvil": live.anvil.pid, "bench": os.getpid()}  # fmt: skip

        def sample(t0: float) -> None:
            with Session(engine) as s:
                stored = int(s.scalar(select(func.count()).select_from(ReadingRow)) or 0)
                size = int(s.scalar(text("SELECT pg_database_size(current_database())")))
            samples.append(
                {
                    "t_s": round(time.monotonic() - t0, 2),
                    "sent": sent[0],
                    "stored": stored,
                    "db_bytes": size,
                    "rss_bytes": {name: rss_bytes(pid) for name, pid in pids.items()},
                }
            )

        bg = Paced(publish_slice, name="soak-background")
        t0 = time.monotonic()
        bg.start()
        next_sample = t0
        published: dict[int, float] = {}  # wall time (the watcher's clock)
        published_at: dict[int, float] = {}  # seconds into the run
        columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(
                f"soak: {args.devices} devices at 1/s, a breach every {args.breach_every:g} s",
                total=duration,
            )
            i = 0
            while (now := time.monotonic()) < t0 + duration:
                if now >= next_sample:
                    sample(t0)
                    next_sample += args.sample_secs
                if i < n_breach and now >= t0 + i * args.breach_every + 1:
                    oid, (key,) = breach_orders[i]
                    first = _signed(domain, key, oid, 1, shipped[oid] + 10, 1200)
                    done = _signed(domain, key, oid, 2, shipped[oid] + 20 + LIVE_TOLERATED_S, 1250)
                    breach_client.publish(*first, qos=1)
                    time.sleep(0.5)
                    published[oid] = time.time()
                    published_at[oid] = time.monotonic() - t0
                    breach_client.publish(*done, qos=1)
                    i += 1
                progress.update(task, completed=min(duration, time.monotonic() - t0))
                time.sleep(0.05)
        bg.stop()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stored = live.count(ReadingRow)
            if stored >= sent[0] + 2 * len(published) and len(watcher.seen) >= len(published):
                break
            time.sleep(0.5)
        sample(t0)
        for oid, at in published.items():
            seen = watcher.seen.get(oid)
            breaches.append(
                {
                    "order_id": oid,
                    "published_s": round(published_at[oid], 3),
                    "latency_s": (seen - at) if seen is not None else float("nan"),
                }  # fmt: skip
            )
        publisher_lag = bg.lag

    window = args.window_mins * 60
    windows = []
    for w in range(int(-(-duration // window))):
        xs = [b["latency_s"] for b in breaches if w * window <= b["published_s"] < (w + 1) * window]
        got = [x for x in xs if x == x]  # not NaN
        windows.append(
            {
                "from_min": w * args.window_mins,
                "breaches": len(xs),
                "proven": len(got),
                "p50_s": percentile(got, 50) if got else None,
                "p95_s": percentile(got, 95) if got else None,
                "p99_s": percentile(got, 99) if got else None,
            }
        )
    steady = [s for s in samples if s["t_s"] >= min(window, duration / 5)]
    last = samples[-1]
    return {
        "benchmark": "soak (whole stack on PostgreSQL, one reading per device per second)",
        "minutes": args.minutes,
        "devices": args.devices,
        "devices_per_order": args.per_order,
        "breach_every_s": args.breach_every,
        "readings_sent": last["sent"],
        "readings_stored": last["stored"],
        "breaches_published": len(breaches),
        "breaches_proven": sum(1 for b in breaches if b["latency_s"] == b["latency_s"]),
        "publisher_max_lag_s": round(publisher_lag, 3),
        "breach_latency_by_window": windows,
        **memory_slopes(samples, min(window, duration / 5)),
        "rss_end_bytes": last["rss_bytes"],
        "db_bytes_end": last["db_bytes"],
        "db_bytes_slope_per_hour": slope_per_hour([(s["t_s"], s["db_bytes"]) for s in steady]),
        "samples": samples,
        "breaches": breaches,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_end": os.getloadavg()[0],
        },
    }


def memory_slopes(samples: list[dict[str, Any]], after_s: float) -> dict[str, Any]:
    """Each process's RSS slope per hour over the samples from ``after_s`` on, and over
    the second half of the run: a process whose windows and caches fill during the
    first minutes (the oracle's take about nine at 1,000 devices) shows its warm-up
    in the first and only its drift in the second."""
    half = samples[-1]["t_s"] / 2

    def slopes(since: float) -> dict[str, float | None]:
        return {
            name: slope_per_hour(
                [
                    (s["t_s"], s["rss_bytes"][name])
                    for s in samples
                    if s["t_s"] >= since and s["rss_bytes"][name]
                ]
            )  # fmt: skip
            for name in samples[0]["rss_bytes"]
        }

    return {
        "rss_slope_bytes_per_hour": slopes(after_s),
        "rss_slope_second_half_bytes_per_hour": slopes(half),
    }


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t_s"] / 60 for s in samples]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for name in samples[0]["rss_bytes"]:
        ax1.plot(t, [(s["rss_bytes"][name] or 0) / 2**20 for s in samples], label=name)
    ax1.set_ylabel("RSS (MiB)")
    ax1.legend(loc="upper left")
    ax1.set_title(
        f"soak: {result['devices']} devices at 1 reading/s, {result['minutes']} min, PostgreSQL"
    )
    ax2.plot(t, [s["db_bytes"] / 2**20 for s in samples], label="database size")
    ax2b = ax2.twinx()
    ax2b.plot(t, [s["stored"] / 1000 for s in samples], color="tab:green", label="stored (k)")
    ax2.set_ylabel("database (MiB)")
    ax2b.set_ylabel("readings stored (thousands)")
    b = [x for x in result["breaches"] if x["latency_s"] == x["latency_s"]]
    ax3.plot([x["published_s"] / 60 for x in b], [x["latency_s"] * 1000 for x in b], ".")
    ax3.set_ylabel("breach latency (ms)")
    ax3.set_xlabel("minutes")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def report(result: dict[str, Any]) -> None:
    table = Table(title="breach latency per window (completing reading → ExcursionProven)")
    for col in ("from min", "breaches", "proven", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="right")
    for w in result["breach_latency_by_window"]:
        ms = [
            f"{w[k] * 1000:,.0f}" if w[k] is not None else "—" for k in ("p50_s", "p95_s", "p99_s")
        ]
        table.add_row(str(w["from_min"]), str(w["breaches"]), str(w["proven"]), *ms)
    console.print(table)
    mem = Table(title="memory")
    for col in ("process", "RSS at the end (MiB)", "slope (MiB/h)", "second half (MiB/h)"):
        mem.add_column(col, justify="right")

    def mib_h(slope: float | None) -> str:
        return f"{slope / 2**20:+,.1f}" if slope is not None else "—"

    for name, end in result["rss_end_bytes"].items():
        mem.add_row(
            name,
            f"{(end or 0) / 2**20:,.1f}",
            mib_h(result["rss_slope_bytes_per_hour"][name]),
            mib_h(result.get("rss_slope_second_half_bytes_per_hour", {}).get(name)),
        )
    console.print(mem)
    console.print(
        f"readings: {result['readings_sent']:,} sent, {result['readings_stored']:,} stored; "
        f"breaches: {result['breaches_published']} published, {result['breaches_proven']} proven; "
        f"database {result['db_bytes_end'] / 2**20:,.0f} MiB; publisher lag at most "
        f"{result['publisher_max_lag_s']:.2f} s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the fleet publishes")
    ap.add_argument("--devices", type=int, default=1_000, help="devices at one reading/s")
    ap.add_argument("--per-order", type=int, default=10, help="devices per order")
    ap.add_argument("--breach-every", type=float, default=20.0, help="seconds between breaches")
    ap.add_argument("--sample-secs", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--window-mins", type=float, default=5.0, help="latency window (minutes)")
    ap.add_argument(
        "--oracle-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the oracle (e.g. MALLOC_ARENA_MAX=2)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--plot", type=Path, default=PLOT)
    ap.add_argument("--oracle-log", type=Path, default=REPO / "reports" / "soak-oracle.log")
    ap.add_argument(
        "--resummarize",
        action="store_true",
        help="run nothing: work the memory slopes out again from the samples in --out, "
        "save it and report",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.resummarize:
        result = json.loads(args.out.read_text())
        window = args.window_mins * 60
        duration = result["minutes"] * 60
        result.update(memory_slopes(result["samples"], min(window, duration / 5)))
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        report(result)
        console.print(f"saved {args.out}")
        return 0
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.plot)
    report(result)
    console.print(f"saved {args.out} and {args.plot}")
    lost = result["readings_sent"] + 2 * result["breaches_published"] - result["readings_stored"]
    if result["breaches_proven"] < result["breaches_published"] or lost > 0:
        console.print("[red]readings lost or breaches not proven[/red]")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
