"""The alert: an early warning or a notable event on an order, declared once, with
its kinds, severities and the risk model's reason codes.

The oracle's rules (``backend.oracle.rules.AlertIntent`` adds the key that deduplicates
them) and the risk model (``backend/risk``) raise alerts only with these kinds; the
store keeps them (``AlertRow``, the kind as a string), the API documents and filters by
the kind and shows them (``AlertPublic`` adds the row id and the time it was stored),
the early-warning benchmark counts by it. A risk snapshot's ``reasons[]`` carry one of
:data:`REASON_KINDS` each. docs/oracle.md ("Alerts") and docs/risk.md describe them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from backend.domain.sensitivity import HIGH, LOW, MEDIUM, Coarsening, classed


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertKind(StrEnum):
    """What an alert is about. Risk alerts (``risk_*``) carry ``lead_secs``: the time
    left before the limit or deadline they warn of."""

    # events the rules see in one reading or run of readings
    DOOR_OPEN = "door_open"
    TAMPER = "tamper"
    SENSOR_FAULT = "sensor_fault"
    SHOCK = "shock"
    EXCURSION_STARTED = "excursion_started"
    BREACH_DETECTED = "breach_detected"
    BREACH_UNPROVABLE = "breach_unprovable"
    TREND = "trend"
    SILENCE = "silence"
    #: readings that never arrived while later ones did (backend/oracle/gaps.py)
    SEQ_GAP = "seq_gap"
    # forecasts of the risk model (backend/risk)
    RISK_BREACH = "risk_breach"
    RISK_LATE = "risk_late"
    RISK_LEVEL = "risk_level"


ALERT_KINDS: tuple[str, ...] = tuple(k.value for k in AlertKind)
#: The kinds raised by the risk model (each with ``lead_secs`` in its data).
RISK_ALERT_KINDS: tuple[str, ...] = (
    AlertKind.RISK_BREACH.value,
    AlertKind.RISK_LATE.value,
    AlertKind.RISK_LEVEL.value,
)


class ReasonKind(StrEnum):
    """One contribution to a shipment's risk score."""

    #: temperature heading for a limit: time to the limit and to a provable breach
    TEMPERATURE_TREND = "temperature_trend"
    #: seconds out of range in the current run against ``toleratedExcursionSecs``
    EXCURSION_BUDGET = "excursion_budget"
    #: time since the last reading against the device's interval (or its Last Will)
    SILENCE = "silence"
    #: shock peaks against ``maxShockMilliG``
    SHOCK_HISTORY = "shock_history"
    #: door openings in the recent readings
    DOOR = "door"
    #: tamper switch or sensor fault
    TAMPER = "tamper"
    #: battery from the device's status message
    BATTERY = "battery"
    #: the ETA against the delivery deadline (and the late penalty it implies)
    LATENESS = "lateness"
    #: a breach is already provable (the score is 100)
    BREACHED = "breached"


REASON_KINDS: tuple[str, ...] = tuple(k.value for k in ReasonKind)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert on an order (``device`` None: about the order as a whole)."""

    order_id: int = field(metadata=classed(LOW))
    device: str | None = field(metadata=classed(HIGH, Coarsening.PSEUDONYM))
    kind: str = field(metadata=classed(MEDIUM))
    severity: str = field(metadata=classed(MEDIUM))
    message: str = field(metadata=classed(MEDIUM))
    #: Unix seconds of the reading or event it is about.
    at: int = field(metadata=classed(MEDIUM))
    data: dict[str, Any] = field(metadata=classed(MEDIUM))


#: The alert's fields (= the ``alerts`` table's columns of the same names), in order.
ALERT_ATTRS: tuple[str, ...] = tuple(f.name for f in fields(Alert))
