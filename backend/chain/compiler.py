"""Compile the Solidity sources into the committed artifacts in ``contracts/build``.

The compile is pinned and reproducible: solc :data:`SOLC_VERSION`, optimizer on with
200 runs, EVM version ``cancun``. Every source, OpenZeppelin's included, is handed to
the compiler *by content* under a relative source unit name
(``contracts/PurchaseOrders.sol``, ``@openzeppelin/contracts/access/AccessControl.sol``),
so the compiler never reads the file system: the output (metadata hash included)
is the same whichever compiler binary is used and wherever the checkout lives. CI
recompiles in a fresh clone with ``--check`` and fails on any difference.

The compiler is found in this order:

1. ``SOLC_BINARY`` (a native solc of exactly :data:`SOLC_VERSION`);
2. ``solc`` on ``PATH``, if its version matches;
3. py-solc-x's copy of that version, installed by py-solc-x if missing and the
   download host answers within a few seconds (skipped offline, or with
   ``TRUSTSHIP_SOLC_NO_DOWNLOAD=1``);
4. ``contracts/node_modules/.bin/solcjs`` from the npm package ``solc`` (``cd contracts
   && npm ci``), which prints some non-JSON lines before its JSON output.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.core.errors import CompilerNotFoundError, TrustShipError
from backend.core.settings import Settings, get_settings

logger = logging.getLogger(__name__)

SOLC_VERSION = "0.8.28"
EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 200

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
BUILD_DIR = CONTRACTS_DIR / "build"
NODE_MODULES = CONTRACTS_DIR / "node_modules"
SOLCJS = NODE_MODULES / ".bin" / "solcjs"

#: Directories (relative to the repository root) whose ``*.sol`` files are compiled and
#: get an artifact per contract. Imported files (interfaces, OpenZeppelin) are compiled
#: as dependencies but get no artifact.
SOURCE_DIRS: tuple[str, ...] = ("contracts", "contracts/test", "bench/contracts")

#: Import prefixes resolved from ``contracts/node_modules`` (the source unit name keeps
#: the prefix, as Hardhat and Foundry do).
NODE_PREFIXES: tuple[str, ...] = ("@openzeppelin/",)

SETTINGS: dict[str, Any] = {
    "evmVersion": EVM_VERSION,
    "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}
    },
}

_DOWNLOAD_HOST = ("binaries.soliditylang.org", 443)
_IMPORT_RE = re.compile(r"""\bimport\s+(?:[^;"']*?\s+from\s+)?["']([^"']+)["']\s*;""", re.S)
_COMMENT_RE = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_VERSION_RE = re.compile(r"(\d+\.\d+\.\d+)")


class ContractCompilationError(TrustShipError):
    """Raised when solc reports errors (the message lists them) or returns no usable output."""


@dataclass(frozen=True)
class Compiler:
    """A way to run solc --standard-json: the command, its working directory and a label."""

    command: tuple[str, ...]
    cwd: Path
    label: str

    def run(self, standard_input: dict[str, Any]) -> dict[str, Any]:
        # Input and output go through regular files, not pipes: solcjs reads stdin with
        # readFileSync (EAGAIN on a pipe that is not ready yet) and exits before a large
        # output has drained into a pipe (the JSON arrives truncated).
        with (
            tempfile.TemporaryFile("w+", encoding="utf-8") as stdin,
            tempfile.TemporaryFile("w+", encoding="utf-8") as stdout,
        ):
            json.dump(standard_input, stdin)
            stdin.seek(0)
            proc = subprocess.run(
                self.command,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
                cwd=self.cwd,
                timeout=600,
                check=False,
            )
            stdout.seek(0)
            text = stdout.read()
        # solcjs prints lines such as ">>> Cannot retry compilation with SMT ..." first.
        start = text.find("{")
        if start < 0:
            raise ContractCompilationError(
                f"{self.label} returned no JSON (exit {proc.returncode}): "
                f"{(proc.stderr or text).strip()[:2000]}"
            )
        try:
            output: dict[str, Any] = json.loads(text[start:])
        except json.JSONDecodeError as exc:
            raise ContractCompilationError(f"{self.label} returned invalid JSON: {exc}") from None
        return output


# ---------------------------------------------------------------------------- sources


def _source_path(unit: str) -> Path:
    if unit.startswith(NODE_PREFIXES):
        return NODE_MODULES / unit
    return REPO_ROOT / unit


