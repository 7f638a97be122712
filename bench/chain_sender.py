"""Transaction throughput of the chain layer's one sender (TxSender).

    .venv/bin/python bench/chain_sender.py [--n 300] [--runs 3] [--backends eth-tester,anvil]

For each backend (in-process eth-tester; a fresh anvil with automine per run,
MEASURED.md: anvil slows as its chain grows) it deploys the contracts and sends
``commitReadings`` transactions from the oracle key in three modes:

* ``transact, estimated gas`` — send and wait, one ``eth_estimateGas`` each;
* ``transact, fixed gas``     — send and wait, gas given;
* ``submit + wait_all``       — fixed gas, up to ``--in-flight`` unconfirmed at a time.

Prints the median tx/s of ``--runs`` runs per case and saves bench/results/chain_sender.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backend.chain.connection import connect
from backend.chain.testing import Stack, build_stack
from backend.core.settings import Settings
from testkit import REPO
from testkit.servers import start_anvil

COMMIT_GAS = 150_000


def _measure(stack: Stack, mode: str, n: int, in_flight: int) -> float:
    """Fleet roots per second (``commitFleetRoot``, one per window for the whole fleet)."""
    oracle = stack.chain.sender(stack.accounts.oracle)
    oracle.max_in_flight = in_flight
    committer = stack.accounts.oracle.address
    base, _ = stack.qv.fleet_log(committer)
    root = b"\x42" * 32
    start = time.perf_counter()
    for i in range(1, n + 1):
        if mode == "transact, estimated gas":
            stack.qv.commit_fleet_root(base + i, root, 100, by=oracle)
        elif mode == "transact, fixed gas":
            stack.qv.commit_fleet_root(base + i, root, 100, by=oracle, gas=COMMIT_GAS)
        else:
            stack.qv.submit_commit_fleet_root(base + i, root, 100, by=oracle, gas=COMMIT_GAS)
    oracle.wait_all()
    elapsed = time.perf_counter() - start
    assert stack.qv.fleet_log(committer)[0] == base + n
    return n / elapsed


def _with_stack(backend: str, fn: Callable[[Stack], float]) -> float:
    if backend == "eth-tester":
        settings = Settings(_env_file=None, RPC_URL=None, DEV_MODE=True)  # type: ignore[call-arg]
        return fn(build_stack(connect(settings)))
    server = start_anvil()
    try:
        settings = Settings(_env_file=None, RPC_URL=server.extra["url"], DEV_MODE=True)  # type: ignore[call-arg]
        return fn(build_stack(connect(settings), "anvil"))
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="transactions per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--backends", default="eth-tester,anvil")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "chain_sender.json"
    )
    args = parser.parse_args()

    modes = ["transact, estimated gas", "transact, fixed gas", "submit + wait_all"]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results: dict[str, dict[str, dict[str, object]]] = {}
    console = Console()
    with Progress(console=console) as progress:
        task = progress.add_task("measuring", total=len(backends) * len(modes) * args.runs)
        for backend in backends:
            results[backend] = {}
            for mode in modes:
                rates = []
                for _ in range(args.runs):
                    rates.append(
                        _with_stack(
                            backend, lambda s, m=mode: _measure(s, m, args.n, args.in_flight)
                        )
                    )
                    progress.advance(task)
                results[backend][mode] = {
                    "median_tx_per_s": round(statistics.median(rates), 1),
                    "runs": [round(r, 1) for r in rates],
                }

    table = Table(title=f"TxSender throughput, commitReadings × {args.n} (median of {args.runs})")
    table.add_column("backend")
    table.add_column("mode")
    table.add_column("tx/s", justify="right")
    for backend, by_mode in results.items():
        for mode, figures in by_mode.items():
            table.add_row(backend, mode, f"{figures['median_tx_per_s']:,}")
    console.print(table)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "chain_sender",
                "n": args.n,
                "runs": args.runs,
                "max_in_flight": args.in_flight,
                "machine": {"python": platform.python_version(), "cpus": _cpus()},
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"saved {args.out}")
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
