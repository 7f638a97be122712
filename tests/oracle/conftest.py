from __future__ import annotations

import pytest
from sqlalchemy import Engine

from backend.oracle.ingest import Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesEngine
from testkit.readings import DOMAIN, seed


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def ingestor(sqlite_engine: Engine, metrics: Metrics) -> Ingestor:
    """Orders 1 (devices 0, 1) and 2 (device 2) in transit; devices 3+ unbound."""
    seed(sqlite_engine, {1: [0, 1], 2: [2]})
    return Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
