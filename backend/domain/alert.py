"""The alert: an early warning or a notable event on an order, declared once.

The oracle's rules raise them (``backend.oracle.rules.AlertIntent`` adds the key that
deduplicates them), the store keeps them (``AlertRow``) and the API shows them
(``AlertPublic`` adds the row id and the time it was stored); docs/oracle.md,
"Alerts", lists the kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert on an order (``device`` None: about the order as a whole)."""

    order_id: int
    device: str | None
    kind: str
    severity: str
    message: str
    #: Unix seconds of the reading or event it is about.
    at: int
    data: dict[str, Any]


#: The alert's fields (= the ``alerts`` table's columns of the same names), in order.
ALERT_ATTRS: tuple[str, ...] = tuple(f.name for f in fields(Alert))
