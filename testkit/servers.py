"""Real servers for integration tests and benchmarks: started on free ports, stopped by PID.

Each helper returns a :class:`Server` whose ``stop()`` terminates exactly the
process it started (and its temp dir), so a failing test never leaves a node
or broker behind for the next one.

Also the deployed broker's configuration: :func:`start_secured_mosquitto` runs
deploy/mosquitto.conf with a dynamic-security access file, and
:func:`deploy_broker_settings` reads its queue and in-flight limits, for brokers
that should behave like the deployed one.
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

from testkit import REPO

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


def _spawn(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in ``cwd`` with stdout and stderr appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


def _listening(server: Server, scheme: str) -> Server:
    """Wait until ``server`` listens (stop it if it never does); set its ``url``."""
    try:
        wait_for_port(server.port, server.proc)
    except Exception:
        server.stop()
        raise
    server.extra["url"] = f"{scheme}://127.0.0.1:{server.port}"
    return server


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
    return _listening(Server("anvil", port, _spawn(cmd, log, workdir), workdir, log), "http")


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
    proc = _spawn(["mosquitto", "-c", str(conf)], log, workdir)
    return _listening(Server("mosquitto", port, proc, workdir, log), "mqtt")


def restart(server: Server) -> Server:
    """Start the same mosquitto again (same port, config and persistence dir)."""
    conf = server.workdir / "mosquitto.conf"
    server.proc = _spawn(["mosquitto", "-c", str(conf)], server.log, server.workdir)
    wait_for_port(server.port, server.proc)
    return server


# ---- the deployed broker's configuration ---------------------------------------

#: Settings of deploy/mosquitto.conf that decide whether an offline oracle loses messages.
BROKER_LIMITS = (
    "persistence",
    "autosave_interval",
    "persistent_client_expiration",
    "max_queued_messages",
    "max_queued_bytes",
    "max_inflight_messages",
    "max_packet_size",
)


def deploy_broker_settings(keys: tuple[str, ...] = BROKER_LIMITS) -> dict[str, str]:
    """``key → value`` for ``keys`` as deploy/mosquitto.conf sets them."""
    found: dict[str, str] = {}
    for line in (REPO / "deploy" / "mosquitto.conf").read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in keys:
            found[parts[0]] = parts[1].strip()
    missing = [k for k in keys if k not in found]
    if missing:
        raise KeyError(f"deploy/mosquitto.conf does not set {', '.join(missing)}")
    return found


#: Where distributions put mosquitto's dynamic-security plugin (the shipped config
#: names the eclipse-mosquitto image's path; Debian's package uses the multiarch one).
DYNSEC_PLUGIN_PATHS = (
    Path("/usr/lib/mosquitto_dynamic_security.so"),
    Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"),
)
ACCESS_FILE = "dynamic-security.json"


def dynsec_plugin() -> Path:
    for path in DYNSEC_PLUGIN_PATHS:
        if path.exists():
            return path
    raise FileNotFoundError(
        "mosquitto's dynamic-security plugin is not installed (apt-get install mosquitto)"
    )


def deploy_config(workdir: Path) -> str:
    """deploy/mosquitto.conf with its paths moved into ``workdir``.

    The listener and log lines are dropped: :func:`start_mosquitto` adds its own (a
    free port on loopback, stderr). Run as root, mosquitto would drop to the
    ``mosquitto`` user, which cannot read a private temp dir: ``user root``. The
    access file is ``workdir/dynamic-security.json``.
    """
    lines = ["user root"] if os.geteuid() == 0 else []
    for line in (REPO / "deploy" / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in {"listener", "log_dest"}:
            continue
        if key == "plugin":
            line = f"plugin {dynsec_plugin()}"
        elif key == "plugin_opt_config_file":
            line = f"plugin_opt_config_file {workdir / ACCESS_FILE}"
        elif key == "persistence_location":
            (workdir / "data").mkdir(parents=True, exist_ok=True)
            line = f"persistence_location {workdir / 'data'}/"
        lines.append(line)
    return "\n".join(lines).replace("{", "{{").replace("}", "}}")


def start_secured_mosquitto(
    devices: dict[str, str],
    *,
    oracles: dict[str, str],
    monitors: dict[str, str] | None = None,
    admins: dict[str, str] | None = None,
    share_group: str | None = None,
    extra: str = "",
) -> Server:
    """A mosquitto from deploy/mosquitto.conf whose access file (dynamic security)
    admits ``devices`` ({address: password}), ``oracles``, ``monitors`` and ``admins``."""
    from backend.telemetry.access import DEFAULT_SHARE_GROUP
    from iot_simulator.credentials import broker_access

    workdir = Path(tempfile.mkdtemp(prefix="trustship-mosquitto-"))
    access = broker_access(
        oracles=oracles,
        devices=devices,
        monitors=monitors,
        admins=admins,
        share_group=DEFAULT_SHARE_GROUP if share_group is None else share_group,
    )
    access.write(workdir / ACCESS_FILE)
    return start_mosquitto(deploy_config(workdir) + "\n" + extra, workdir=workdir)
