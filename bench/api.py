"""REST API read throughput: one and two uvicorn workers, SQLite and PostgreSQL.

    .venv/bin/python bench/api.py [--databases sqlite,postgresql] [--workers 1,2]
                                  [--orders 1000] [--readings 100000] [--seconds 5]

Pre-fills a database per backend (orders of the dev buyer, signed-reading rows),
starts the API read-only (no chain) with each number of workers — each worker a
process of its own serving the same listening socket, as ``uvicorn --workers`` does —
and measures requests per second for

* ``GET /orders/{id}`` (random ids),
* ``GET /orders?limit=50``,
* ``GET /orders/{id}/telemetry?limit=100`` (random orders and offsets),

with ``wrk`` when it is installed (``apt-get install wrk``), else an asyncio/httpx
load generator in its own process. Beside each rate it prints the servers' CPU time
per request (their user + system time over the requests answered): on a machine
shared with other work the rate follows the CPU the servers were given, the CPU per
request much less, so ``1e6 / µs`` is what one free core would serve. Prints the
median of 3 runs per case, the 2-worker / 1-worker ratio measured in the same run,
and saves bench/results/api.json. Target: ≥ 1,500 requests/s for the order list and
a telemetry page on one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testkit import REPO
from testkit.results import machine, measured_at, save_json

RESULTS = REPO / "bench" / "results" / "api.json"
API_KEY = "dev-buyer"
TARGET_RPS = 1500
CASES = ("GET /orders/{id}", "GET /orders?limit=50", "GET /orders/{id}/telemetry?limit=100")
#: The cases the target is for.
TARGET_CASES = CASES[1:]


def commit_of(checkout: Path) -> str | None:
    """The commit ``checkout`` has out (None outside a git work tree)."""
    out = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None


# --- the database -------------------------------------------------------------------


def prefill(url: str, orders: int, readings: int, order_with_readings: int) -> None:
    """Orders 1..orders (the dev buyer's); readings spread over the first orders."""
    from rich.progress import Progress
    from sqlalchemy import insert

    from backend.api.parties import PartyRegistry
    from backend.core.settings import Settings
    from backend.store.db import make_engine, upgrade_to_head
    from backend.store.models import DeviceRow, OrderRow, ReadingRow
    from testkit.api_seed import order_values

    parties = PartyRegistry.from_settings(Settings(DEV_MODE=True, _env_file=None))  # type: ignore[call-arg]
    buyer, supplier, arbiter = (
        parties.by_name(n).address for n in ("buyer", "supplier", "arbiter")
    )
    engine = make_engine(url)
    upgrade_to_head(engine)
    rng = random.Random(7)
    per_order = readings // order_with_readings
    with Progress() as progress:
        task = progress.add_task(f"pre-filling {engine.dialect.name}", total=orders + readings)
        with engine.begin() as conn:
            rows = [order_values(i, buyer, supplier, arbiter) for i in range(1, orders + 1)]
            conn.execute(insert(OrderRow), rows)
            progress.advance(task, orders)
            for o in range(1, order_with_readings + 1):
                dev = "0x" + f"{o:040x}"
                conn.execute(insert(DeviceRow), [{"order_id": o, "device": dev}])
                batch = [
                    {
                        "order_id": o,
                        "device": dev,
                        "seq": s,
                        "timestamp": 1_800_000_000 + 60 * s,
                        "temperature_centi_c": 400 + rng.randrange(-50, 50),
                        "humidity_permille": 550,
                        "shock_milli_g": rng.randrange(0, 200),
                        "latitude_e6": 51_000_000,
                        "longitude_e6": 4_000_000,
                        "flags": 0,
                        "signature": rng.randbytes(65),
                        "digest": rng.randbytes(32),
                        "received_at": time.time(),
                        "batch_seq": None,
                    }
                    for s in range(per_order)
                ]
                conn.execute(insert(ReadingRow), batch)
                progress.advance(task, per_order)
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
    engine.dispose()


# --- the servers (subprocesses) ---------------------------------------------------------


def run_server(url: str, fd: int) -> None:
    """Serve the API (read-only: no chain) on the listening socket ``fd``."""
    import uvicorn

    from backend.api.app import create_app
    from backend.api.context import ApiContext, api_engine
    from backend.api.parties import PartyRegistry
    from backend.api.server import ApiServer
    from backend.core.settings import Settings
    from backend.store.db import session_factory

    settings = Settings(DEV_MODE=True, _env_file=None)  # type: ignore[call-arg]
    engine = api_engine(url)
    context = ApiContext(
        settings=settings,
        session_factory=session_factory(engine),
        parties=PartyRegistry.from_settings(settings),
    )
    config = uvicorn.Config(create_app(context), workers=1, log_level="warning", access_log=False)
    ApiServer(config, context).run(sockets=[socket.socket(fileno=fd)])


@contextlib.contextmanager
def servers(url: str, workers: int, code: Path | None = None) -> Iterator[tuple[list[int], int]]:
    """``workers`` server processes on one listening socket: (their pids, the port);
    ``code``: a checkout whose ``backend`` they serve instead of this one's."""
    import httpx

    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code.resolve())

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = int(listener.getsockname()[1])
    fd = listener.fileno()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", url, "--fd", str(fd)],
            cwd=REPO,
            pass_fds=(fd,),
            env=env,
        )
        for _ in range(workers)
    ]
    listener.close()
    try:
        deadline = time.monotonic() + 120
        ready = False
        while not ready:  # /health answers, and no worker is still starting (busy alone)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} API workers did not settle within 120 s")
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"an API worker exited with {proc.returncode}")
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                up = False
            before = [cpu_seconds([p.pid]) for p in procs]
            time.sleep(0.5)
            after = [cpu_seconds([p.pid]) for p in procs]
            ready = up and all(b - a < 0.05 for a, b in zip(before, after, strict=True))
        yield [p.pid for p in procs], port
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


