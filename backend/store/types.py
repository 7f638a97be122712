"""Column types shared by the models and the migrations."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Integer, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

UINT256_MAX = 2**256 - 1
_DIGITS = 78  # len(str(2**256 - 1))

#: A 64-bit primary key that still autoincrements on SQLite (which only does so
#: for a column declared exactly ``INTEGER PRIMARY KEY``).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Uint256(TypeDecorator[int]):
    """A Solidity ``uint256`` (money) as a Python ``int``.

    PostgreSQL stores it as ``NUMERIC(78, 0)``, exact and comparable. SQLite has no
    exact type that wide (its NUMERIC affinity turns big values into floats), so
    there it is a 78-digit zero-padded decimal string: exact, and ordering and
    equality of the strings agree with the numbers'.
    """

    impl = String(_DIGITS)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(_DIGITS, 0))
        return dialect.type_descriptor(String(_DIGITS))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if type(value) is not int or not 0 <= value <= UINT256_MAX:
            raise ValueError(f"{value!r} is not a uint256")
        if dialect.name == "postgresql":
            return Decimal(value)
        return f"{value:0{_DIGITS}d}"

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value)
