"""The oracle's metrics: ingest, rules, outbox, commitments (prometheus-client).

They live in the process and restart from zero with it, as Prometheus counters do;
nothing about refused messages is written to the database (a flood of garbage must
not grow the database). ``trustship serve`` registers them on the API's registry, so
its ``/metrics`` shows both. Names and meanings: docs/oracle.md, "Metrics".
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from backend.core.metrics import Registry


class Metrics:
    """The oracle's counters and gauges, registered on ``registry`` (a new one if None).

    Components write through the attributes (``metrics.ingest_accepted.inc(n)``);
    tests and benchmarks read by exposed sample name (:meth:`get`)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        r = self.registry
        self.ingest_received = Counter(
            "trustship_ingest_received_total", "MQTT telemetry messages received.", registry=r
        )
        self.ingest_accepted = Counter(
            "trustship_ingest_accepted_total", "Readings verified and stored.", registry=r
        )
        self.ingest_duplicates = Counter(
            "trustship_ingest_duplicates_total",
            "Readings dropped because the same (device, seq) reading is already stored.",
            registry=r,
        )
        self.ingest_rejected = Counter(
            "trustship_ingest_rejected_total",
            "Messages refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.ingest_statuses = Counter(
            "trustship_ingest_statuses_total", "Device status messages recorded.", registry=r
        )
        self.ingest_missing_readings = Gauge(
            "trustship_ingest_missing_readings",
            "Readings of live orders that never arrived while later ones did (seq gaps).",
            registry=r,
        )
        self.ingest_seq_gaps = Counter(
            "trustship_ingest_seq_gaps_total", "Seq gaps reported as alerts.", registry=r
        )
        self.ingest_batches = Counter(
            "trustship_ingest_batches_total", "Batches committed to the database.", registry=r
        )
        self.ingest_batch_failures = Counter(
            "trustship_ingest_batch_failures_total",
            "Batches the database refused (not acknowledged; retried or redelivered).",
            registry=r,
        )
        self.ingest_store_seconds = Counter(
            "trustship_ingest_store_seconds_total", "Time spent storing batches.", registry=r
        )
        self.ingest_queue_depth = Gauge(
            "trustship_ingest_queue_depth", "Messages received and not yet processed.", registry=r
        )
        self.rules_alerts = Counter(
            "trustship_rules_alerts_total", "Alerts raised, by kind.", ["kind"], registry=r
        )
        self.rules_actions = Counter(
            "trustship_rules_actions_total",
            "Chain actions queued in the outbox, by kind.",
            ["kind"],
            registry=r,
        )
        self.outbox_results = Counter(
            "trustship_outbox_results_total",
            "Outbox executions, by kind and result.",
            ["kind", "result"],
            registry=r,
        )
        self.commitments = Counter(
            "trustship_commitments_total", "Merkle batches created.", registry=r
        )

    def get(self, sample: str, **labels: str) -> float:
        """One sample's value by its exposed name (``trustship_ingest_accepted_total``)."""
        return self.registry.value(sample, **labels)

    def total(self, sample: str) -> float:
        """The sum of a sample over all label values."""
        return self.registry.total(sample)

    def by_label(self, sample: str, label: str) -> dict[str, float]:
        return self.registry.by_label(sample, label)

    def render(self) -> str:
        """The Prometheus text of the whole registry these metrics are on."""
        return self.registry.render()


#: The metrics of components built without their own (``metrics=None``).
metrics = Metrics()
