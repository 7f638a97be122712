"""Databases for tests and benchmarks: a fresh SQLite file, a fresh PostgreSQL schema,
or a fresh PostgreSQL database for a subprocess.

PostgreSQL is the machine's server (127.0.0.1:5432, database ``test``, user
``postgres``, trust auth; override with ``TEST_POSTGRES_URL``, or pass ``url``).
Each user gets its own schema or database, dropped afterwards, so nobody else's
tables are touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from backend.store.db import make_engine, upgrade_to_head

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PREFIX = "trustship_test_"


def _unusable(url: str, exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"PostgreSQL at {url} is not usable ({exc}); start it or set TEST_POSTGRES_URL"
    )


@contextmanager
def postgres_schema_engine(
    url: str = POSTGRES_URL, prefix: str = PREFIX, **kwargs: Any
) -> Iterator[Engine]:
    """An engine whose search_path is a new schema; the schema is dropped on exit."""
    schema = prefix + uuid.uuid4().hex[:12]
    admin = make_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # pragma: no cover - environment problem, reported clearly
        admin.dispose()
        raise _unusable(url, exc) from exc
    engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"}, **kwargs)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def migrated_engine(
    backend: str, where: Path, url: str = POSTGRES_URL, prefix: str = PREFIX
) -> Iterator[Engine]:
    """A migrated, empty database of the given backend (``sqlite``: a file in ``where``;
    ``postgresql``: a new schema of ``url``)."""
    if backend == "sqlite":
        engine = upgrade_to_head(f"sqlite:///{where / 'trustship.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
    else:
        with postgres_schema_engine(url, prefix) as engine:
            upgrade_to_head(engine)
            yield engine


@contextmanager
def fresh_postgres_database(url: str = POSTGRES_URL) -> Iterator[str]:
    """A new, empty PostgreSQL database for a subprocess (its URL); dropped on exit."""
    name = PREFIX + uuid.uuid4().hex[:12]
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment problem, reported clearly
        admin.dispose()
        raise _unusable(url, exc) from exc
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
