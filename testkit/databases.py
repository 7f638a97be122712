"""Databases for tests and benchmarks: a fresh SQLite file, a fresh PostgreSQL schema,
or a fresh PostgreSQL database for a subprocess.

Test suites that need many migrated, empty databases migrate once and reuse the
result: :func:`copy_sqlite` copies a migrated SQLite file, :func:`empty_tables`
empties a migrated PostgreSQL schema (every table but Alembic's, identities
restarted), so each test still starts from the head schema with no rows.

PostgreSQL is the machine's server (127.0.0.1:5432, database ``test``, user
``postgres``, trust auth; override with ``TEST_POSTGRES_URL``, or pass ``url``).
Each user gets its own schema or database, dropped afterwards, so nobody else's
tables are touched.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text

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


def schema_engine(schema: str, url: str = POSTGRES_URL, **kwargs: Any) -> Engine:
    """An engine on ``url`` whose search_path is ``schema``."""
    return make_engine(url, connect_args={"options": f"-csearch_path={schema}"}, **kwargs)


@contextmanager
def postgres_schema_engine(
    url: str = POSTGRES_URL, prefix: str = PREFIX, **kwargs: Any
) -> Iterator[Engine]:
    """An engine whose search_path is a new schema; the schema is dropped on exit."""
    with postgres_schema(prefix, url) as schema:
        engine = schema_engine(schema, url, **kwargs)
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


def seal_sqlite(path: Path) -> Path:
    """Fold ``path``'s write-ahead log into the file itself, so that copying the one
    file copies the whole database; ``path``."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path


def copy_sqlite(template: Path, target: Path) -> Engine:
    """An engine on a copy of the (sealed) SQLite database ``template`` at ``target``."""
    shutil.copyfile(template, target)
    return make_engine(f"sqlite:///{target}")


#: Alembic's bookkeeping table: it says which revision the schema is at, and stays.
ALEMBIC_TABLE = "alembic_version"


def empty_tables(engine: Engine, lock_timeout_ms: int = 10_000) -> None:
    """Delete every row of every table of ``engine``'s PostgreSQL schema (its
    search_path) but Alembic's, and restart the identities: the schema is as a fresh
    migration leaves it. Fails after ``lock_timeout_ms`` if a connection still holds a
    lock on one of the tables (a test that did not close what it opened)."""
    tables = [t for t in inspect(engine).get_table_names() if t != ALEMBIC_TABLE]
    if not tables:
        return
    with engine.connect() as conn:
        conn.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
        names = ", ".join(f'"{t}"' for t in tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        conn.commit()
