"""Real servers for integration tests: started on free ports, stopped by PID.

Each helper returns a :class:`Server` whose ``stop()`` terminates exactly the
process it started (and its temp dir), so a failing test never leaves a node
or broker behind for the next one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANVIL_BIN = (
    REPO / "contracts" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server (SIGKILL by default) and wait for it to exit."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def anvil_binary() -> Path:
    env = os.environ.get("ANVIL_BINARY")
    if env:
        return Path(env)
    if ANVIL_BIN.exists():
        return ANVIL_BIN
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise FileNotFoundError(
        "anvil not found: run `cd contracts && npm ci` (installs @foundry-rs/anvil)"
    )


def start_anvil(*args: str, port: int | None = None) -> Server:
    """Start anvil with its state cache in a temp dir (MEASURED.md: it leaks GBs otherwise)."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="trustship-anvil-"))
    log = workdir / "anvil.log"
    cmd = [
        str(anvil_binary()),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--cache-path",
        str(workdir / "cache"),
        "--silent",
        *args,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server("anvil", port, proc, workdir, log)
    try:
        wait_for_port(port, proc)
    except Exception:
        server.stop()
        raise
    server.extra["url"] = f"http://127.0.0.1:{port}"
    return server


def start_mosquitto(
    config: str = "",
    port: int | None = None,
    workdir: Path | None = None,
    *,
    listener: bool = True,
) -> Server:
    """Start mosquitto with ``config`` appended to a listener on a free port.

    ``config`` may refer to ``{workdir}``, a temp dir owned by this server (for
    password files, ACLs and persistence). Logs go to stderr (MEASURED.md: a log
    file in a temp dir may fail to open as root). With ``listener=False`` the
    config is the whole file: it brings its own ``listener`` on ``port`` (pass
    the port) and its own log settings.
    """
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="trustship-mosquitto-"))
    conf = workdir / "mosquitto.conf"
    head = f"listener {port} 127.0.0.1\nlog_dest stderr\n" if listener else ""
    conf.write_text(head + config.format(workdir=workdir) + "\n")
    log = workdir / "mosquitto.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, cwd=workdir
        )
    server = Server("mosquitto", port, proc, workdir, log)
    try:
        wait_for_port(port, proc)
    except Exception:
        server.stop()
        raise
    server.extra["url"] = f"mqtt://127.0.0.1:{port}"
    return server


def restart(server: Server) -> Server:
    """Start the same mosquitto again (same port, config and persistence dir)."""
    conf = server.workdir / "mosquitto.conf"
    with server.log.open("ab") as out:
        proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, cwd=server.workdir
        )
    server.proc = proc
    wait_for_port(server.port, proc)
    return server
