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


def deploy_config(workdir: Path) -> str:
    """deploy/mosquitto.conf with its paths moved into ``workdir``.

    The listener and log lines are dropped: tests.servers.start_mosquitto adds
    its own (a free port on loopback, stderr). Run as root, mosquitto would drop
    to the ``mosquitto`` user, which cannot read a private temp dir: ``user root``.
    """
    import os

    lines = ["user root"] if os.geteuid() == 0 else []
    for line in (REPO / "deploy" / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in {"listener", "log_dest"}:
            continue
        if key == "password_file":
            line = f"password_file {workdir / 'passwords'}"
        elif key == "acl_file":
            line = f"acl_file {workdir / 'acl'}"
        elif key == "persistence_location":
            (workdir / "data").mkdir(parents=True, exist_ok=True)
            line = f"persistence_location {workdir / 'data'}/"
        lines.append(line)
    return "\n".join(lines).replace("{", "{{").replace("}", "}}")


def start_secured_mosquitto(users: dict[str, str], extra: str = "") -> Any:
    """A mosquitto from deploy/mosquitto.conf + deploy/acl with ``users`` in its password file."""
    import shutil
    import tempfile

    from iot_simulator.credentials import write_password_file
    from tests.servers import start_mosquitto

    workdir = Path(tempfile.mkdtemp(prefix="trustship-mosquitto-"))
    write_password_file(workdir / "passwords", users)
    shutil.copy(REPO / "deploy" / "acl", workdir / "acl")
    return start_mosquitto(deploy_config(workdir) + "\n" + extra, workdir=workdir)
