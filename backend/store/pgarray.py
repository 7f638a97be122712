"""PostgreSQL arrays sent as literals, for the bulk statements over ``unnest``.

The ingest's statements pass one array per column (``unnest``: one statement for a
whole batch). psycopg adapts a Python list to an array one element at a time, in
Python; for a batch of 500 readings (13 arrays) that took about 5 ms of CPU per
insert on this project's machine, more than the server spent on it. Built here with
``str.join`` the same arrays cost about 0.7 ms, and the server parses either form
the same way. :class:`ArrayLiteral` is the bound parameter's type: a Python list in,
``CAST(<literal> AS <type>[])`` on the wire.

Elements are ints, floats, str, bytes (``bytea``) or None (``NULL``); one Python type
per array, as its column's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, cast
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine


def _element(value: Any) -> str:
    """One element of an array literal, quoted (any value but None)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"no array literal for a {type(value).__name__} ({value!r})")


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def array_literal(values: Sequence[Any]) -> str:
    """The PostgreSQL array literal of ``values`` (``{1,2,NULL}``).

    The common cases take one ``str.join``: ints, bytes and str without a quote or
    backslash; anything else is quoted element by element."""
    if not values:
        return "{}"
    if None in values:
        return "{" + ",".join("NULL" if v is None else _element(v) for v in values) + "}"
    first = type(values[0])
    if all(type(v) is first for v in values):
        if first is int:
            return "{" + ",".join(map(str, values)) + "}"
        if first is bytes:
            return '{"\\\\x' + '","\\\\x'.join(v.hex() for v in values) + '"}'
        if first is str:
            blob = "".join(values)
            if '"' not in blob and "\\" not in blob:
                return '{"' + '","'.join(values) + '"}'
    return "{" + ",".join(_element(v) for v in values) + "}"


class ArrayLiteral(TypeDecorator[list[Any]]):
    """A bound list, sent to PostgreSQL as an array literal cast to ``item[]``.

    ``bindparam("ids", type_=ArrayLiteral(BigInteger()))`` renders as
    ``CAST(%(ids)s AS BIGINT[])`` and takes a Python list."""

    impl = String
    cache_ok = True

    def __init__(self, item: TypeEngine[Any]) -> None:
        super().__init__()
        self.item = item

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        return cast(bindvalue, postgresql.ARRAY(self.item))

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else array_literal(value)
