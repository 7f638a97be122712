"""Engines, sessions and migrations.

SQLite (WAL, ``synchronous=NORMAL``, a busy timeout) under ``var/trustship.db``
when ``DATABASE_URL`` is unset; PostgreSQL (``postgresql+psycopg://...``)
otherwise. The schema is owned by Alembic: :func:`upgrade_to_head` runs at
start-up and is a no-op when the database is current.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.core.settings import REPO_ROOT
from backend.store.locks import MIGRATIONS, held

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_SQLITE_PATH = REPO_ROOT / "var" / "trustship.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def default_url() -> str:
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def resolve_url(url: str | None) -> str:
    """``url`` or, when unset, the default SQLite file; ``postgresql://`` gets psycopg 3."""
    if not url:
        return default_url()
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url`` (default: the SQLite file), with SQLite tuned for WAL."""
    resolved = make_url(resolve_url(url))
    if resolved.get_backend_name() == "sqlite":
        db = resolved.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        engine = create_engine(resolved, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(resolved, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine | None = None) -> Any:
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade_to_head(engine_or_url: Engine | str | None = None) -> Engine:
    """Bring the schema up to the newest migration; returns the engine used."""
    from alembic import command

    engine = engine_or_url if isinstance(engine_or_url, Engine) else make_engine(engine_or_url)
    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET:  # quiet by default; a configured level wins
        alembic_log.setLevel(logging.WARNING)
    with held(engine, MIGRATIONS):  # several oracle processes may start at once
        command.upgrade(alembic_config(engine), "head")
    log.debug("database %s at migration head", engine.url.render_as_string(hide_password=True))
    return engine
