"""API keys → parties: dev seeding, configured parties, refusals."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from pydantic import SecretStr

from backend.api.parties import DEV_PARTY_ROLES, PartyRegistry, dev_private_key
from backend.chain.connection import dev_accounts
from backend.core.errors import ConfigurationError
from backend.core.settings import Settings

REAL_KEY = "k3y-" + "Zq9" * 10
REAL_PK = "0x" + "12" * 32


def settings(dev: bool, api_keys: object | None) -> Settings:
    raw = None if api_keys is None else SecretStr(json.dumps(api_keys))
    return Settings(DEV_MODE=dev, API_KEYS=raw, _env_file=None)  # type: ignore[call-arg]


def test_dev_mode_seeds_the_chain_layers_funded_dev_accounts() -> None:
    registry = PartyRegistry.from_settings(settings(True, None))
    chain_accounts = dict(dev_accounts(Settings(_env_file=None)))  # type: ignore[call-arg]
    for name, roles in DEV_PARTY_ROLES.items():
        party = registry.lookup(f"dev-{name}")
        assert party is not None
        assert party.roles == frozenset(roles)
        assert party.address == chain_accounts[name].address
    assert registry.lookup("dev-nobody") is None
    assert registry.lookup("") is None and registry.lookup(None) is None


def test_auditor_and_admin_read_all_and_only_the_auditor_is_read_only() -> None:
    registry = PartyRegistry.from_settings(settings(True, None))
    auditor, admin, buyer = (registry.by_name(n) for n in ("auditor", "admin", "buyer"))
    assert auditor.reads_all and auditor.read_only
    assert admin.reads_all and not admin.read_only
    assert not buyer.reads_all and not buyer.read_only


def test_configured_parties_outside_dev_mode() -> None:
    registry = PartyRegistry.from_settings(
        settings(
            False,
            [
                {
                    "name": "acme",
                    "key": REAL_KEY,
                    "roles": ["buyer", "supplier"],
                    "private_key": REAL_PK,
                },
                {
                    "name": "audit",
                    "key": REAL_KEY + "x",
                    "roles": ["auditor"],
                    "address": "0x" + "ab" * 20,
                },
            ],
        )
    )
    acme = registry.lookup(REAL_KEY)
    assert acme is not None and acme.address == Account.from_key(REAL_PK).address
    assert acme.private_key is not None
    audit = registry.lookup(REAL_KEY + "x")
    assert audit is not None and audit.private_key is None and audit.read_only
    assert registry.lookup(REAL_KEY[:-1]) is None


@pytest.mark.parametrize(
    ("api_keys", "message"),
    [
        (None, "API_KEYS is not set"),
        (
            [{"name": "a", "key": "dev-buyer", "roles": ["buyer"], "private_key": REAL_PK}],
            "placeholder",
        ),
        (
            [{"name": "a", "key": "short", "roles": ["buyer"], "private_key": REAL_PK}],
            "placeholder",
        ),
        (
            [
                {
                    "name": "a",
                    "key": "changeme-changeme-changeme",
                    "roles": ["buyer"],
                    "private_key": REAL_PK,
                }
            ],
            "placeholder",
        ),
        (
            [
                {
                    "name": "a",
                    "key": REAL_KEY,
                    "roles": ["buyer"],
                    "private_key": dev_private_key("buyer"),
                }
            ],
            r"API_KEYS\[0\]\.private_key \(party 'a'\) is a publicly known private key",
        ),
    ],
)
def test_non_dev_mode_refuses_placeholders(api_keys: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PartyRegistry.from_settings(settings(False, api_keys))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('{"name": "a"}', "non-empty JSON list"),
        (json.dumps([{"name": "a", "key": REAL_KEY, "roles": ["buyer"]}]), "private_key"),
        (
            json.dumps([{"name": "a", "key": REAL_KEY, "roles": ["king"], "private_key": REAL_PK}]),
            r"API_KEYS\[0\]\.roles",
        ),
        (
            json.dumps([{"name": "a", "key": REAL_KEY, "roles": ["buyer"], "private_key": "0x12"}]),
            "32 bytes",
        ),
        (
            json.dumps(
                [
                    {"name": "a", "key": REAL_KEY, "roles": ["buyer"], "private_key": REAL_PK},
                    {"name": "b", "key": REAL_KEY, "roles": ["buyer"], "address": "0x" + "ab" * 20},
                ]
            ),
            "used twice",
        ),
        (
            json.dumps(
                [
                    {
                        "name": "a",
                        "key": REAL_KEY,
                        "roles": ["buyer"],
                        "private_key": REAL_PK,
                        "address": "0x" + "ab" * 20,
                    }
                ]
            ),
            "does not match",
        ),
    ],
)
def test_malformed_api_keys_are_refused_with_the_place(raw: str, message: str) -> None:
    s = Settings(DEV_MODE=True, API_KEYS=SecretStr(raw), _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match=message):
        PartyRegistry.from_settings(s)


def test_secrets_do_not_show_in_reprs() -> None:
    registry = PartyRegistry.from_settings(
        settings(
            False,
            [{"name": "acme", "key": REAL_KEY, "roles": ["buyer"], "private_key": REAL_PK}],
        )
    )
    party = registry.by_name("acme")
    assert REAL_PK[2:] not in repr(party)
    assert REAL_KEY not in repr(party)


def test_an_address_with_a_wrong_eip55_checksum_is_refused_by_position() -> None:
    real = "0x05b1f6fcF6B7c1A62de3140e1F3eFC98BCC34C7a"
    entry = {"name": "audit", "key": REAL_KEY, "roles": ["auditor"]}
    with pytest.raises(ConfigurationError, match=r"API_KEYS\[0\]\.address: .*wrong EIP-55"):
        PartyRegistry.from_settings(settings(False, [{**entry, "address": real[:-1] + "A"}]))
    registry = PartyRegistry.from_settings(settings(False, [{**entry, "address": real.lower()}]))
    assert registry.by_name("audit").address == real
