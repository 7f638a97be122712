"""Process configuration from the environment (and a ``.env`` file).

Unset connection settings mean the embedded defaults: eth-tester for the chain,
an in-process MQTT broker, SQLite under ``var/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The oracle's public development key is ORACLE_PRIVATE_KEY's default; it and every other
# public key (backend/core/keys.py) are refused outside dev mode.
from backend.core.keys import DEV_ORACLE_PRIVATE_KEY as DEV_ORACLE_PRIVATE_KEY
from backend.core.keys import refuse_public_key

REPO_ROOT = Path(__file__).resolve().parents[2]


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
        """Outside dev mode, refuse the chain keys when they are public (any spelling:
        the dev keys, anvil's and hardhat's default accounts; backend/core/keys.py).

        ``API_KEYS``' private keys get the same check where they are read
        (:meth:`backend.api.parties.PartyRegistry.from_settings`).
        """
        if self.DEV_MODE:
            return
        refuse_public_key("ORACLE_PRIVATE_KEY", self.ORACLE_PRIVATE_KEY.get_secret_value())
        if self.DEPLOYER_PRIVATE_KEY is not None:
            refuse_public_key("DEPLOYER_PRIVATE_KEY", self.DEPLOYER_PRIVATE_KEY.get_secret_value())


@lru_cache
def get_settings() -> Settings:
    return Settings()
