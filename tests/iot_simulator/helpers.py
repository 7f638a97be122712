"""Shared bits for the simulator tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from backend.telemetry import Domain

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
T0 = 1_700_000_000


def minimal_scenario(**order_overrides: Any) -> dict[str, Any]:
    """A small valid scenario as parsed YAML; ``order_overrides`` patch its one order."""
    order: dict[str, Any] = {
        "name": "box",
        "devices": 2,
        "route": ["rotterdam", "duisburg"],
        "arrive_after_s": 10800,
        "terms": {
            "price": 1_000_000,
            "token": "TUSD",
            "deadline_s": 14400,
            "geofence_e6": 20000,
            "min_temp_centi_c": 200,
            "max_temp_centi_c": 800,
            "max_humidity_permille": 950,
            "max_shock_milli_g": 6000,
            "tolerated_excursion_s": 1800,
            "late_penalty_bps_per_hour": 100,
            "late_penalty_cap_bps": 1000,
            "breach_refund_bps": 2000,
        },
        "sensors": {"set_point_centi_c": 500, "noise_centi_c": 20},
        "expected": {"buyer": 0, "supplier": 1_000_000, "breach": False, "late_s": 0},
    }
    order.update(copy.deepcopy(order_overrides))
    return {
        "seed": 42,
        "speed": 3600,
        "interval_s": 600,
        "parties": {"buyer": "B", "supplier": "S", "arbiter": "A"},
        "orders": [order],
    }


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

    The listener and log lines are dropped: tests.servers.start_mosquitto adds
    its own (a free port on loopback, stderr). Run as root, mosquitto would drop
    to the ``mosquitto`` user, which cannot read a private temp dir: ``user root``.
    The access file is ``workdir/dynamic-security.json``.
    """
    import os

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
) -> Any:
    """A mosquitto from deploy/mosquitto.conf whose access file (dynamic security)
    admits ``devices`` ({address: password}), ``oracles``, ``monitors`` and ``admins``."""
    import tempfile

    from iot_simulator.credentials import broker_access
    from tests.servers import start_mosquitto

    workdir = Path(tempfile.mkdtemp(prefix="trustship-mosquitto-"))
    kwargs = {} if share_group is None else {"share_group": share_group}
    access = broker_access(
        oracles=oracles, devices=devices, monitors=monitors, admins=admins, **kwargs
    )
    access.write(workdir / ACCESS_FILE)
    return start_mosquitto(deploy_config(workdir) + "\n" + extra, workdir=workdir)
