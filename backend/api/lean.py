"""Lean JSON answers for the hot read routes (a page of orders, of readings, an order).

FastAPI validates a route's return value against its response model and serialises
it in pydantic-core; for a page of 50 orders that costs about ten times what orjson
takes to write the same plain data. These routes build their data to the model's
shape themselves (backend.api.convert: ints, strings, lists, dicts) and answer with
:class:`LeanJSON`, which FastAPI sends as it is; the response model still documents
the answer, and tests validate each lean route's answers against it
(tests/api/test_reads.py). The data rides along, so the sharing filter
(backend.api.sharing) reads it without parsing the body again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.responses import Response

#: An order's buyer and supplier by order id, as the route read them.
Owners = Mapping[int, tuple[str, str]]


def owners_of_rows(rows: Iterable[Any]) -> dict[int, tuple[str, str]]:
    """The buyer and supplier of each order row (Core rows of the orders table)."""
    return {int(r.id): (str(r.buyer), str(r.supplier)) for r in rows}


def owners_of_orders(orders: Iterable[Mapping[str, Any]]) -> dict[int, tuple[str, str]]:
    """The buyer and supplier of each order of :class:`OrderPublic` data (backend.api.
    convert); a tenth of what reading them off the rows costs (a Core row's attribute
    access is slow)."""
    return {o["id"]: (o["buyer"], o["supplier"]) for o in orders}


class LeanJSON(Response):
    """A JSON answer of plain data, written by orjson (the json module for an integer
    beyond 64 bits, which orjson refuses); ``data`` is what it holds. ``owners``: the
    buyer and supplier of orders the route read anyway (its page, the order in its
    path), which the sharing filter then need not look up again."""

    media_type = "application/json"

    def __init__(self, data: Any, *, owners: Owners | None = None, status_code: int = 200) -> None:
        self.data = data
        self.owners: Owners = owners or {}
        super().__init__(status_code=status_code)

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(self.data)
        except TypeError:  # an integer beyond 64 bits
            return json.dumps(
                self.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
