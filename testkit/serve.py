"""``trustship serve`` as a child process, and waiting until it reports healthy."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx


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
