"""Prometheus-style counters and gauges for the oracle, kept in memory.

The API's ``/metrics`` renders :data:`metrics` (``metrics.render()``) in the
Prometheus text format. Counters live in the process and restart from zero with
it, as Prometheus counters do; nothing about refused messages is written to the
database (a flood of garbage must not grow the database). See docs/oracle.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

_HELP: dict[str, tuple[str, str]] = {
    "trustship_ingest_received_total": ("counter", "MQTT telemetry messages received."),
    "trustship_ingest_accepted_total": ("counter", "Readings verified and stored."),
    "trustship_ingest_duplicates_total": (
        "counter",
        "Readings dropped because the same (device, seq) reading is already stored.",
    ),
    "trustship_ingest_rejected_total": ("counter", "Messages refused, by reason."),
    "trustship_ingest_statuses_total": ("counter", "Device status messages recorded."),
    "trustship_ingest_missing_readings": (
        "gauge",
        "Readings of live orders that never arrived while later ones did (seq gaps).",
    ),
    "trustship_ingest_seq_gaps_total": ("counter", "Seq gaps reported as alerts."),
    "trustship_ingest_batches_total": ("counter", "Batches committed to the database."),
    "trustship_ingest_batch_failures_total": (
        "counter",
        "Batches the database refused (not acknowledged; retried or redelivered).",
    ),
    "trustship_ingest_store_seconds_total": ("counter", "Time spent storing batches."),
    "trustship_ingest_queue_depth": ("gauge", "Messages received and not yet processed."),
    "trustship_rules_alerts_total": ("counter", "Alerts raised, by kind."),
    "trustship_rules_actions_total": ("counter", "Chain actions queued in the outbox, by kind."),
    "trustship_outbox_results_total": ("counter", "Outbox executions, by kind and result."),
    "trustship_commitments_total": ("counter", "Merkle batches created."),
    "trustship_indexer_block": ("gauge", "Last block the chain indexer stored."),
    "trustship_indexer_events_total": ("counter", "Contract events indexed, by event."),
}

LabelKey = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters and gauges with optional labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[LabelKey, float]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values.setdefault(name, {})[key] = value

    def get(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            return self._values.get(name, {}).get(key, 0.0)

    def total(self, name: str) -> float:
        """The sum over all label values of a metric."""
        with self._lock:
            return sum(self._values.get(name, {}).values())

    def by_label(self, name: str, label: str) -> dict[str, float]:
        with self._lock:
            out: dict[str, float] = {}
            for key, value in self._values.get(name, {}).items():
                lv = dict(key).get(label, "")
                out[lv] = out.get(lv, 0.0) + value
            return out

    def reset(self) -> None:
        with self._lock:
            self._values.clear()

    def render(self, names: Iterable[str] | None = None) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            snapshot = {k: dict(v) for k, v in self._values.items()}
        lines: list[str] = []
        for name in sorted(names if names is not None else set(snapshot) | set(_HELP)):
            kind, help_text = _HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            series = snapshot.get(name) or ({(): 0.0} if name in _UNLABELLED else {})
            for key, value in sorted(series.items()):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                shown = repr(value) if value != int(value) else str(int(value))
                lines.append(f"{name}{{{label_text}}} {shown}" if label_text else f"{name} {shown}")
        return "\n".join(lines) + "\n"


#: Metrics without labels are always rendered (as 0 before the first event).
_UNLABELLED = {
    "trustship_ingest_received_total",
    "trustship_ingest_accepted_total",
    "trustship_ingest_duplicates_total",
    "trustship_ingest_statuses_total",
    "trustship_ingest_missing_readings",
    "trustship_ingest_seq_gaps_total",
    "trustship_ingest_batches_total",
    "trustship_ingest_batch_failures_total",
    "trustship_ingest_store_seconds_total",
    "trustship_commitments_total",
    "trustship_ingest_queue_depth",
    "trustship_indexer_block",
}

#: The process-wide registry the oracle writes and the API's /metrics renders.
metrics = Metrics()
