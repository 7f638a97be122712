"""The API's request metrics (prometheus-client).

Request counts by (method, route template, status), a latency histogram by (method,
route template) and the requests in flight. Route templates (``/orders/{order_id}``),
never raw paths, keep the label set bounded. They are registered on a
:class:`~backend.core.metrics.Registry`; with the oracle in the process it is the
oracle's too, and ``/metrics`` renders the registry (docs/api.md, "Metrics").
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from backend.core.metrics import Registry

BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class Metrics:
    """The API's metrics, registered on ``registry`` (a new one if None)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        r = self.registry
        self.requests = Counter(
            "trustship_api_requests_total",
            "HTTP requests answered, by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "trustship_api_request_duration_seconds",
            "Time to answer a request.",
            ["method", "route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "trustship_api_requests_in_flight", "Requests being answered now.", registry=r
        )
        # The children per label set, so a request does not pay for labels()' checks
        # (the set is bounded: route templates × statuses).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def started(self) -> None:
        self.in_flight.inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.in_flight.dec()
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children.setdefault(
                key,
                (
                    self.requests.labels(method, route, str(status)),
                    self.request_duration.labels(method, route),
                ),
            )
        count, latency = children
        count.inc()
        latency.observe(seconds)

    def request_count(self, method: str, route: str, status: int) -> int:
        sample = "trustship_api_requests_total"
        return int(self.registry.value(sample, method=method, route=route, status=str(status)))

    def render(self) -> str:
        """The Prometheus text of the whole registry (the oracle's metrics too, if on it)."""
        return self.registry.render()
