from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from backend.oracle.ingest import Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesEngine
from tests.oracle.helpers import DOMAIN, seed
from tests.store.dbutil import BACKENDS, migrated_engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine("sqlite", tmp_path) as eng:
        yield eng


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine(request.param, tmp_path) as eng:
        yield eng


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def ingestor(sqlite_engine: Engine, metrics: Metrics) -> Ingestor:
    """Orders 1 (devices 0, 1) and 2 (device 2) in transit; devices 3+ unbound."""
    seed(sqlite_engine, {1: [0, 1], 2: [2]})
    return Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
