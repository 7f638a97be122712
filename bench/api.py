"""REST API read throughput: one uvicorn worker, load from another process.

    .venv/bin/python bench/api.py [--orders 1000] [--readings 100000] [--seconds 5]

Pre-fills a SQLite database (orders of the dev buyer, signed-reading rows), starts
``uvicorn`` with one worker as a subprocess on a free port, and measures requests
per second for

* ``GET /orders/{id}`` (random ids),
* ``GET /orders?limit=50``,
* ``GET /orders/{id}/telemetry?limit=100`` (random orders and offsets),

with ``wrk`` when it is installed (``apt-get install wrk``), else an asyncio/httpx
load generator in its own process. Prints the median of 3 runs per case and saves
bench/results/api.json. Target: ≥ 1,500 order reads/s on one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from testkit import REPO
from testkit.results import machine, measured_at, save_json

RESULTS = REPO / "bench" / "results" / "api.json"
API_KEY = "dev-buyer"
TARGET_ORDER_READS = 1500


# --- the database -------------------------------------------------------------------


def prefill(db: Path, orders: int, readings: int, order_with_readings: int) -> None:
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
    engine = make_engine(f"sqlite:///{db}")
    upgrade_to_head(engine)
    rng = random.Random(7)
    per_order = readings // order_with_readings
    with Progress() as progress:
        task = progress.add_task("pre-filling SQLite", total=orders + readings)
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
    engine.dispose()


# --- the server (subprocess) ------------------------------------------------------------


def run_server(db: Path, port: int) -> None:
    """Serve the API (read-only: no chain) on ``port`` with one uvicorn worker."""
    import uvicorn

    from backend.api.app import create_app
    from backend.api.context import ApiContext, api_engine
    from backend.api.parties import PartyRegistry
    from backend.api.server import ApiServer
    from backend.core.settings import Settings
    from backend.store.db import session_factory

    settings = Settings(DEV_MODE=True, _env_file=None)  # type: ignore[call-arg]
    engine = api_engine(f"sqlite:///{db}")
    context = ApiContext(
        settings=settings,
        session_factory=session_factory(engine),
        parties=PartyRegistry.from_settings(settings),
    )
    config = uvicorn.Config(
        create_app(context),
        host="127.0.0.1",
        port=port,
        workers=1,
        log_level="warning",
        access_log=False,
    )
    ApiServer(config, context).run()


def start_server(db: Path) -> tuple[subprocess.Popen[bytes], int]:
    from testkit.servers import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(db), "--port", str(port)], cwd=REPO
    )
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the API server did not answer /health within 30 s")


# --- load generators ----------------------------------------------------------------------

LUA = """
math.randomseed(os.time())
local paths = {%s}
request = function()
  return wrk.format("GET", paths[math.random(#paths)], {["X-API-Key"] = "%s"})
end
"""


def wrk_run(base: str, paths: list[str], seconds: int, connections: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % (",".join(json.dumps(p) for p in paths), API_KEY))
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers during the load:\n{out}")
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if m is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    return float(m.group(1))


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
    return {"rps": done / elapsed, "errors": errors}


def httpx_run(base: str, paths: list[str], seconds: int, connections: int) -> float:
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
    return float(result["rps"])


# --- main ------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--readings", type=int, default=100_000)
    p.add_argument("--orders-with-readings", type=int, default=100)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto")
    p.add_argument("--output", type=Path, default=RESULTS, help="where to save the JSON")
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--load", help=argparse.SUPPRESS)
    p.add_argument("--paths", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.serve:
        run_server(args.serve, args.port)
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

    rng = random.Random(1)
    per_order = args.readings // args.orders_with_readings
    cases = {
        "GET /orders/{id}": [f"/orders/{rng.randint(1, args.orders)}" for _ in range(500)],
        "GET /orders?limit=50": ["/orders?limit=50"],
        "GET /orders/{id}/telemetry?limit=100": [
            f"/orders/{rng.randint(1, args.orders_with_readings)}/telemetry"
            f"?limit=100&offset={rng.randrange(0, max(1, per_order - 100))}"
            for _ in range(500)
        ],
    }
    with tempfile.TemporaryDirectory(prefix="trustship-bench-api-") as tmp:
        db = Path(tmp) / "api.db"
        t0 = time.monotonic()
        prefill(db, args.orders, args.readings, args.orders_with_readings)
        took = time.monotonic() - t0
        print(f"pre-filled {args.orders} orders and {args.readings} readings in {took:.1f} s")
        proc, port = start_server(db)
        base = f"http://127.0.0.1:{port}"
        results: dict[str, Any] = {}
        try:
            for name, paths in cases.items():
                run(base, paths, 1, args.connections)  # warm-up
                rates = [run(base, paths, args.seconds, args.connections) for _ in range(args.runs)]
                median = statistics.median(rates)
                results[name] = {
                    "median_rps": round(median, 1),
                    "runs_rps": [round(r, 1) for r in rates],
                }
                runs = ", ".join(f"{r:.0f}" for r in rates)
                print(f"{name:42s} {median:8.0f} req/s   (runs: {runs})")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    order_reads = results["GET /orders/{id}"]["median_rps"]
    verdict = "meets" if order_reads >= TARGET_ORDER_READS else "BELOW"
    print(f"order reads: {order_reads:.0f}/s — {verdict} the target of {TARGET_ORDER_READS}/s")
    summary = {
        "benchmark": "api",
        "generator": generator,
        "generator_limited": generator == "httpx",
        "uvicorn_workers": 1,
        "connections": args.connections,
        "seconds_per_run": args.seconds,
        "runs": args.runs,
        "orders": args.orders,
        "readings": args.readings,
        "database": "sqlite",
        "target_order_reads_per_s": TARGET_ORDER_READS,
        "results": results,
        "machine": machine(),
        "measured_at": measured_at(),
    }
    save_json(args.output, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