def _resolve_import(importer: str, target: str) -> str:
    if target.startswith(("./", "../")):
        return posixpath.normpath(posixpath.join(posixpath.dirname(importer), target))
    return target


def root_sources() -> list[str]:
    """Source unit names of the files that get artifacts, sorted."""
    units: list[str] = []
    for directory in SOURCE_DIRS:
        units.extend(
            f"{directory}/{path.name}" for path in sorted((REPO_ROOT / directory).glob("*.sol"))
        )
    return sorted(units)


def collect_sources(roots: list[str]) -> dict[str, str]:
    """Every source unit reachable from ``roots`` by imports, name -> content."""
    sources: dict[str, str] = {}
    pending = list(roots)
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        path = _source_path(unit)
        try:
            content = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            hint = " (run `cd contracts && npm ci`)" if unit.startswith(NODE_PREFIXES) else ""
            raise ContractCompilationError(f"source {unit} not found at {path}{hint}") from None
        sources[unit] = content
        for target in _IMPORT_RE.findall(_COMMENT_RE.sub("", content)):
            pending.append(_resolve_import(unit, target))
    return dict(sorted(sources.items()))


def standard_input(sources: dict[str, str]) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {name: {"content": content} for name, content in sources.items()},
        "settings": SETTINGS,
    }


# ---------------------------------------------------------------------------- compilers


def _version_of(command: list[str]) -> str | None:
    try:
        proc = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION_RE.search(proc.stdout)
    return match.group(1) if match else None


