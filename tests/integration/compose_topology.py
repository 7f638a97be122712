"""docker-compose.yml's services as plain processes on this machine.

Nothing here repeats a setting of the compose file: the environment, the
commands, the healthchecks and the mosquitto config are read from
docker-compose.yml, deploy/Dockerfile and deploy/mosquitto.conf and only
*relocated*:

* a service hostname with its container port (``anvil:8545``) becomes
  ``127.0.0.1`` and a free port; ``postgres:5432`` becomes the machine's
  PostgreSQL (:data:`tests.store.dbutil.POSTGRES_URL`) with a fresh database;
* a container path under one of the service's volumes becomes the same path
  under a temp dir standing in for that volume (``data:/data`` →
  ``<root>/volumes/data``; a bind mount ``./deploy/acl:/mosquitto/config/acl``
  → the repository file itself);
* the image's ``WORKDIR`` (``/app``, where ``scenarios/`` lives) is a temp dir
  with a ``scenarios`` link to the repository's catalogue, its ``ENTRYPOINT``
  (``trustship``) the .venv's console script and ``python`` the .venv's.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

from tests.iot_simulator.helpers import dynsec_plugin

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
MOSQUITTO_CONF = REPO / "deploy" / "mosquitto.conf"
VENV_BIN = Path(sys.executable).parent

#: Ports the images listen on without saying so in the compose file.
IMAGE_DEFAULT_PORTS = {"postgres": 5432}


class TopologyError(AssertionError):
    """Raised when the compose file has something this runner does not know how to map."""


# ---- reading the compose file ---------------------------------------------------------

_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose variable substitution: ``${X:-default}``, ``${X-default}``, ``${X}``, ``$X``,
    and ``$$`` for a literal ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        expr = m.group("braced") if m.group("braced") is not None else m.group("plain")
        for sep in (":-", "-"):
            if sep in expr:
                name, default = expr.split(sep, 1)
                got = env.get(name)
                if got is None or (sep == ":-" and got == ""):
                    return default
                return got
        if expr not in env:
            raise TopologyError(f"compose variable ${{{expr}}} has no value and no default")
        return env[expr]

    return _VAR.sub(sub, value)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with YAML anchors/merges resolved and variables substituted."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return _interpolate_tree(raw, os.environ if env is None else env)  # type: ignore[no-any-return]


def start_order(services: Mapping[str, Any]) -> list[str]:
    """Services in an order that respects every ``depends_on`` (compose's own start order)."""
    done: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise TopologyError(f"depends_on cycle through {name}")
        visiting.add(name)
        for dep in services[name].get("depends_on") or {}:
            visit(dep)
        visiting.discard(name)
        done.append(name)

    for name in services:
        visit(name)
    return done


def dockerfile_env() -> dict[str, str]:
    """The image's ``ENV`` lines (``ENV A=1 \\ B=2``)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def dockerfile_entrypoint() -> list[str]:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            return list(yaml.safe_load(line.split(" ", 1)[1]))
    raise TopologyError("deploy/Dockerfile has no ENTRYPOINT")


def container_ports(service: str, spec: Mapping[str, Any]) -> list[int]:
    """The ports a service listens on inside its container."""
    ports = [int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in spec.get("ports", [])]
    if not ports and service in IMAGE_DEFAULT_PORTS:
        ports = [IMAGE_DEFAULT_PORTS[service]]
    return ports


# ---- where things live when the services are processes --------------------------------


@dataclass
class Topology:
    """The compose file relocated to this machine: ports, volumes, the database."""

    compose: dict[str, Any]
    root: Path
    #: (service, container port) → host port on 127.0.0.1
    ports: dict[tuple[str, int], int]
    #: the local PostgreSQL (user, password, host, port) and the fresh database's name
    postgres_url: str
    database: str
    volumes: dict[str, Path] = field(default_factory=dict)

    @property
    def services(self) -> dict[str, Any]:
        return self.compose["services"]  # type: ignore[no-any-return]

    @property
    def app_dir(self) -> Path:
        """The image's WORKDIR: where relative paths of trustship commands resolve."""
        return self.root / "app"

    def port(self, service: str) -> int:
        (port,) = (p for (s, _), p in self.ports.items() if s == service)
        return port

    def prepare(self) -> None:
        for name in self.compose.get("volumes") or {}:
            path = self.root / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            self.volumes[name] = path
        self.app_dir.mkdir(parents=True, exist_ok=True)
        # the Dockerfile COPYs scenarios/ into WORKDIR
        (self.app_dir / "scenarios").symlink_to(REPO / "scenarios")

    # -- values ---------------------------------------------------------------------

    def host_path(self, service: str, container_path: str) -> str:
        """A container path of ``service`` as the path of its volume's stand-in here.

        A path on no volume is in the container's own filesystem: a private dir per service.
        """
        best: tuple[int, Path] | None = None
        for volume in self.services[service].get("volumes", []):
            source, target = volume.split(":")[:2]
            under = container_path == target or container_path.startswith(target.rstrip("/") + "/")
            if under and (best is None or len(target) > best[0]):
                base = REPO / source if source.startswith(".") else self.volumes[source]
                rest = container_path[len(target) :].lstrip("/")
                best = (len(target), base / rest if rest else base)
        if best is None:
            # not on a volume: the container's own filesystem, private to this service
            best = (0, self.root / "containers" / service / container_path.lstrip("/"))
        text = str(best[1])
        return text + "/" if container_path.endswith("/") else text

    def url(self, value: str) -> str:
        """A URL naming a compose service, pointed at where that service runs here."""
        parts = urlsplit(value)
        host = parts.hostname
        if host not in self.services:
            return value
        port = parts.port or container_ports(host, self.services[host])[0]
        if host == "postgres":
            # The compose postgres creates user/password/db trustship/trustship/trustship
            # (POSTGRES_USER etc.); the machine's server has none of them. Its own user
            # (postgres, trust auth) and a fresh database made for this run stand in.
            local = urlsplit(self.postgres_url)
            return urlunsplit(
                (parts.scheme, local.netloc, "/" + self.database, parts.query, parts.fragment)
            )
        if (host, port) not in self.ports:
            raise TopologyError(f"{value}: no process stands in for {host}:{port}")
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@" if auth else ""
        netloc += f"127.0.0.1:{self.ports[(host, port)]}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def environment(self, service: str) -> dict[str, str]:
        """The service's process environment: base + image ENV + compose environment, mapped."""
        base = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TMPDIR") if k in os.environ}
        # the image's python and console scripts come first on PATH
        base["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**base, **dockerfile_env()}
        declared = self.services[service].get("environment") or {}
        if isinstance(declared, list):
            declared = dict(item.split("=", 1) for item in declared)
        env.update({k: str(v) for k, v in declared.items()})
        for key, value in list(env.items()):
            if key in base:
                continue
            if "://" in value:
                env[key] = self.url(value)
            elif value.startswith("/"):
                env[key] = self.host_path(service, value)
        # the API listens where the service's published port points
        if "API_PORT" in declared:
            (api_port,) = container_ports("trustship", self.services["trustship"])
            if int(declared["API_PORT"]) != api_port:
                raise TopologyError(
                    f"API_PORT {declared['API_PORT']} is not published ({api_port})"
                )
            env["API_HOST"] = "127.0.0.1"
            env["API_PORT"] = str(self.port("trustship"))
        return env

    def argv(self, service: str, args: Sequence[str]) -> list[str]:
        """Command-line args with container paths mapped and executables made local."""
        out: list[str] = []
        for arg in args:
            if arg == "python":
                out.append(sys.executable)
            elif arg == "trustship":
                out.append(str(VENV_BIN / "trustship"))
            elif arg.startswith("/"):
                out.append(self.host_path(service, arg))
            elif "://" in arg:
                out.append(self.url(arg))
            else:
                out.append(arg)
        return out

    def command(self, service: str) -> list[str]:
        """ENTRYPOINT + command of a service built from deploy/Dockerfile, mapped."""
        spec = self.services[service]
        entrypoint = spec.get("entrypoint") or dockerfile_entrypoint()
        return self.argv(service, [*entrypoint, *spec.get("command", [])])

    def mosquitto_config(self) -> str:
        """deploy/mosquitto.conf with its listener and the service's volume paths moved here.

        mosquitto started as root drops to the ``mosquitto`` user, which cannot read
        these private temp dirs (in the image the volumes belong to it): ``user root``.
        """
        (port,) = container_ports("mosquitto", self.services["mosquitto"])
        lines = ["user root"] if os.geteuid() == 0 else []
        listeners = 0
        for line in MOSQUITTO_CONF.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "listener":
                if value.split()[0] != str(port):
                    raise TopologyError(f"mosquitto.conf listens on {value}, compose on {port}")
                line = f"listener {self.ports[('mosquitto', port)]} 127.0.0.1"
                listeners += 1
            elif key in {"plugin_opt_config_file", "persistence_location"}:
                line = f"{key} {self.host_path('mosquitto', value.strip())}"
            elif key == "plugin":  # the image's path of the plugin, or this machine's
                line = f"plugin {dynsec_plugin()}"
            lines.append(line)
        if listeners != 1:
            raise TopologyError(f"mosquitto.conf has {listeners} active listeners, expected 1")
        return "\n".join(lines).replace("{", "{{").replace("}", "}}")

    def healthcheck_argv(self, service: str) -> list[str]:
        """The service's healthcheck command with 127.0.0.1:<container port> made local."""
        test = self.services[service]["healthcheck"]["test"]
        if test[0] != "CMD":
            raise TopologyError(f"{service}: healthcheck {test[0]} is not supported here")
        ports = {
            p: self.ports[(service, p)]
            for p in container_ports(service, self.services[service])
            if (service, p) in self.ports
        }
        out: list[str] = []
        prev = ""
        for arg in test[1:]:
            for cport, hport in ports.items():
                arg = arg.replace(f"127.0.0.1:{cport}", f"127.0.0.1:{hport}")
                if prev == "-p" and arg == str(cport):
                    arg = str(hport)
            out.append(arg)
            prev = arg
        return out


def new_database_name() -> str:
    return "trustship_topo_" + uuid.uuid4().hex[:10]


# ---- processes ------------------------------------------------------------------------


@dataclass
class Process:
    """A service started with Popen: its log, stopped by PID."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process (by PID) and wait; SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> Process:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    return Process(name, proc, log)


def run(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def healthcheck_deadline(spec: Mapping[str, Any]) -> float:
    """How long compose would wait: retries × interval (plus one timeout)."""
    hc = spec["healthcheck"]

    def secs(text: str) -> float:
        return float(str(text).rstrip("s"))

    return secs(hc.get("interval", "30s")) * int(hc.get("retries", 3)) + secs(
        hc.get("timeout", "30s")
    )


def wait_healthy(
    topo: Topology, service: str, *, alive: Process | None = None, poll: float = 0.25
) -> str:
    """Run the service's healthcheck until it passes (compose's retries × interval).

    A command that is not installed here is replaced by its equivalent:
    ``cast block-number --rpc-url URL`` by JSON-RPC ``eth_blockNumber`` and
    ``curl -fsS URL`` by an HTTP GET that must answer 2xx.
    """
    argv = topo.healthcheck_argv(service)
    deadline = time.monotonic() + healthcheck_deadline(topo.services[service])
    last = ""
    while True:
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(
                f"{service} exited with {alive.proc.returncode} before it was healthy:\n"
                + alive.log_tail()
            )
        ok, last = _check_once(argv)
        if ok:
            return last
        if time.monotonic() > deadline:
            tail = f"\n{alive.log_tail()}" if alive is not None else ""
            raise AssertionError(f"{service} is not healthy ({shlex.join(argv)}): {last}{tail}")
        time.sleep(poll)


def _check_once(argv: list[str]) -> tuple[bool, str]:
    exe = argv[0]
    if shutil.which(exe):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return False, "timed out"
        return done.returncode == 0, (done.stdout + done.stderr).strip()
    try:
        if exe == "cast" and argv[1] == "block-number":
            url = argv[argv.index("--rpc-url") + 1]
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
            answer = httpx.post(url, json=body, timeout=2).json()
            return "result" in answer, str(int(answer["result"], 16))
        if exe == "curl":
            url = next(a for a in argv[1:] if "://" in a)
            response = httpx.get(url, timeout=2)
            return response.is_success, response.text
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    raise TopologyError(f"healthcheck command {exe} is not installed and has no stand-in")
