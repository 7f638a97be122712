"""What the runtime packages import, `pip install .` installs.

The image (deploy/Dockerfile) installs the project without its ``dev`` extra, so a
module imported by backend/, iot_simulator/ or trustship/ that only a dev tool
pulls in works in the test suite and fails in the container: `docker compose run
simulator` once died with ``No module named 'httpx'`` (docs/compose.md). This
checks every third-party import of those packages against the runtime
dependencies of pyproject.toml and what they install in turn.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("backend", "iot_simulator", "trustship")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(package: Path) -> Iterator[tuple[str, Path]]:
    """Top-level names of the absolute imports in ``package`` (lazy imports included)."""
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name.split(".")[0], path
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield node.module.split(".")[0], path


def runtime_distributions() -> set[str]:
    """The runtime dependencies and, recursively, what they require (extras honoured)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    extras_of: dict[str, set[str]] = {}
    while todo:
        req = todo.pop()
        name = _normalize(req.name)
        wanted = set(req.extras)
        seen = extras_of.get(name)
        if seen is not None and wanted <= seen:
            continue
        extras_of[name] = (seen or set()) | wanted
        for text in md.requires(req.name) or []:
            sub = Requirement(text)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in extras_of[name] | {""}
            ):
                todo.append(sub)
    return set(extras_of)


def test_every_runtime_import_is_a_runtime_dependency() -> None:
    installed = runtime_distributions()
    providers = md.packages_distributions()
    missing: dict[str, list[str]] = {}
    for package in RUNTIME_PACKAGES:
        for module, path in imported_modules(REPO / package):
            if module in sys.stdlib_module_names or module in RUNTIME_PACKAGES:
                continue
            dists = {_normalize(d) for d in providers.get(module, [])}
            if not dists & installed:
                where = str(path.relative_to(REPO))
                missing.setdefault(module, [])
                if where not in missing[module]:
                    missing[module].append(where)
    assert not missing, (
        "imported at run time but not installed by `pip install .` "
        f"(add them to [project].dependencies): {missing}"
    )


def test_the_check_sees_a_dev_only_import() -> None:
    # pytest is installed here (the dev extra) but not a runtime dependency
    assert "pytest" not in runtime_distributions()
    assert "web3" in runtime_distributions() and "eth-tester" in runtime_distributions()
