"""Risk: the live score of a shipment, its ETA and early warnings (docs/risk.md).

A layer of its own, above the domain and the wire and beside the store and the
chain: it is pure (no I/O), so the oracle's rules and the benchmark
(bench/early_warning.py) run the very same code.
"""

from backend.risk.model import (
    Assessment,
    Eta,
    Reason,
    RiskAlert,
    RiskConfig,
    RiskSnapshot,
    ShipmentRisk,
    combine,
    haversine_km,
    late_penalty_bps,
    reading_interval,
    temperature_line,
)

__all__ = [
    "Assessment",
    "Eta",
    "Reason",
    "RiskAlert",
    "RiskConfig",
    "RiskSnapshot",
    "ShipmentRisk",
    "combine",
    "haversine_km",
    "late_penalty_bps",
    "reading_interval",
    "temperature_line",
]
