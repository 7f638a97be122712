"""The schemathesis run of tests/api/test_openapi_fuzz.py on PostgreSQL: the same app,
checks, seeded chain and parties, with the indexer and the API on a real PostgreSQL
(a schema of its own, emptied before each operation, dropped after). PostgreSQL refuses
what SQLite takes (a NUL byte in text, integers beyond bigint), so this is where the
boundary's validation is proven; any 5xx fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from backend.chain.testing import Stack
from backend.store.db import upgrade_to_head
from backend.store.models import Base
from testkit.databases import postgres_schema_engine
from tests.api import fuzz
from tests.api.fuzz import Seeded, fuzz_case, fuzz_context
from tests.api.test_openapi_fuzz import APP, FUZZ_SETTINGS, schema, seeded_stack  # noqa: F401

# serial: schemathesis' per-operation tests collapse to one under pytest-xdist (Makefile).
pytestmark = [pytest.mark.integration, pytest.mark.serial]


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    with postgres_schema_engine() as engine:
        upgrade_to_head(engine)
        yield engine


@pytest.fixture
def pg_app(seeded_stack: tuple[Stack, Seeded], pg_engine: Engine) -> Iterator[Seeded]:  # noqa: F811
    stack, seeded = seeded_stack
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    with fuzz_context(stack, pg_engine, seeded) as context:
        with context.session_factory() as s:
            assert s.get_bind().dialect.name == "postgresql"
        APP.state.context = context
        yield seeded


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_on_postgres_conforms_to_its_openapi(case: Any, pg_app: Seeded) -> None:
    fuzz_case(case, pg_app)


def test_the_run_on_postgres_answered_no_5xx() -> None:
    """After the run above (file order): cases went to every operation, none got a 5xx."""
    if not fuzz.STATS:
        pytest.skip("sums up the schemathesis run above: run the whole module")
    operations = {op for op, _, _ in fuzz.STATS}
    assert len(operations) == len(list(schema.get_all_operations())), operations
    assert all(status < 500 for (_, _, status) in fuzz.STATS), fuzz.summary()
