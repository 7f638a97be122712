"""Prometheus text exposition for the API (no client library needed).

Request counts by (method, route template, status) and a latency histogram by
(method, route template). Route templates (``/orders/{order_id}``), never raw
paths, keep the label set bounded. Other components (the oracle) contribute
their own lines through :meth:`Metrics.add_collector`.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable

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

Collector = Callable[[], str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    return repr(float(v)) if v != int(v) else f"{int(v)}"


class _Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


class Metrics:
    """Thread-safe request metrics plus pluggable collectors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._collectors: list[Collector] = []
        self._inflight = 0

    def add_collector(self, collector: Collector) -> None:
        """Add a function returning Prometheus text lines (HELP/TYPE + samples)."""
        self._collectors.append(collector)

    def started(self) -> None:
        with self._lock:
            self._inflight += 1

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._inflight -= 1
            key = (method, route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.get((method, route))
            if hist is None:
                hist = self._latency[(method, route)] = _Histogram()
            hist.observe(seconds)

    def request_count(self, method: str, route: str, status: int) -> int:
        with self._lock:
            return self._requests.get((method, route, status), 0)

    def render(self) -> str:
        lines = [
            "# HELP trustship_api_requests_total HTTP requests answered, by route and status.",
            "# TYPE trustship_api_requests_total counter",
        ]
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted(
                (k, list(h.counts), h.total, h.count) for k, h in self._latency.items()
            )
            inflight = self._inflight
        for (method, route, status), n in requests:
            lines.append(
                f'trustship_api_requests_total{{method="{method}",route="{_escape(route)}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP trustship_api_request_duration_seconds Time to answer a request.",
            "# TYPE trustship_api_request_duration_seconds histogram",
        ]
        for (method, route), counts, total, count in latency:
            labels = f'method="{method}",route="{_escape(route)}"'
            cumulative = 0
            for bound, c in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += c
                le = "+Inf" if bound == float("inf") else _fmt(bound)
                name = "trustship_api_request_duration_seconds_bucket"
                lines.append(f'{name}{{{labels},le="{le}"}} {cumulative}')
            lines.append(f"trustship_api_request_duration_seconds_sum{{{labels}}} {total!r}")
            lines.append(f"trustship_api_request_duration_seconds_count{{{labels}}} {count}")
        lines += [
            "# HELP trustship_api_requests_in_flight Requests being answered now.",
            "# TYPE trustship_api_requests_in_flight gauge",
            f"trustship_api_requests_in_flight {inflight}",
        ]
        text = "\n".join(lines) + "\n"
        for collector in self._collectors:
            extra = collector()
            if extra:
                text += extra if extra.endswith("\n") else extra + "\n"
        return text
