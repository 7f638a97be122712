"""The contracts' side of the domain records, read from the compiled artifacts."""

from __future__ import annotations

import re
from typing import Any

from backend.chain.artifacts import CORE_CONTRACTS, REPO_ROOT, STABLECOIN, load_artifact

#: The contracts whose errors the product can meet (the dev stablecoin included).
CONTRACTS = (*CORE_CONTRACTS, STABLECOIN)


def _walk(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in params:
        out.append(p)
        out += _walk(p.get("components", []))
    return out


def struct(contract: str, internal_type: str) -> list[tuple[str, str, str]]:
    """(name, type, internalType) of each member of the struct ``internal_type``
    (``struct IQualityVerification.Reading``) as the contract's ABI declares it."""
    for entry in load_artifact(contract).abi:
        for p in _walk(entry.get("inputs", []) + entry.get("outputs", [])):
            if p.get("internalType") == internal_type:
                return [(c["name"], c["type"], c["internalType"]) for c in p["components"]]
    raise AssertionError(f"{contract}'s ABI has no {internal_type}")


def error_names(contract: str) -> set[str]:
    return {e["name"] for e in load_artifact(contract).abi_entries("error")}


def solidity_enum(interface: str, name: str) -> list[str]:
    """The members of ``enum name`` in contracts/interfaces/``interface``.sol (the ABI
    encodes enums as uint8 and does not carry their members)."""
    source = (REPO_ROOT / "contracts" / "interfaces" / f"{interface}.sol").read_text()
    m = re.search(r"enum\s+" + name + r"\s*\{([^}]*)\}", source)
    assert m is not None, f"{interface}.sol declares no enum {name}"
    return [member.strip() for member in m.group(1).split(",") if member.strip()]