# --- load generators ----------------------------------------------------------------------

LUA = """
math.randomseed(os.time())
local paths = {%s}
request = function()
  return wrk.format("GET", paths[math.random(#paths)], {["X-API-Key"] = "%s"})
end
"""


def wrk_run(base: str, paths: list[str], seconds: int, connections: int) -> tuple[float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % (",".join(json.dumps(p) for p in paths), API_KEY))
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers during the load:\n{out}")
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    n = re.search(r"([0-9]+) requests in", out)
    if m is None or n is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    return float(m.group(1)), int(n.group(1))


async def _httpx_load(
    base: str, paths: list[str], seconds: int, connections: int
) -> dict[str, Any]:
    import httpx

    done = errors = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, headers={"X-API-Key": API_KEY}) as c:

        async def worker() -> None:
            nonlocal done, errors
            rng = random.Random()
            while time.monotonic() < stop:
                r = await c.get(rng.choice(paths))
                if r.status_code == 200:
                    done += 1
                else:
                    errors += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - start
    return {"rps": done / elapsed, "requests": done, "errors": errors}


def httpx_run(base: str, paths: list[str], seconds: int, connections: int) -> tuple[float, int]:
    """The httpx load generator, in its own process (so it does not share the server's GIL)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(paths, f)
        path_file = f.name
    try:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                base,
                "--paths",
                path_file,
                "--seconds",
                str(seconds),
                "--connections",
                str(connections),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(path_file)
    result = json.loads(out)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} non-200 answers during the load")
    return float(result["rps"]), int(result["requests"])


# --- main ------------------------------------------------------------------------------


def measure(
    run: Any,
    url: str,
    workers: int,
    cases: dict[str, list[str]],
    args: argparse.Namespace,
    trees: dict[str, Path | None],
) -> dict[str, dict[str, Any]]:
    """Each case against ``workers`` servers of each tree (``label → checkout``, ``None``
    for this one), their runs alternating: per tree and case the median rate and CPU
    per request."""
    out: dict[str, dict[str, Any]] = {label: {} for label in trees}
    with contextlib.ExitStack() as stack:
        up = {}
        for label, code in trees.items():
            up[label] = stack.enter_context(servers(url, workers, code))
        for name, paths in cases.items():
            rates: dict[str, list[float]] = {label: [] for label in trees}
            cpus: dict[str, list[float]] = {label: [] for label in trees}
            for _pids, port in up.values():
                run(f"http://127.0.0.1:{port}", paths, 1, args.connections)  # warm-up
            for _ in range(args.runs):
                for label, (pids, port) in up.items():
                    before = cpu_seconds(pids)
                    rate, requests = run(
                        f"http://127.0.0.1:{port}", paths, args.seconds, args.connections
                    )
                    rates[label].append(rate)
                    cpus[label].append((cpu_seconds(pids) - before) / max(1, requests) * 1e6)
            for label in trees:
                rate, cpu = statistics.median(rates[label]), statistics.median(cpus[label])
                out[label][name] = {
                    "median_rps": round(rate, 1),
                    "runs_rps": [round(r, 1) for r in rates[label]],
                    "server_cpu_us_per_request": round(cpu, 1),
                }
                runs = ", ".join(f"{r:.0f}" for r in rates[label])
                tag = "" if len(trees) == 1 else f"{label:9s}"
                print(
                    f"  {tag}{workers} worker(s) {name:38s} {rate:7.0f} req/s "
                    f"{cpu:6.0f} µs CPU/req   (runs: {runs})"
                )
    return out


@contextlib.contextmanager
def database(kind: str, where: Path) -> Iterator[str]:
    """A fresh, empty database's URL: a SQLite file in ``where`` or a PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{where / 'api.db'}"
    else:
        from testkit.databases import postgres_schema, schema_url

        with postgres_schema("trustship_bench_api_") as schema:
            yield schema_url(schema)


def table(results: dict[str, Any], worker_counts: list[int]) -> str:
    head = ["request"]
    for db in results:
        head += [f"{db} {w}w" for w in worker_counts]
        if len(worker_counts) > 1:
            head.append(f"{db} {worker_counts[-1]}w/{worker_counts[0]}w")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for case in CASES:
        row = [case]
        for by_workers in results.values():
            rates = [by_workers[str(w)][case]["median_rps"] for w in worker_counts]
            row += [f"{r:,.0f}" for r in rates]
            if len(worker_counts) > 1:
                row.append(f"{rates[-1] / rates[0]:.2f}×")
        lines.append(" | ".join(row))
    return "\n".join(lines)


