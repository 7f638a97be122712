"""Process configuration from the environment (and a ``.env`` file).

Unset connection settings mean the embedded defaults: eth-tester for the chain,
an in-process MQTT broker, SQLite under ``var/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

# Well-known development key (anvil's and eth-tester's first funded account is
# different; this one is funded explicitly at deployment in dev mode). Refused
# outside dev mode.
DEV_ORACLE_PRIVATE_KEY = "0x" + "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"


class Settings(BaseSettings):
    """Settings for one TrustShip process."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    RPC_URL: str | None = None
    MQTT_URL: str | None = None
    DATABASE_URL: str | None = None
    ORACLE_PRIVATE_KEY: SecretStr = SecretStr(DEV_ORACLE_PRIVATE_KEY)
    # Deploys the contracts and holds DEFAULT_ADMIN_ROLE outside dev mode (default: the oracle key).
    DEPLOYER_PRIVATE_KEY: SecretStr | None = None
    DEPLOYMENT_FILE: Path = REPO_ROOT / "var" / "deployment.json"
    API_HOST: str = "127.0.0.1"
    API_PORT: int = 8000
    DEV_MODE: bool = True
    # REST API parties: a JSON list of {"name", "key", "roles", "private_key" | "address"}
    # (docs/api.md). Unset in dev mode: the seeded dev parties.
    API_KEYS: SecretStr | None = None
    LOG_LEVEL: str = "INFO"

    def check_secrets(self) -> None:
        """Refuse placeholder secrets outside dev mode."""
        from backend.core.errors import ConfigurationError

        if (
            not self.DEV_MODE
            and self.ORACLE_PRIVATE_KEY.get_secret_value() == DEV_ORACLE_PRIVATE_KEY
        ):
            raise ConfigurationError(
                "ORACLE_PRIVATE_KEY is the public development key; set a real key or DEV_MODE=true"
            )


@lru_cache
def get_settings() -> Settings:
    return Settings()
