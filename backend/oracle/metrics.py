"""The oracle's metrics: ingest, rules, outbox, commitments (prometheus-client).

They live in the process and restart from zero with it, as Prometheus counters do;
nothing about refused messages is written to the database (a flood of garbage must
not grow the database). ``trustship serve`` registers them on the API's registry, so
its ``/metrics`` shows both. Names and meanings: docs/oracle.md, "Metrics".
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from backend.core.metrics import Registry

#: The oracle's metrics in exposition order: kind, name, help text, labels. The sample
#: is ``trustship_<name>`` (``_total`` added for a counter), the attribute ``<name>``.
METRICS: tuple[tuple[type[Counter] | type[Gauge], str, str, tuple[str, ...]], ...] = (
    (Counter, "ingest_received", "MQTT telemetry messages received.", ()),
    (Counter, "ingest_accepted", "Readings verified and stored.", ()),
    (
        Counter,
        "ingest_duplicates",
        "Readings dropped because the same (device, seq) reading is already stored.",
        (),
    ),
    (Counter, "ingest_rejected", "Messages refused, by reason.", ("reason",)),
    (Counter, "ingest_statuses", "Device status messages recorded.", ()),
    (
        Gauge,
        "ingest_missing_readings",
        "Readings of live orders that never arrived while later ones did (seq gaps).",
        (),
    ),
    (Counter, "ingest_seq_gaps", "Seq gaps reported as alerts.", ()),
    (Counter, "ingest_batches", "Batches committed to the database.", ()),
    (
        Counter,
        "ingest_batch_failures",
        "Batches the database refused (not acknowledged; retried or redelivered).",
        (),
    ),
    (Counter, "ingest_store_seconds", "Time spent storing batches.", ()),
    (Gauge, "ingest_queue_depth", "Messages received and not yet processed.", ()),
    (
        Counter,
        "ingest_handed_off",
        "Readings stored here for an order another oracle process owns (its handoff).",
        (),
    ),
    (
        Counter,
        "ingest_taken_over",
        "Readings other oracle processes stored that this one evaluated as their owner.",
        (),
    ),
    (Gauge, "ingest_owned_slots", "Order slots (of 256) this oracle process evaluates.", ()),
    (Counter, "rules_alerts", "Alerts raised, by kind.", ("kind",)),
    (Counter, "rules_actions", "Chain actions queued in the outbox, by kind.", ("kind",)),
    (Counter, "outbox_results", "Outbox executions, by kind and result.", ("kind", "result")),
    (
        Counter,
        "outbox_requeued",
        "Done outbox entries sent again after a chain reorganisation, by kind.",
        ("kind",),
    ),
    (Counter, "commitments", "Merkle batches created.", ()),
    (Counter, "receipts_published", "Storage receipts published to devices.", ()),
    (
        Counter,
        "receipts_dropped",
        "Storage receipts dropped while not connected to the broker (devices resend).",
        (),
    ),
)


class Metrics:
    """The oracle's counters and gauges (:data:`METRICS`), registered on ``registry``
    (a new one if None).

    Components write through the attributes (``metrics.ingest_accepted.inc(n)``);
    tests and benchmarks read by exposed sample name (:meth:`get`)."""

    ingest_received: Counter
    ingest_accepted: Counter
    ingest_duplicates: Counter
    ingest_rejected: Counter
    ingest_statuses: Counter
    ingest_missing_readings: Gauge
    ingest_seq_gaps: Counter
    ingest_batches: Counter
    ingest_batch_failures: Counter
    ingest_store_seconds: Counter
    ingest_queue_depth: Gauge
    ingest_handed_off: Counter
    ingest_taken_over: Counter
    ingest_owned_slots: Gauge
    rules_alerts: Counter
    rules_actions: Counter
    outbox_results: Counter
    outbox_requeued: Counter
    commitments: Counter
    receipts_published: Counter
    receipts_dropped: Counter

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        for kind, name, help_text, labels in METRICS:
            sample = f"trustship_{name}_total" if kind is Counter else f"trustship_{name}"
            setattr(self, name, kind(sample, help_text, labels, registry=self.registry))

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
