"""API keys → parties (an account address and roles).

In dev mode, with ``API_KEYS`` unset, six parties are seeded from fixed,
public keys (``dev-buyer`` …) with deterministic custodial accounts, so the
curl walkthrough in docs/api.md works on any machine. Outside dev mode
``API_KEYS`` is required, and placeholder keys and public private keys (the dev
accounts', anvil's and hardhat's default accounts': backend/core/keys.py) are refused.

``API_KEYS`` is a JSON list: ``[{"name": "acme", "key": "<secret>",
"roles": ["buyer"], "private_key": "0x…", "jurisdiction": "US"}]``; a party without
``private_key`` gives an ``address`` instead and can read but not send transactions.
``jurisdiction`` (ISO 3166-1 alpha-2, or ``EU``; default ``DEFAULT_JURISDICTION``) is
where the party's data lives and what the sharing policy compares (docs/sharing.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from eth_account import Account
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from backend.api.schemas import Address
from backend.core.errors import ConfigurationError
from backend.core.keys import dev_private_key as dev_role_key
from backend.core.keys import normalize_private_key, refuse_public_key
from backend.core.settings import Settings
from backend.sharing.jurisdictions import is_jurisdiction
from backend.sharing.policy import Viewer

Role = Literal["buyer", "supplier", "arbiter", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("buyer", "supplier", "arbiter", "auditor", "admin")
MIN_KEY_LENGTH = 24


@dataclass(frozen=True, slots=True)
class Party:
    """Who is calling: a name, an account and roles."""

    name: str
    address: str  # checksummed
    roles: frozenset[str]
    private_key: SecretStr | None = None  # custodial signer (dev mode)
    #: Where the party's data lives (ISO 3166-1 alpha-2 or EU): docs/sharing.md.
    jurisdiction: str = "EU"

    @property
    def reads_all(self) -> bool:
        """Auditors and admins see every order; others only their own."""
        return bool(self.roles & {"auditor", "admin"})

    @property
    def read_only(self) -> bool:
        """An auditor changes nothing, whatever other roles it has."""
        return "auditor" in self.roles

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def viewer(self) -> Viewer:
        """The party as the sharing policy sees it."""
        return Viewer(self.name, self.address, self.roles, self.jurisdiction)


class PartyConfig(BaseModel):
    """One entry of ``API_KEYS``."""

    name: str = Field(min_length=1, max_length=64)
    key: SecretStr
    roles: list[Role] = Field(min_length=1)
    private_key: SecretStr | None = None
    address: Address | None = None
    jurisdiction: str | None = Field(
        default=None, description="ISO 3166-1 alpha-2 or EU; default DEFAULT_JURISDICTION."
    )

    @field_validator("jurisdiction")
    @classmethod
    def _valid_jurisdiction(cls, v: str | None) -> str | None:
        if v is not None and not is_jurisdiction(v):
            raise ValueError("jurisdiction must be ISO 3166-1 alpha-2 (US, CN, SG …) or EU")
        return v

    @field_validator("private_key")
    @classmethod
    def _valid_private_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return None
        raw = normalize_private_key(v.get_secret_value())
        if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
            raise ValueError("private_key must be 32 bytes of hex")
        return SecretStr("0x" + raw)

    @model_validator(mode="after")
    def _address_or_key(self) -> PartyConfig:
        if self.private_key is None and self.address is None:
            raise ValueError("give a private_key (custodial) or an address (read-only)")
        return self

    def to_party(self, default_jurisdiction: str = "EU") -> Party:
        if self.private_key is not None:
            address = Account.from_key(self.private_key.get_secret_value()).address
            if self.address is not None and self.address != address:
                raise ConfigurationError(
                    f"API party {self.name!r}: address does not match its private_key"
                )
        else:
            assert self.address is not None
            address = self.address
        return Party(
            self.name,
            address,
            frozenset(self.roles),
            self.private_key,
            self.jurisdiction or default_jurisdiction,
        )


# --- dev parties ----------------------------------------------------------------------

DEV_PARTY_ROLES: dict[str, tuple[Role, ...]] = {
    "buyer": ("buyer",),
    "supplier": ("supplier",),
    "arbiter": ("arbiter",),
    "auditor": ("auditor",),
    "admin": ("admin",),
    "stranger": ("buyer", "supplier"),  # a party to none of the others' orders
}


def dev_private_key(name: str) -> str:
    """The fixed, public private key of a dev party: the chain layer's dev account of the
    same role (funded on dev chains by :func:`backend.chain.connection.connect`)."""
    return dev_role_key(name)


def dev_api_key(name: str) -> str:
    return f"dev-{name}"


#: Dev parties in another jurisdiction than the others (read-only: an address, no key),
#: so the sharing policy can be seen at work (docs/sharing.md).
DEV_OVERSEAS: dict[str, tuple[tuple[Role, ...], str]] = {
    "overseas-auditor": (("auditor",), "US"),
}


def dev_parties(jurisdiction: str = "EU") -> list[tuple[str, Party]]:
    """(api key, party) for every seeded dev party: the six in ``jurisdiction``, and
    the overseas ones in theirs."""
    out = []
    for name, roles in DEV_PARTY_ROLES.items():
        pk = dev_private_key(name)
        party = Party(
            name, Account.from_key(pk).address, frozenset(roles), SecretStr(pk), jurisdiction
        )
        out.append((dev_api_key(name), party))
    for name, (roles, where) in DEV_OVERSEAS.items():
        address = Account.from_key(dev_private_key(name)).address
        out.append((dev_api_key(name), Party(name, address, frozenset(roles), None, where)))
    return out


_PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "test", "dev", "example"}


def _is_placeholder(key: str) -> bool:
    k = key.strip().lower()
    return (
        len(k) < MIN_KEY_LENGTH
        or k.startswith("dev-")
        or k in _PLACEHOLDERS
        or any(p in k for p in ("changeme", "change-me", "placeholder", "example"))
    )


# --- the registry ---------------------------------------------------------------------


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class PartyRegistry:
    """Looks up the party of an API key (by the key's SHA-256)."""

    def __init__(
        self, entries: Iterable[tuple[str, Party]], default_jurisdiction: str = "EU"
    ) -> None:
        self.default_jurisdiction = default_jurisdiction
        self._by_digest: dict[bytes, Party] = {}
        self._by_address: dict[str, Party] = {}
        self._keys: dict[str, str] = {}  # party name → api key (for the dev listing)
        for key, party in entries:
            d = _digest(key)
            if d in self._by_digest:
                raise ConfigurationError(f"API key of party {party.name!r} is used twice")
            self._by_digest[d] = party
            self._keys[party.name] = key
            self._by_address.setdefault(party.address, party)
        self._jurisdictions = frozenset(
            {default_jurisdiction, *(p.jurisdiction for p in self._by_digest.values())}
        )

    def lookup(self, key: str | None) -> Party | None:
        if not key:
            return None
        # Keyed by SHA-256: the lookup's timing depends on the digest, never on how
        # much of the secret key matched.
        return self._by_digest.get(_digest(key))

    def parties(self) -> list[Party]:
        return list(self._by_digest.values())

    def jurisdictions(self) -> frozenset[str]:
        """Every jurisdiction a party or an order's owner may have."""
        return self._jurisdictions

    def jurisdiction_of(self, address: str) -> str:
        """The jurisdiction of the configured party with this account, else the default."""
        party = self._by_address.get(address)
        return self.default_jurisdiction if party is None else party.jurisdiction

    def by_name(self, name: str) -> Party:
        for p in self._by_digest.values():
            if p.name == name:
                return p
        raise KeyError(name)

    def listing(self) -> list[tuple[str, Party]]:
        """(api key, party) pairs — for the CLI's dev-mode listing only."""
        return [(self._keys[p.name], p) for p in self._by_digest.values()]

    @classmethod
    def from_settings(cls, settings: Settings) -> PartyRegistry:
        """The parties of ``settings`` (dev parties in dev mode without ``API_KEYS``).

        Raises :class:`ConfigurationError` on malformed ``API_KEYS`` and, outside
        dev mode, when it is unset or uses placeholder keys or dev accounts.
        """
        if settings.API_KEYS is None:
            if settings.DEV_MODE:
                return cls(
                    dev_parties(settings.DEFAULT_JURISDICTION), settings.DEFAULT_JURISDICTION
                )
            raise ConfigurationError(
                "API_KEYS is not set: outside dev mode give each party its own key (docs/api.md)"
            )
        try:
            raw = json.loads(settings.API_KEYS.get_secret_value())
        except ValueError as exc:
            raise ConfigurationError(f"API_KEYS is not valid JSON: {exc}") from None
        if not isinstance(raw, list) or not raw:
            raise ConfigurationError("API_KEYS must be a non-empty JSON list of parties")
        entries: list[tuple[str, Party]] = []
        names: set[str] = set()
        for i, item in enumerate(raw):
            try:
                cfg = PartyConfig.model_validate(item)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ConfigurationError(f"API_KEYS[{i}].{where}: {first['msg']}") from None
            key = cfg.key.get_secret_value()
            if cfg.name in names:
                raise ConfigurationError(f"API_KEYS: party name {cfg.name!r} is used twice")
            names.add(cfg.name)
            if not settings.DEV_MODE:
                if _is_placeholder(key):
                    raise ConfigurationError(
                        f"API_KEYS: party {cfg.name!r} has a placeholder key; outside dev mode "
                        f"use a random key of at least {MIN_KEY_LENGTH} characters"
                    )
                if cfg.private_key is not None:
                    refuse_public_key(
                        f"API_KEYS[{i}].private_key (party {cfg.name!r})",
                        cfg.private_key.get_secret_value(),
                    )
            entries.append((key, cfg.to_party(settings.DEFAULT_JURISDICTION)))
        return cls(entries, settings.DEFAULT_JURISDICTION)
