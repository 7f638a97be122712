"""Settings for tests and benchmarks."""

from __future__ import annotations

from backend.core.settings import Settings


def dev_settings(rpc_url: str | None = None) -> Settings:
    """Dev-mode settings that ignore the environment and .env."""
    return Settings(_env_file=None, RPC_URL=rpc_url, DEV_MODE=True)  # type: ignore[call-arg]
