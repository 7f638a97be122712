"""Public private keys: one list, one normalising comparison, refused wherever a key is
configured outside dev mode, with the setting named (issue 8, finding 2)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from pydantic import SecretStr

from backend.api.parties import PartyRegistry
from backend.core.errors import ConfigurationError
from backend.core.keys import (
    DEV_ORACLE_PRIVATE_KEY,
    DEV_PSEUDONYM_KEY,
    DEV_ROLES,
    PUBLIC_PRIVATE_KEYS,
    WELL_KNOWN_MNEMONIC,
    WELL_KNOWN_PRIVATE_KEYS,
    dev_private_key,
    is_public_key,
    normalize_private_key,
)
from backend.core.settings import Settings

OWN_KEY = "0x" + "12" * 32
ANVIL_0 = WELL_KNOWN_PRIVATE_KEYS[0]


def spellings(key: str) -> list[str]:
    """A key as people paste it: with and without 0x, upper case, 0X, padded with spaces."""
    raw = key.removeprefix("0x")
    return [key, raw, raw.upper(), "0x" + raw.upper(), "0X" + raw, f"  {key}\n"]


def test_the_well_known_keys_are_anvils_and_hardhats_default_mnemonic() -> None:
    Account.enable_unaudited_hdwallet_features()
    derived = tuple(
        "0x"
        + Account.from_mnemonic(WELL_KNOWN_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex()
        for i in range(10)
    )
    assert derived == WELL_KNOWN_PRIVATE_KEYS


def test_every_dev_key_is_public() -> None:
    every = {
        DEV_ORACLE_PRIVATE_KEY,
        *(dev_private_key(r) for r in DEV_ROLES),
        *WELL_KNOWN_PRIVATE_KEYS,
    }
    assert {normalize_private_key(k) for k in every} == PUBLIC_PRIVATE_KEYS
    assert len(PUBLIC_PRIVATE_KEYS) == 1 + len(DEV_ROLES) + 10
    assert not is_public_key(OWN_KEY)


@pytest.mark.parametrize("key", spellings(DEV_ORACLE_PRIVATE_KEY) + spellings(ANVIL_0))
def test_public_keys_are_recognised_in_any_spelling(key: str) -> None:
    assert is_public_key(key)


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("setting", ["ORACLE_PRIVATE_KEY", "DEPLOYER_PRIVATE_KEY"])
@pytest.mark.parametrize(
    "key",
    [
        *spellings(DEV_ORACLE_PRIVATE_KEY)[1:4],
        dev_private_key("admin"),
        ANVIL_0,
        WELL_KNOWN_PRIVATE_KEYS[9].upper(),
    ],
)
def test_chain_keys_outside_dev_mode_refuse_public_keys_naming_the_setting(
    setting: str, key: str
) -> None:
    others = {"ORACLE_PRIVATE_KEY": SecretStr(OWN_KEY)}
    others[setting] = SecretStr(key)
    s = _settings(DEV_MODE=False, **others)
    with pytest.raises(ConfigurationError, match=f"^{setting} is a publicly known private key"):
        s.check_secrets()
    _settings(DEV_MODE=True, **others).check_secrets()  # dev mode: dev keys are the point


def test_own_keys_pass_outside_dev_mode() -> None:
    _settings(
        DEV_MODE=False,
        ORACLE_PRIVATE_KEY=SecretStr(OWN_KEY),
        DEPLOYER_PRIVATE_KEY=SecretStr("0x" + "34" * 32),
    ).check_secrets()
    with pytest.raises(ConfigurationError, match="^ORACLE_PRIVATE_KEY"):
        _settings(DEV_MODE=False).check_secrets()  # the default is the dev oracle key


@pytest.mark.parametrize(
    "key", [DEV_ORACLE_PRIVATE_KEY[2:].upper(), dev_private_key("buyer"), ANVIL_0, f" {ANVIL_0} "]
)
def test_api_keys_refuse_public_private_keys_naming_the_entry(key: str) -> None:
    parties = [
        {"name": "acme", "key": "k3y-" + "Zq9" * 10, "roles": ["buyer"], "private_key": OWN_KEY},
        {"name": "ops", "key": "k3y-" + "Xw7" * 10, "roles": ["buyer"], "private_key": key},
    ]
    s = _settings(DEV_MODE=False, API_KEYS=SecretStr(json.dumps(parties)))
    with pytest.raises(
        ConfigurationError,
        match=r"^API_KEYS\[1\]\.private_key \(party 'ops'\) is a publicly known private key",
    ):
        PartyRegistry.from_settings(s)
    dev = PartyRegistry.from_settings(
        _settings(DEV_MODE=True, API_KEYS=SecretStr(json.dumps(parties)))
    )
    assert dev.by_name("ops").address == Account.from_key(key.strip()).address


@pytest.mark.parametrize("key", [DEV_PSEUDONYM_KEY, "s" * 31])
def test_the_pseudonym_key_outside_dev_mode_is_a_secret_of_ones_own(key: str) -> None:
    with pytest.raises(ConfigurationError, match="^SHARING_PSEUDONYM_KEY is the public dev key"):
        _settings(DEV_MODE=False, SHARING_PSEUDONYM_KEY=SecretStr(key)).check_pseudonym_key()
    _settings(DEV_MODE=True, SHARING_PSEUDONYM_KEY=SecretStr(key)).check_pseudonym_key()
    _settings(DEV_MODE=False, SHARING_PSEUDONYM_KEY=SecretStr("s" * 32)).check_pseudonym_key()
