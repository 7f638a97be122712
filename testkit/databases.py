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


def _execute(admin: Engine, sql: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(sql))
        conn.commit()


@contextmanager
def _created(url: str, create: str, drop: str, **admin_kwargs: Any) -> Iterator[None]:
    """Run ``create`` on ``url``, and ``drop`` on exit (both as one statement each)."""
    admin = make_engine(url, **admin_kwargs)
    try:
        _execute(admin, create)
    except Exception as exc:  # pragma: no cover - environment problem, reported clearly
        admin.dispose()
        raise RuntimeError(
            f"PostgreSQL at {url} is not usable ({exc}); start it or set TEST_POSTGRES_URL"
        ) from exc
    try:
        yield
    finally:
        _execute(admin, drop)
        admin.dispose()


@contextmanager
def postgres_schema(prefix: str = PREFIX, url: str = POSTGRES_URL) -> Iterator[str]:
    """A new schema's name (``prefix`` and a random suffix); the schema is dropped on exit."""
    schema = prefix + uuid.uuid4().hex[:12]
    with _created(url, f'CREATE SCHEMA "{schema}"', f'DROP SCHEMA "{schema}" CASCADE'):
        yield schema


def schema_url(schema: str, url: str = POSTGRES_URL) -> str:
    """A DATABASE_URL (for a subprocess) whose search_path is ``schema``."""
    return f"{url}?options=-csearch_path%3D{schema}"


@contextmanager
def postgres_schema_engine(
    url: str = POSTGRES_URL, prefix: str = PREFIX, **kwargs: Any
) -> Iterator[Engine]:
    """An engine whose search_path is a new schema; the schema is dropped on exit."""
    with postgres_schema(prefix, url) as schema:
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"}, **kwargs)
        try:
            yield engine
        finally:
            engine.dispose()


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
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    with _created(url, f'CREATE DATABASE "{name}"', drop, isolation_level="AUTOCOMMIT"):
        yield url.rsplit("/", 1)[0] + "/" + name
