"""Alembic environment: runs migrations on the engine handed over by
``backend.store.db.upgrade_to_head`` or, from the alembic command line, on
``DATABASE_URL`` (default: the SQLite file)."""

from __future__ import annotations

from alembic import context

from backend.core.settings import Settings
from backend.store.db import make_engine
from backend.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or make_engine(Settings().DATABASE_URL)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
