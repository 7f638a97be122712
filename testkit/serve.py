"""``trustship serve`` as a child process, and waiting until it reports healthy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backend.chain.testing import issuer
from testkit.databases import postgres_schema, schema_url
from testkit.servers import Server, free_port, start_anvil, start_mosquitto


def serve_env(
    *,
    rpc_url: str,
    mqtt_url: str,
    database_url: str,
    workdir: Path,
    port: int,
    client_prefix: str,
    drop: frozenset[str] = frozenset({"API_KEYS"}),
) -> dict[str, str]:
    """The environment of a dev-mode ``trustship serve`` on 127.0.0.1:``port``: this
    process's without ``drop``, and the stack's addresses; it deploys the contracts
    into ``workdir/deployment.json`` and subscribes as a fresh ``client_prefix…``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        RPC_URL=rpc_url,
        MQTT_URL=mqtt_url,
        DATABASE_URL=database_url,
        DEPLOYMENT_FILE=str(workdir / "deployment.json"),
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        DEV_MODE="true",
        ORACLE_CLIENT_ID=client_prefix + uuid.uuid4().hex[:6],
    )
    return env


def order_terms(now: int, arbiter: str, **overrides: Any) -> dict[str, Any]:
    """``POST /orders`` terms: 1 ETH, due in a day at Rotterdam (±0.05°), 2–8 °C, devices
    certified by the test issuer 1; the API's defaults for the rest, any field overridden
    by name."""
    body: dict[str, Any] = {
        "price": str(10**18),
        "delivery_deadline": now + 86_400,
        "dest_lat_e6": 51_950_000,
        "dest_lon_e6": 4_050_000,
        "geofence_e6": 50_000,
        "min_temp_centi_c": 200,
        "max_temp_centi_c": 800,
        "arbiter": arbiter,
        "device_issuer": issuer(1),
    }
    body.update(overrides)
    return body


def start_serve(env: Mapping[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m trustship.cli serve`` with exactly ``env``; its output goes to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "trustship.cli", "serve"],
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def broker_ok(health: dict[str, Any]) -> bool:
    """Whether a ``/health`` answer says the broker is connected."""
    return bool(health["components"].get("broker", {}).get("status") == "ok")


def wait_healthy(
    base: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    ready: Callable[[dict[str, Any]], bool] = broker_ok,
    timeout: float = 90.0,
) -> None:
    """Poll ``base``/health until ``ready`` holds for its answer; raise AssertionError with
    the log's tail if the process exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(log.read_text()[-3000:])
        try:
            if ready(httpx.get(f"{base}/health", timeout=2).json()):
                return
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(log.read_text()[-3000:])
        time.sleep(0.3)


@dataclass(frozen=True)
class ServedStack:
    """A ``trustship serve`` child on its own anvil and mosquitto, healthy."""

    base: str
    anvil: Server
    broker: Server
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def served_stack(
    workdir: Path,
    name: str,
    *,
    anvil_args: tuple[str, ...] = (),
    broker_conf: str = "allow_anonymous true",
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[ServedStack]:
    """A fresh anvil (``anvil_args``), mosquitto (``broker_conf``) and PostgreSQL schema
    (``trustship_<name>_…``), and ``trustship serve`` on them (:func:`serve_env`, then
    ``extra_env``; subscribed as ``<name>-test-…``), its log in ``workdir/serve.log``;
    yielded once ``/health`` says the broker is connected. On exit the process is killed
    if it still runs, the servers are stopped and the schema is dropped."""
    with (
        postgres_schema(f"trustship_{name}_") as schema,
        _served(workdir, schema_url(schema), name, anvil_args, broker_conf, extra_env) as stack,
    ):
        yield stack


@contextmanager
def _served(
    workdir: Path,
    database_url: str,
    name: str,
    anvil_args: tuple[str, ...],
    broker_conf: str,
    extra_env: Mapping[str, str] | None,
) -> Iterator[ServedStack]:
    anvil = start_anvil(*anvil_args)
    broker = start_mosquitto(broker_conf)
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        log = workdir / "serve.log"
        env = serve_env(
            rpc_url=anvil.extra["url"],
            mqtt_url=broker.extra["url"],
            database_url=database_url,
            workdir=workdir,
            port=port,
            client_prefix=f"{name}-test-",
        )
        env.update(extra_env or {})
        proc = start_serve(env, workdir, log)
        stack = ServedStack(f"http://127.0.0.1:{port}", anvil, broker, env, proc, log)
        wait_healthy(stack.base, proc, log)
        yield stack
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        broker.stop()
        anvil.stop()
