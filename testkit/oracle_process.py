"""The oracle as a separate process (``python -m backend.oracle``), for crash tests and
benchmarks: started with an environment, killed or stopped by PID, restarted with
the same environment (same ``ORACLE_CLIENT_ID``, so the broker keeps its session).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from testkit import REPO


class OracleProcess:
    """``python -m backend.oracle`` with a fixed environment; its output goes to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        #: time.monotonic() of the latest start
        self.started_at = 0.0
        #: Where in the log the current run's output begins.
        self._offset = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"the oracle is already running (pid {self.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            out.write(f"----- start {self.starts + 1} -----\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "backend.oracle"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self.started_at = time.monotonic()

    def output(self) -> str:
        """This run's log so far."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Wait until this run logs ``text``; raise with the log tail if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive:
                raise RuntimeError(f"the oracle exited before logging {text!r}:\n{self.tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"the oracle did not log {text!r} in {timeout:.0f} s:\n{self.tail()}")

    def wait_subscribed(self, timeout: float = 60.0) -> None:
        """Wait until the MQTT subscription is acknowledged (the session exists on the broker)."""
        self.wait_for("subscribed to ", timeout)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
        """Signal the process by PID and wait for it; returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.alive:
            self.kill(signal.SIGTERM, timeout=20.0)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])
