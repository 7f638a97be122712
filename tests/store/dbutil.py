"""Database fixtures for tests: a fresh SQLite file, or a fresh PostgreSQL schema.

PostgreSQL is the machine's server (127.0.0.1:5432, database ``test``, user
``postgres``, trust auth; override with ``TEST_POSTGRES_URL``). Each test gets its
own schema, dropped afterwards, so nobody else's tables are touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from backend.store.db import make_engine, upgrade_to_head

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
]


@contextmanager
def postgres_schema_engine(**kwargs: object) -> Iterator[Engine]:
    """An engine whose search_path is a new schema; the schema is dropped on exit."""
    schema = "trustship_test_" + uuid.uuid4().hex[:12]
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # pragma: no cover - environment problem, reported clearly
        admin.dispose()
        raise RuntimeError(
            f"PostgreSQL at {POSTGRES_URL} is not usable ({exc}); start it or set TEST_POSTGRES_URL"
        ) from exc
    engine = make_engine(
        POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"}, **kwargs
    )
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def migrated_engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database of the given backend."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'trustship.db'}")
        upgrade_to_head(engine)
        try:
            yield engine
        finally:
            engine.dispose()
    else:
        with postgres_schema_engine() as engine:
            upgrade_to_head(engine)
            yield engine


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for a subprocess (its URL); dropped on exit."""
    name = "trustship_test_" + uuid.uuid4().hex[:12]
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment problem, reported clearly
        admin.dispose()
        raise RuntimeError(
            f"PostgreSQL at {POSTGRES_URL} is not usable ({exc}); start it or set TEST_POSTGRES_URL"
        ) from exc
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
