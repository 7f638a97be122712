"""The process's Prometheus registry (``prometheus-client``), shared by the API and the oracle.

Each part declares its own metrics (:mod:`backend.api.metrics`,
:mod:`backend.oracle.metrics`) on a :class:`Registry` it is given; a process that
runs both (``trustship serve``) gives them the same one, and ``/metrics`` renders
it. The registry lives here, in the lowest layer, because both parts may import
``backend.core`` and neither may import the other.

Names follow Prometheus' conventions: ``trustship_<part>_<what>``, counters end in
``_total``, durations are in seconds (``_seconds``), no other units. The reading
helpers (:meth:`Registry.value`, :meth:`Registry.total`, :meth:`Registry.by_label`)
take a sample's exposed name (``trustship_ingest_accepted_total``), as a scrape sees
it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# Counters and histograms would each add a ``<name>_created`` series (the time of the
# first sample); nothing reads it, and it doubles the counters on every scrape.
disable_created_metrics()

#: The ``Content-Type`` of :meth:`Registry.render`'s text (exposition format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class Registry(CollectorRegistry):
    """A collector registry with the rendering and reading the product needs."""

    def __init__(self) -> None:
        super().__init__(auto_describe=True)

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of every metric registered here."""
        return generate_latest(self).decode("utf-8")

    def value(self, sample: str, **labels: str) -> float:
        """The value of one sample; 0 while a labelled metric has no such child yet."""
        found = self.get_sample_value(sample, labels)
        return 0.0 if found is None else found

    def total(self, sample: str) -> float:
        """The sum of a sample over all its label values."""
        return sum(self.by_label(sample).values())

    def by_label(self, sample: str, label: str | None = None) -> dict[str, float]:
        """A sample's values summed by one label's value (all of them under ``""``
        without a label)."""
        out: dict[str, float] = {}
        for family in self.collect():
            for s in family.samples:
                if s.name == sample:
                    key = s.labels.get(label, "") if label is not None else ""
                    out[key] = out.get(key, 0.0) + s.value
        return out
