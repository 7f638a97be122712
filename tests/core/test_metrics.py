"""The one metrics registry: both metric sets on it, Prometheus' naming, documented names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.api.metrics import Metrics as ApiMetrics
from backend.core.metrics import CONTENT_TYPE, Registry
from backend.indexer.metrics import IndexerMetrics
from backend.oracle.metrics import Metrics as OracleMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs"


def shared() -> tuple[Registry, ApiMetrics, OracleMetrics]:
    """The registry as the builder shares it: the API's, the oracle's, the indexer's."""
    registry = Registry()
    api, oracle = ApiMetrics(registry), OracleMetrics(registry)
    IndexerMetrics(registry)
    return registry, api, oracle


def exposed_names(registry: Registry) -> set[str]:
    """Each family's name as a scrape shows it (a counter's with ``_total``)."""
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in registry.collect()
    }


def test_one_registry_renders_the_api_and_the_oracle() -> None:
    registry, api, oracle = shared()
    api.started()
    api.observe("GET", "/orders/{order_id}", 200, 0.003)
    oracle.ingest_accepted.inc(3)
    oracle.ingest_rejected.labels(reason="bad_signature").inc(2)
    lines = api.render().splitlines()
    assert oracle.render().splitlines() == lines
    assert "trustship_ingest_accepted_total 3.0" in lines
    assert 'trustship_ingest_rejected_total{reason="bad_signature"} 2.0' in lines
    assert (
        'trustship_api_requests_total{method="GET",route="/orders/{order_id}",status="200"} 1.0'
        in lines
    )
    assert "# TYPE trustship_api_request_duration_seconds histogram" in lines
    assert "trustship_api_requests_in_flight 0.0" in lines
    assert not [line for line in lines if "_created" in line]
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_reading_by_exposed_name() -> None:
    _, api, oracle = shared()
    assert oracle.get("trustship_ingest_accepted_total") == 0
    assert oracle.get("trustship_ingest_rejected_total", reason="oversized") == 0
    oracle.ingest_rejected.labels(reason="oversized").inc()
    oracle.ingest_rejected.labels(reason="bad_topic").inc(4)
    assert oracle.get("trustship_ingest_rejected_total", reason="bad_topic") == 4
    assert oracle.total("trustship_ingest_rejected_total") == 5
    assert oracle.by_label("trustship_ingest_rejected_total", "reason") == {
        "oversized": 1,
        "bad_topic": 4,
    }
    for _ in range(2):
        api.started()
        api.observe("POST", "/orders", 201, 0.01)
    assert api.request_count("POST", "/orders", 201) == 2
    assert api.request_count("POST", "/orders", 409) == 0


def test_separate_registries_do_not_share_values() -> None:
    a, b = OracleMetrics(), OracleMetrics()
    a.commitments.inc()
    assert (a.get("trustship_commitments_total"), b.get("trustship_commitments_total")) == (1, 0)


def test_a_name_registered_twice_on_one_registry_is_refused() -> None:
    registry = Registry()
    OracleMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        OracleMetrics(registry)


def test_names_follow_prometheus_conventions() -> None:
    registry, _, _ = shared()
    families = list(registry.collect())
    assert len(families) == 27
    for family in families:
        assert re.fullmatch(
            r"trustship_(api|ingest|rules|outbox|commitments|indexer|receipts)\w*", family.name
        )
        assert family.type in {"counter", "gauge", "histogram"}, family.name
        if family.type == "histogram":  # durations, in seconds
            assert family.name.endswith("_seconds"), family.name
        if family.type == "gauge":  # a gauge is not a count of events, nor a duration
            assert not family.name.endswith(("_total", "_seconds")), family.name
        assert not re.search(
            r"_(ms|millis|milliseconds|us|minutes|hours|bytes_k\w*)\b", family.name
        )


def test_every_metric_is_documented() -> None:
    registry, _, _ = shared()
    documented = set(
        re.findall(
            r"trustship_[a-z_]+", (DOCS / "api.md").read_text() + (DOCS / "oracle.md").read_text()
        )
    )
    missing = exposed_names(registry) - documented
    assert not missing, f"metrics not named in docs/api.md or docs/oracle.md: {sorted(missing)}"
