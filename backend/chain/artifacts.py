"""Compiled contract artifacts: ``contracts/build/<Name>.json``.

The artifacts are committed; the runtime and the tests only load them and never
run the compiler (``trustship compile`` regenerates them). A missing or broken
artifact raises :class:`~backend.core.errors.ArtifactError` saying what to do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from backend.core.errors import ArtifactError
from backend.core.settings import REPO_ROOT

logger = logging.getLogger(__name__)

BUILD_DIR = REPO_ROOT / "contracts" / "build"

#: The contracts the product deploys, in deployment order.
CORE_CONTRACTS = ("Escrow", "QualityVerification", "PurchaseOrders")
#: The ERC-20 deployed in dev mode so token orders can be tried.
STABLECOIN = "TestStablecoin"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: its ABI and creation bytecode."""

    name: str
    abi: list[dict[str, Any]] = field(repr=False)
    bytecode: bytes = field(repr=False)
    deployed_bytecode: bytes = field(repr=False, default=b"")
    path: Path | None = None

    def abi_entries(self, kind: str) -> list[dict[str, Any]]:
        """The ABI entries of one kind (``function``, ``event``, ``error``, ...)."""
        return [e for e in self.abi if e.get("type") == kind]

    @property
    def constructor_inputs(self) -> list[dict[str, Any]]:
        for entry in self.abi:
            if entry.get("type") == "constructor":
                return list(entry.get("inputs", []))
        return []


def _hex_field(raw: Any, name: str, key: str, path: Path) -> bytes:
    if isinstance(raw, dict):  # solc standard-JSON shape {"object": "..."}
        raw = raw.get("object", "")
    if not isinstance(raw, str):
        raise ArtifactError(f"{path}: `{key}` of {name} is not a hex string")
    try:
        return bytes.fromhex(raw.removeprefix("0x"))
    except ValueError:
        raise ArtifactError(
            f"{path}: `{key}` of {name} is not valid hex (unlinked libraries?)"
        ) from None


def _remedy() -> str:
    return (
        "The artifacts in contracts/build are committed with the sources: pull them, or "
        "regenerate them with `trustship compile` (needs `cd contracts && npm ci`)."
    )


@lru_cache(maxsize=32)
def _load(name: str, build_dir: Path) -> Artifact:
    path = build_dir / f"{name}.json"
    if not path.is_file():
        raise ArtifactError(f"missing contract artifact {path}. {_remedy()}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read contract artifact {path}: {exc}. {_remedy()}") from None
    if not isinstance(data, dict) or not isinstance(data.get("abi"), list):
        raise ArtifactError(f"{path} has no `abi` list. {_remedy()}")
    if "bytecode" not in data:
        raise ArtifactError(f"{path} has no `bytecode`. {_remedy()}")
    bytecode = _hex_field(data["bytecode"], name, "bytecode", path)
    deployed = _hex_field(data.get("deployedBytecode", ""), name, "deployedBytecode", path)
    return Artifact(
        name=name, abi=data["abi"], bytecode=bytecode, deployed_bytecode=deployed, path=path
    )


def load_artifact(name: str, build_dir: Path | None = None) -> Artifact:
    """Load ``<build_dir>/<name>.json`` (default ``contracts/build``)."""
    return _load(name, (build_dir or BUILD_DIR).resolve())


def has_artifact(name: str, build_dir: Path | None = None) -> bool:
    return ((build_dir or BUILD_DIR) / f"{name}.json").is_file()


def available_artifacts(build_dir: Path | None = None) -> list[str]:
    """Names of all artifacts in the build directory (sorted)."""
    directory = build_dir or BUILD_DIR
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.json") if not p.name.startswith("."))


def all_abis(build_dir: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every artifact's ABI by contract name (unreadable files are skipped with a warning)."""
    abis: dict[str, list[dict[str, Any]]] = {}
    for name in available_artifacts(build_dir):
        try:
            abis[name] = load_artifact(name, build_dir).abi
        except ArtifactError as exc:  # e.g. a non-contract JSON file in the build dir
            logger.debug("skipping artifact %s: %s", name, exc)
    return abis
