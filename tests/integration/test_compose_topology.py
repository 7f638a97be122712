"""docker-compose.yml run as plain processes: the same services, commands and
environment, in compose's start order, then the scenario catalogue replayed
through the REST API the way `docker compose run simulator` would.

No Docker engine runs here, so every service is a process on 127.0.0.1 (see
tests/integration/compose_topology.py for what is relocated and how): anvil with
the compose command line, the mqtt-auth password writer, mosquitto from
deploy/mosquitto.conf + deploy/acl, the machine's PostgreSQL with a fresh
database, the one-shot deployer, `trustship serve` (API + oracle) and the
simulator's `trustship replay`. Each service must pass its compose healthcheck
before the services that depend on it start.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.integration.compose_topology import (
    REPO,
    Process,
    Topology,
    TopologyError,
    container_ports,
    load_compose,
    new_database_name,
    run,
    spawn,
    start_order,
    wait_healthy,
)
from tests.servers import Server, free_port, start_anvil, start_mosquitto
from tests.store.dbutil import POSTGRES_URL

pytestmark = pytest.mark.integration

ONE_SHOT_TIMEOUT_S = 120
REPLAY_TIMEOUT_S = 480
SERVE_LOG_LINES = 80


@dataclass
class Running:
    """What `docker compose up` started: servers and processes, stopped by PID at the end."""

    topo: Topology
    servers: dict[str, Server] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    #: what each one-shot service printed
    one_shot: dict[str, str] = field(default_factory=dict)

    @property
    def serve(self) -> Process:
        return self.processes["trustship"]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.topo.port('trustship')}"

    def serve_log(self) -> str:
        return f"--- trustship serve (last {SERVE_LOG_LINES} lines) ---\n" + self.serve.log_tail(
            SERVE_LOG_LINES
        )


# ---- one launcher per compose service ------------------------------------------------


def _psql_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://) as a libpq one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _start_anvil(running: Running, cleanup: ExitStack) -> None:
    topo = running.topo
    spec = topo.services["anvil"]
    assert spec["entrypoint"] == ["anvil"], spec["entrypoint"]
    args: list[str] = []
    given = list(spec["command"])
    while given:
        arg = given.pop(0)
        if arg in {"--host", "--port", "--cache-path"}:
            # start_anvil listens on 127.0.0.1:<free port> and keeps the cache in its temp dir
            given.pop(0)
            continue
        args.append(arg)
    server = start_anvil(*args, port=topo.port("anvil"))
    cleanup.callback(server.stop)
    running.servers["anvil"] = server
    wait_healthy(topo, "anvil")


def _run_one_shot(running: Running, name: str) -> None:
    topo = running.topo
    argv = topo.command(name)
    done = run(argv, topo.environment(name), topo.app_dir, ONE_SHOT_TIMEOUT_S)
    running.one_shot[name] = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"{name} ({shlex.join(argv)}) exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )


def _start_mosquitto(running: Running, cleanup: ExitStack) -> None:
    topo = running.topo
    workdir = topo.root / "mosquitto"
    workdir.mkdir()
    server = start_mosquitto(
        topo.mosquitto_config(), port=topo.port("mosquitto"), workdir=workdir, listener=False
    )
    cleanup.callback(server.stop)
    running.servers["mosquitto"] = server
    try:
        wait_healthy(topo, "mosquitto")  # mosquitto_sub as the oracle, $SYS (deploy/acl)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- mosquitto ---\n{server.log_tail()}") from None


def _check_postgres(running: Running, cleanup: ExitStack) -> None:
    # The machine's PostgreSQL stands in (the fresh database was made by the fixture);
    # its healthcheck (pg_isready as user trustship) becomes a connection with the URL
    # the services get.
    url = _psql_url(running.topo.environment("trustship")["DATABASE_URL"])
    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.execute("SELECT 1")


def _run_deployer(running: Running, cleanup: ExitStack) -> None:
    _run_one_shot(running, "deployer")
    manifest = Path(running.topo.environment("deployer")["DEPLOYMENT_FILE"])
    assert manifest.is_file(), f"the deployer exited 0 but wrote no manifest at {manifest}"
    body = json.loads(manifest.read_text())
    assert {"PurchaseOrders", "QualityVerification", "Escrow"} <= set(body["addresses"]), body


def _start_serve(running: Running, cleanup: ExitStack) -> None:
    topo = running.topo
    proc = spawn(
        "trustship",
        topo.command("trustship"),
        topo.environment("trustship"),
        topo.app_dir,
        topo.root / "serve.log",
    )
    cleanup.callback(proc.stop)
    running.processes["trustship"] = proc
    wait_healthy(topo, "trustship", alive=proc)  # compose: curl -fsS /health
    # The compose healthcheck passes as soon as HTTP answers; the readings must not be
    # published before the oracle holds its shared subscription (a new session has no
    # queue yet), so wait for the broker component too.
    deadline = time.monotonic() + 30
    while True:
        health = httpx.get(f"{running.api}/health", timeout=5).json()
        if health["status"] == "ok":
            return
        assert proc.proc.poll() is None, running.serve_log()
        assert time.monotonic() < deadline, f"/health: {health}\n{running.serve_log()}"
        time.sleep(0.2)


#: Every service `docker compose up` starts (no profile) has a stand-in here, run in
#: compose's start order; the simulator (profile "simulator") is what the test runs.
LAUNCHERS: dict[str, Callable[[Running, ExitStack], None]] = {
    "anvil": _start_anvil,
    "mqtt-auth": lambda running, _cleanup: _run_one_shot(running, "mqtt-auth"),
    "mosquitto": _start_mosquitto,
    "postgres": _check_postgres,
    "deployer": _run_deployer,
    "trustship": _start_serve,
}


# ---- the fixture: `docker compose up` ------------------------------------------------


@pytest.fixture(scope="module")
def fresh_database() -> Iterator[str]:
    """``CREATE DATABASE trustship_topo_<random>`` on the local server; dropped afterwards."""
    name = new_database_name()
    admin = _psql_url(POSTGRES_URL)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, fresh_database: str) -> Iterator[Running]:
    compose = load_compose()
    services = compose["services"]
    up = [name for name in start_order(services) if not services[name].get("profiles")]
    missing = set(up) - set(LAUNCHERS)
    if missing:
        raise TopologyError(f"docker-compose.yml has services this test cannot run: {missing}")
    # every published port gets a free one on 127.0.0.1 (postgres is the machine's own)
    ports = {
        (name, cport): free_port()
        for name in up
        if name != "postgres"
        for cport in container_ports(name, services[name])
    }
    topo = Topology(
        compose=compose,
        root=tmp_path_factory.mktemp("compose"),
        ports=ports,
        postgres_url=POSTGRES_URL,
        database=fresh_database,
    )
    topo.prepare()
    running = Running(topo)
    with ExitStack() as cleanup:  # stops everything by PID, in reverse, even on failure
        for name in up:
            LAUNCHERS[name](running, cleanup)
        yield running


# ---- the tests: `docker compose run simulator` ---------------------------------------


def _catalogue() -> list[str]:
    """``scenarios/*.yaml``; TRUSTSHIP_TOPOLOGY_SCENARIOS (a glob) narrows it when debugging."""
    pattern = os.environ.get("TRUSTSHIP_TOPOLOGY_SCENARIOS", "*.yaml")
    return sorted(f"scenarios/{p.name}" for p in (REPO / "scenarios").glob(pattern))


def test_every_compose_service_ran(running: Running) -> None:
    topo = running.topo
    assert "wrote" in running.one_shot["mqtt-auth"], running.one_shot["mqtt-auth"]
    access = json.loads((topo.volumes["mqtt-auth"] / "dynamic-security.json").read_text())
    users = {c["username"]: c for c in access["clients"]}
    assert {"oracle", "healthcheck"} <= set(users) and "oracle-dev-password" not in str(access)
    assert len(users) > 50  # and every device of the catalogue
    health = httpx.get(f"{running.api}/health", timeout=5).json()
    assert {k: v["status"] for k, v in health["components"].items()} == {
        "database": "ok",
        "chain": "ok",
        "broker": "ok",
    }, health


def test_simulator_replays_the_catalogue_through_the_api(running: Running) -> None:
    topo = running.topo
    command = topo.command("simulator")
    assert command[1:3] == ["replay", "scenarios/cold_chain_breach.yaml"], command
    env = topo.environment("simulator")
    # devices log in with their own credentials (dynamic security), not the oracle's
    assert urlsplit(env["MQTT_URL"]).username is None, env["MQTT_URL"]
    assert env["TRUSTSHIP_API_URL"] == running.api
    catalogue = _catalogue()
    argv = [command[0], "replay", *catalogue, "--json", "--speed", "max"]
    started = time.monotonic()
    done = run(argv, env, topo.app_dir, timeout=REPLAY_TIMEOUT_S)
    seconds = time.monotonic() - started
    (topo.root / "replay.json").write_text(done.stdout)  # kept with serve.log for a look later
    summary: dict[str, Any] = {}
    with suppress(json.JSONDecodeError):
        summary = json.loads(done.stdout)
    context = (
        f"{shlex.join(argv)} exited {done.returncode} after {seconds:.0f}s\n"
        f"--- summary ---\n{json.dumps(summary, indent=2) if summary else done.stdout}\n"
        f"--- replay stderr (tail) ---\n{done.stderr[-4000:]}\n{running.serve_log()}"
    )
    assert done.returncode == 0 and summary.get("passed") is True, context
    files = [s["file"] for s in summary["scenarios"]]
    assert files == catalogue, context
    for scenario in summary["scenarios"]:
        assert scenario["passed"] and scenario["orders"], (scenario["name"], context)
        assert all(o["passed"] for o in scenario["orders"]), (scenario["name"], context)


def test_serve_stops_on_sigterm(running: Running) -> None:
    code = running.serve.stop()
    log = running.serve.log_tail(10_000)
    assert code == 0, running.serve_log()
    assert "oracle stopped" in log, running.serve_log()
    assert "Traceback" not in log, running.serve_log()
