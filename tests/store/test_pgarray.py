"""Array literals (backend/store/pgarray.py) read back by a real PostgreSQL as the
values they were made from: awkward strings, NULLs, extreme floats, bytes."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Engine, Float, LargeBinary, String, bindparam, select
from sqlalchemy.types import TypeEngine

from backend.store.pgarray import ArrayLiteral, array_literal
from testkit.databases import schema_engine

pytestmark = pytest.mark.integration

AWKWARD = [
    "", " ", "NULL", "null", "a,b", "{x}", '"quoted"', "back\\slash", "\\", '"', "tab\tnew\nline",
    "ünïcødé €", "0x5FbDB2315678afecb367f032d93F642f64180aa3",
]  # fmt: skip


@pytest.fixture(scope="module")
def pg(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The session's PostgreSQL schema (no table is read: only the literals)."""
    eng = schema_engine(request.getfixturevalue("postgres_migrated_schema"))
    try:
        yield eng
    finally:
        eng.dispose()


def read_back(engine: Engine, values: list[Any], item: TypeEngine[Any]) -> list[Any]:
    q = select(bindparam("v", type_=ArrayLiteral(item)))
    with engine.connect() as conn:
        got = conn.execute(q, {"v": values}).scalar_one()
    return list(got)


def same(a: list[Any], b: list[Any]) -> bool:
    def norm(x: Any) -> Any:
        if isinstance(x, float) and math.isnan(x):
            return "nan"
        if isinstance(x, memoryview):
            return bytes(x)
        return x

    return [norm(x) for x in a] == [norm(x) for x in b]


@pytest.mark.parametrize(
    ("values", "item"),
    [
        ([1, -2, 0, 2**63 - 1, -(2**63)], BigInteger()),
        ([1, None, 3], BigInteger()),
        (AWKWARD, String()),
        ([x for x in AWKWARD if '"' not in x and "\\" not in x], String()),  # one join
        ([*AWKWARD, None], String()),
        ([0.1, -0.0, 1e300, -1e-300, math.inf, -math.inf, math.nan, 1.0], Float()),
        ([b"", os.urandom(65), b"\x00\\\"'{},", None], LargeBinary()),
        ([os.urandom(32) for _ in range(50)], LargeBinary()),
        ([], BigInteger()),
    ],
    ids=[
        "ints",
        "ints-null",
        "strings",
        "strings-unescaped",
        "strings-null",
        "floats",
        "bytes-null",
        "bytes",
        "empty",
    ],
)
def test_a_literal_reads_back_as_its_values(pg: Engine, values: list[Any], item: Any) -> None:
    assert same(read_back(pg, values, item), values)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.text()), max_size=20))
def test_any_strings_read_back(pg: Engine, values: list[str | None]) -> None:
    values = [v.replace("\x00", "") if v is not None else None for v in values]  # no NUL in PG text
    assert read_back(pg, values, String()) == values


def test_a_value_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="bool"):
        array_literal([True, 1])
    with pytest.raises(TypeError, match="dict"):
        array_literal([{}])
