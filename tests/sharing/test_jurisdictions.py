"""Jurisdictions configured with the API keys."""

from __future__ import annotations

import json

import pytest

from backend.api.parties import PartyRegistry
from backend.core.errors import ConfigurationError
from backend.core.settings import Settings

ADDRESS = "0x" + "1" * 40


def settings(entries: list[dict[str, object]], **kw: object) -> Settings:
    return Settings(  # type: ignore[call-arg]
        DEV_MODE=True, API_KEYS=json.dumps(entries), _env_file=None, **kw
    )


def entry(name: str, **kw: object) -> dict[str, object]:
    return {"name": name, "key": f"k-{name}", "roles": ["buyer"], "address": ADDRESS, **kw}


def test_a_party_has_its_configured_jurisdiction_or_the_default() -> None:
    reg = PartyRegistry.from_settings(
        settings([entry("a", jurisdiction="SG"), entry("b")], DEFAULT_JURISDICTION="CN")
    )
    assert reg.by_name("a").jurisdiction == "SG"
    assert reg.by_name("b").jurisdiction == "CN"
    assert reg.jurisdiction_of("0x" + "2" * 40) == "CN"  # not a configured party
    assert reg.jurisdictions() == {"SG", "CN"}


@pytest.mark.parametrize("bad", ["us", "USA", "E", "12", ""])
def test_a_malformed_jurisdiction_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ConfigurationError, match=r"API_KEYS\[0\]\.jurisdiction"):
        PartyRegistry.from_settings(settings([entry("a", jurisdiction=bad)]))


def test_the_dev_parties_are_home_but_one_overseas() -> None:
    reg = PartyRegistry.from_settings(
        Settings(DEV_MODE=True, API_KEYS=None, _env_file=None)  # type: ignore[call-arg]
    )
    assert {p.name: p.jurisdiction for p in reg.parties()} == {
        "buyer": "EU",
        "supplier": "EU",
        "arbiter": "EU",
        "auditor": "EU",
        "admin": "EU",
        "stranger": "EU",
        "overseas-auditor": "US",
    }
    assert reg.by_name("overseas-auditor").read_only