def versus(current: dict[str, Any], baseline: dict[str, Any], worker_counts: list[int]) -> str:
    head = ["request"] + [f"{db} {w}w" for db in current for w in worker_counts]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for case in CASES:
        row = [case]
        for db, by_workers in current.items():
            for w in worker_counts:
                now, then = by_workers[str(w)][case], baseline[db][str(w)][case]
                rps = now["median_rps"] / then["median_rps"]
                cpu = then["server_cpu_us_per_request"] / now["server_cpu_us_per_request"]
                row.append(f"{rps:.2f}× ({cpu:.2f}× less CPU)")
        lines.append(" | ".join(row))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--databases", default="sqlite,postgresql", help="comma-separated")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--readings", type=int, default=100_000)
    p.add_argument("--orders-with-readings", type=int, default=100)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto")
    p.add_argument(
        "--baseline",
        type=Path,
        help="a checkout (e.g. a worktree of main) to measure too, runs alternating with "
        "this one's: before/after figures from the same run",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help="where to save the JSON")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--load", help=argparse.SUPPRESS)
    p.add_argument("--paths", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.serve:
        run_server(args.serve, args.fd)
        return 0
    if args.load:
        paths = json.loads(args.paths.read_text())
        print(
            json.dumps(asyncio.run(_httpx_load(args.load, paths, args.seconds, args.connections)))
        )
        return 0

    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "httpx"
    run = wrk_run if generator == "wrk" else httpx_run
    if generator == "httpx":
        print(
            "note: no wrk; the httpx load generator tops out at a few hundred requests/s on "
            "this kind of machine, so the figures below are the client's limit, not the "
            "server's (apt-get install wrk)"
        )

    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    worker_counts = [int(w) for w in args.workers.split(",")]
    rng = random.Random(1)
    per_order = args.readings // args.orders_with_readings
    cases = {
        CASES[0]: [f"/orders/{rng.randint(1, args.orders)}" for _ in range(500)],
        CASES[1]: ["/orders?limit=50"],
        CASES[2]: [
            f"/orders/{rng.randint(1, args.orders_with_readings)}/telemetry"
            f"?limit=100&offset={rng.randrange(0, max(1, per_order - 100))}"
            for _ in range(500)
        ],
    }
    trees: dict[str, Path | None] = {"current": None}
    if args.baseline is not None:
        trees["baseline"] = args.baseline
    every: dict[str, dict[str, Any]] = {label: {} for label in trees}
    results = every["current"]
    with tempfile.TemporaryDirectory(prefix="trustship-bench-api-") as tmp:
        for kind in kinds:
            with database(kind, Path(tmp)) as url:
                t0 = time.monotonic()
                prefill(url, args.orders, args.readings, args.orders_with_readings)
                took = time.monotonic() - t0
                print(
                    f"{kind}: pre-filled {args.orders} orders and {args.readings} readings "
                    f"in {took:.1f} s"
                )
                for w in worker_counts:
                    by_tree = measure(run, url, w, cases, args, trees)
                    for label, figures in by_tree.items():
                        every[label].setdefault(kind, {})[str(w)] = figures
    print()
    print(table(results, worker_counts))
    if args.baseline is not None:
        print(f"\nbaseline ({args.baseline}), measured alternately with the above:")
        print(table(every["baseline"], worker_counts))
        print("\ncurrent / baseline, requests/s (and CPU per request):")
        print(versus(results, every["baseline"], worker_counts))
    one = str(worker_counts[0])
    for kind, by_workers in results.items():
        for case in TARGET_CASES:
            rate = by_workers[one][case]["median_rps"]
            cpu = by_workers[one][case]["server_cpu_us_per_request"]
            verdict = "meets" if rate >= TARGET_RPS else "BELOW"
            print(
                f"{kind} {case}: {rate:,.0f}/s on {one} worker — {verdict} the target of "
                f"{TARGET_RPS:,}/s ({1e6 / cpu:,.0f}/s per core at {cpu:.0f} µs CPU each)"
            )
    summary = {
        "benchmark": "api",
        "generator": generator,
        "generator_limited": generator == "httpx",
        "workers": worker_counts,
        "connections": args.connections,
        "seconds_per_run": args.seconds,
        "runs": args.runs,
        "orders": args.orders,
        "readings": args.readings,
        "target_rps": TARGET_RPS,
        "target_cases": list(TARGET_CASES),
        "commit": commit_of(REPO),
        "results": results,
        "baseline": None
        if args.baseline is None
        else {
            "checkout": str(args.baseline),
            "commit": commit_of(args.baseline),
            "results": every["baseline"],
        },
        "load_average": os.getloadavg(),
        "machine": machine(),
        "measured_at": measured_at(),
    }
    save_json(args.output, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
