"""Engines, sessions and migrations.

SQLite (WAL, ``synchronous=NORMAL``, a busy timeout) under ``var/trustship.db``
when ``DATABASE_URL`` is unset; PostgreSQL (``postgresql+psycopg://...``)
otherwise. The schema is owned by Alembic: :func:`upgrade_to_head` runs at
start-up and is a no-op when the database is current.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.core.settings import REPO_ROOT
from backend.store.locks import MIGRATIONS, held

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_SQLITE_PATH = REPO_ROOT / "var" / "trustship.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: A pooled PostgreSQL connection given back less than this long ago is handed out
#: again without a ping (:func:`make_engine`'s ``ping="idle"``).
PING_AFTER_IDLE_S = 0.5


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


def make_engine(
    url: str | None = None, *, ping: Literal["always", "idle"] = "always", **kwargs: Any
) -> Engine:
    """An engine for ``url`` (default: the SQLite file), with SQLite tuned for WAL.

    ``ping``: when a pooled PostgreSQL connection is checked before it is handed out
    (a round trip), so that one the server dropped (a restart, an idle timeout) is
    replaced instead of failing the statement. ``"always"``: on every checkout
    (SQLAlchemy's ``pool_pre_ping``). ``"idle"``: only when it sat in the pool for
    ``PING_AFTER_IDLE_S`` or more, as HikariCP's ``aliveBypassWindowMs`` does: under
    load the connections come back within milliseconds, and the ping was a fifth
    of a one-order read (docs/api.md, "Choices"). A connection dropped while in
    constant use then fails one statement, which invalidates the pool (every
    connection opened before is replaced at its next checkout)."""
    if ping not in ("always", "idle"):
        raise ValueError(f"ping must be 'always' or 'idle', not {ping!r}")
    resolved = make_url(resolve_url(url))
    if resolved.get_backend_name() == "sqlite":
        db = resolved.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        engine = create_engine(resolved, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", ping == "always")
    engine = create_engine(resolved, **kwargs)
    if ping == "idle":
        event.listen(engine, "checkin", _note_idle)
        event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


def _note_idle(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")  # None: a new connection
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as e:  # the pool replaces it (and every older one) and retries
            raise exc.InvalidatePoolError(f"ping failed: {e}") from e

    return checkout


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
