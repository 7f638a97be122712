"""The indexer's metrics (prometheus-client): the block reached, events, rewinds.

On the registry the builder shares with the oracle's and the API's metrics, so one
``/metrics`` shows them all. Names and meanings: docs/oracle.md, "Metrics".
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from backend.core.metrics import Registry


class IndexerMetrics:
    """The indexer's gauges and counters, registered on ``registry`` (a new one if None)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        r = self.registry
        self.indexer_block = Gauge(
            "trustship_indexer_block", "Last block the chain indexer stored.", registry=r
        )
        self.indexer_events = Counter(
            "trustship_indexer_events_total",
            "Contract events indexed, by event.",
            ["event"],
            registry=r,
        )
        self.indexer_rewinds = Counter(
            "trustship_indexer_rewinds_total",
            "Times the indexer rewound past replaced blocks (a reorganisation or reset).",
            registry=r,
        )

    def get(self, sample: str, **labels: str) -> float:
        """One sample's value by its exposed name (``trustship_indexer_block``)."""
        return self.registry.value(sample, **labels)
