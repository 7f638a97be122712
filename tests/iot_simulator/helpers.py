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