def _host_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(_DOWNLOAD_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _solcx_executable(no_download: bool) -> str | None:
    try:
        from packaging.version import Version
        from solcx.install import get_executable, get_installed_solc_versions, install_solc
    except ImportError:
        return None
    wanted = Version(SOLC_VERSION)
    try:
        if wanted in get_installed_solc_versions():
            return str(get_executable(wanted))
    except Exception as exc:  # py-solc-x raises its own exception types
        logger.debug("py-solc-x lookup failed: %s", exc)
    if no_download or not _host_reachable():
        return None
    # install_solc has no timeout of its own: run it in a daemon thread and give up on it.
    result: list[str] = []

    def install() -> None:
        try:
            install_solc(wanted)
            result.append(str(get_executable(wanted)))
        except Exception as exc:
            logger.info("py-solc-x could not install solc %s: %s", SOLC_VERSION, exc)

    worker = threading.Thread(target=install, daemon=True)
    worker.start()
    worker.join(timeout=120)
    return result[0] if result else None


def find_compiler(settings: Settings | None = None) -> Compiler:
    """The first available solc of :data:`SOLC_VERSION` (see the module docstring);
    ``SOLC_BINARY`` and ``TRUSTSHIP_SOLC_NO_DOWNLOAD`` come from ``settings``."""
    settings = settings or get_settings()
    env_binary = settings.SOLC_BINARY
    if env_binary:
        version = _version_of([env_binary])
        if version != SOLC_VERSION:
            raise CompilerNotFoundError(
                f"SOLC_BINARY={env_binary} is solc {version or '(not runnable)'}, "
                f"but the artifacts are pinned to {SOLC_VERSION}"
            )
        return Compiler(
            (env_binary, "--standard-json"), REPO_ROOT, f"solc {SOLC_VERSION} ($SOLC_BINARY)"
        )

    on_path = shutil.which("solc")
    if on_path and _version_of([on_path]) == SOLC_VERSION:
        return Compiler((on_path, "--standard-json"), REPO_ROOT, f"solc {SOLC_VERSION} (PATH)")

    solcx_binary = _solcx_executable(settings.TRUSTSHIP_SOLC_NO_DOWNLOAD)
    if solcx_binary:
        return Compiler(
            (solcx_binary, "--standard-json"), REPO_ROOT, f"solc {SOLC_VERSION} (py-solc-x)"
        )

    if SOLCJS.exists() and _version_of([str(SOLCJS)]) == SOLC_VERSION:
        return Compiler(
            (str(SOLCJS), "--standard-json", "--base-path", ".", "--include-path", "node_modules"),
            CONTRACTS_DIR,
            f"solcjs {SOLC_VERSION} (contracts/node_modules)",
        )

    raise CompilerNotFoundError(
        f"no solc {SOLC_VERSION} found: run `cd contracts && npm ci` (installs solcjs "
        f"{SOLC_VERSION}), or set SOLC_BINARY to a native solc {SOLC_VERSION}"
    )


# ---------------------------------------------------------------------------- artifacts


def compile_artifacts(compiler: Compiler | None = None) -> dict[str, str]:
    """Compile every root source; returns ``{file name: artifact JSON text}``."""
    compiler = compiler or find_compiler()
    roots = root_sources()
    output = compiler.run(standard_input(collect_sources(roots)))

    problems = output.get("errors", [])
    errors = [p for p in problems if p.get("severity") == "error"]
    if errors:
        details = "\n".join(p.get("formattedMessage", p.get("message", "")) for p in errors)
        raise ContractCompilationError(f"solc reported {len(errors)} error(s):\n{details}")
    for warning in problems:
        where = warning.get("sourceLocation", {}).get("file", "")
        if where.startswith(NODE_PREFIXES):
            continue  # e.g. OpenZeppelin's note on transient storage: not ours to fix
        logger.warning("solc: %s", warning.get("formattedMessage", warning.get("message")))

    artifacts: dict[str, str] = {}
    for source in roots:
        for name, contract in sorted(output.get("contracts", {}).get(source, {}).items()):
            bytecode = contract["evm"]["bytecode"]["object"]
            if not bytecode:
                continue  # interfaces and abstract contracts
            metadata = json.loads(contract["metadata"])
            artifact = {
                "contractName": name,
                "sourceName": source,
                "abi": contract["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
                "metadata": contract["metadata"],
                "compiler": {
                    "version": metadata["compiler"]["version"],
                    "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
                },
            }
            file_name = f"{name}.json"
            if file_name in artifacts:
                raise ContractCompilationError(f"two contracts are named {name}")
            artifacts[file_name] = json.dumps(artifact, indent=2, sort_keys=True) + "\n"
    if not artifacts:
        raise ContractCompilationError("solc produced no contracts")
    return artifacts


def write_artifacts(artifacts: dict[str, str], build_dir: Path) -> None:
    """Write the artifacts into ``build_dir``, removing stale ``*.json`` files there."""
    build_dir.mkdir(parents=True, exist_ok=True)
    for stale in build_dir.glob("*.json"):
        if stale.name not in artifacts:
            stale.unlink()
    for file_name, text in artifacts.items():
        (build_dir / file_name).write_text(text, encoding="utf-8")


def diff_artifacts(artifacts: dict[str, str], build_dir: Path) -> list[str]:
    """File names under ``build_dir`` that are missing, stale or different."""
    present = {p.name for p in build_dir.glob("*.json")} if build_dir.is_dir() else set()
    differing = [
        name
        for name, text in artifacts.items()
        if name not in present or (build_dir / name).read_text(encoding="utf-8") != text
    ]
    differing.extend(name for name in present if name not in artifacts)
    return sorted(differing)


def main(check: bool = False, build_dir: Path = BUILD_DIR) -> int:
    """Recompile ``contracts/build`` (``trustship compile``); returns the exit code.

    With ``check=True`` nothing is written: the sources are compiled into a temporary
    directory and compared with ``build_dir``; the exit code is 1 when any artifact is
    missing, stale or different (CI runs this).
    """
    try:
        compiler = find_compiler()
        started = time.monotonic()
        print(f"Compiling {len(root_sources())} source files with {compiler.label} ...", flush=True)
        artifacts = compile_artifacts(compiler)
    except TrustShipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started

    if check:
        with tempfile.TemporaryDirectory(prefix="trustship-build-") as tmp:
            write_artifacts(artifacts, Path(tmp))
            fresh = {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).glob("*.json")}
        differing = diff_artifacts(fresh, build_dir)
        if differing:
            print(
                f"contracts/build is out of date ({len(differing)} file(s) differ; "
                "run `trustship compile` or scripts/compile_contracts.py):",
                file=sys.stderr,
            )
            for name in differing:
                print(f"  {name}", file=sys.stderr)
            return 1
        print(f"OK: {len(artifacts)} artifacts match contracts/build ({elapsed:.1f} s)")
        return 0

    write_artifacts(artifacts, build_dir)
    print(f"Wrote {len(artifacts)} artifacts to {_display(build_dir)} ({elapsed:.1f} s)")
    return 0


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
