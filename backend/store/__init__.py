"""The oracle's database: models, migrations and repositories (SQLite or PostgreSQL)."""

from backend.store.db import make_engine, resolve_url, session_factory, upgrade_to_head

__all__ = ["make_engine", "resolve_url", "session_factory", "upgrade_to_head"]
