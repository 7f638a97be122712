"""Field metadata for the domain records: the Solidity type of each integer or address.

A record declares each field once, as a dataclass field carrying its Solidity type
(``field(metadata=solidity("uint32"))``). Everything else is read from there: the
camelCase name the contracts and the wire use, the integer range, the EIP-712 type
list. tests/domain checks the names and types against the compiled ABI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_SOLIDITY = "solidity"


def solidity(sol_type: str, *, lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
    """Field metadata: the field's Solidity type, optionally with a narrower range."""
    return {_SOLIDITY: (sol_type, lo, hi)}


def camel(attr: str) -> str:
    """The Solidity (and wire) name of a snake_case attribute: ``latitude_e6`` → ``latitudeE6``."""
    head, *rest = attr.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def int_range(sol_type: str) -> tuple[int, int]:
    """The values a Solidity integer type holds (``uint32`` → (0, 2**32 - 1))."""
    if sol_type.startswith("uint"):
        return 0, 2 ** int(sol_type[4:] or 256) - 1
    if sol_type.startswith("int"):
        bits = int(sol_type[3:] or 256)
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    raise ValueError(f"{sol_type} is not a Solidity integer type")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a record that mirrors a Solidity struct."""

    #: The Python attribute (also the database column and the API field).
    attr: str
    #: The name in the Solidity struct, the EIP-712 type and the wire format.
    wire: str
    #: The Solidity type (``uint32``, ``int32``, ``address`` ...).
    sol_type: str
    #: For integers: the accepted range (the type's, or narrower where declared).
    lo: int | None
    hi: int | None


def field_specs(record: type[Any]) -> tuple[FieldSpec, ...]:
    """The fields of a dataclass that carry :func:`solidity` metadata, in declaration order."""
    out = []
    for f in dataclasses.fields(record):
        if _SOLIDITY not in f.metadata:
            continue
        sol_type, lo, hi = f.metadata[_SOLIDITY]
        if sol_type.startswith(("int", "uint")):
            tlo, thi = int_range(sol_type)
            lo, hi = tlo if lo is None else lo, thi if hi is None else hi
        out.append(FieldSpec(f.name, camel(f.name), sol_type, lo, hi))
    return tuple(out)
