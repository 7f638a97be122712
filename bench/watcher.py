"""How fast a party's watcher checks its readings: decode, signature recovery, the
chain binding (cached view), its SQLite record and the rules, per reading.

In process: the eth-tester chain with the contracts deployed, one shipped order with
``--devices`` certified devices, ``--readings`` signed readings per device (in range,
with a 40-minute excursion in the middle so the excursion rule runs on its evidence
path). Signing is not timed; :meth:`Watcher.handle` is, over every message in seq
order, into a fresh SQLite file per run.

    .venv/bin/python bench/watcher.py
    .venv/bin/python bench/watcher.py --devices 4 --readings 2000 --runs 5

Prints a table and writes bench/results/watcher.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from backend.chain.connection import connect
from backend.chain.testing import build_stack, certify, device, device_key, issuer_key, signed
from backend.core.settings import Settings
from backend.telemetry import Reading, encode_message, telemetry_topic
from backend.watcher import ChainView, Watcher, WatcherConfig, WatcherStore
from testkit.results import measured_at

REPO = Path(__file__).resolve().parents[1]
GAS = 3_000_000


def run(devices: int, readings: int, runs: int) -> dict[str, object]:
    chain = connect(Settings(_env_file=None, DEV_MODE=True))  # type: ignore[call-arg]
    s = build_stack(chain)
    a = s.accounts
    oid = int(s.po.create_and_fund_order(s.make_terms(), by=a.buyer, gas=GAS).value)
    s.po.accept_order(oid, by=a.supplier, gas=GAS)
    certs = [certify(s.domain, oid, device(n), issuer_key(1)) for n in range(1, devices + 1)]
    s.po.ship_order(oid, certs, by=a.supplier, gas=GAS)
    t0 = chain.now() + 10
    messages: list[tuple[str, bytes]] = []
    for seq in range(1, readings + 1):
        warm = readings // 2 <= seq < readings // 2 + 5
        for n in range(1, devices + 1):
            r = Reading(oid, seq, t0 + 600 * seq, 1200 if warm else 500, 500, 100, 0, 0, 0)
            sr = signed(r, s.domain, device_key(n))
            messages.append((telemetry_topic(oid, sr.device), encode_message(sr)))
    rates = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            store = WatcherStore(Path(tmp) / "watch.sqlite")
            w = Watcher(
                ChainView(chain, s.contracts, s.deployment.block_number),
                s.contracts,
                a.buyer,
                store,
                WatcherConfig((oid,), grace_secs=3600),
            )
            w.start()
            start = time.perf_counter()
            verdicts = [w.handle(topic, payload) for topic, payload in messages]
            elapsed = time.perf_counter() - start
            store.close()
            assert verdicts.count("stored") == len(messages), set(verdicts)
            assert oid in w.breach, "the excursion was not found"
            rates.append(len(messages) / elapsed)
    return {
        "devices": devices,
        "readings_per_device": readings,
        "messages": len(messages),
        "runs": runs,
        "readings_per_s_median": round(statistics.median(rates), 1),
        "readings_per_s_min": round(min(rates), 1),
        "readings_per_s_max": round(max(rates), 1),
        "ms_per_reading_median": round(1000 / statistics.median(rates), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--readings", type=int, default=1000, help="per device")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "watcher.json")
    args = ap.parse_args()
    result = run(args.devices, args.readings, args.runs)
    table = Table(title="watcher: check + store + rules per reading")
    for key in result:
        table.add_column(key)
    table.add_row(*(str(v) for v in result.values()))
    Console().print(table)
    body = {
        "measured_at": measured_at(),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "result": result,
    }
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
