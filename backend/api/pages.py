"""Paged lists of one order's items: the order in the path, checked visible to the
caller, and the ``limit`` / ``offset`` query parameters, declared once.

``order_page(most=..., default=...)`` is the dependency of a route like
``GET /orders/{order_id}/events``; the route reads ``page.order_id``, ``page.limit``
and ``page.offset``. Its parameters, their bounds and their order in the OpenAPI
document are those the routes declared themselves before, and so is the order of
the answers: a missing key is 401, a bad parameter 422 (the order is not looked
up), an order the caller may not see 404.

(No ``from __future__ import annotations`` here: the parameters' bounds are the
factory's arguments, so FastAPI must be given the annotations as objects.)
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from backend.api.deps import CurrentParty, OrderIdPath, SessionDep, visible_owners
from backend.api.parties import Party
from backend.api.schemas import Digits

#: The largest ``offset`` a list takes.
MAX_OFFSET = 10_000_000

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET), Digits]


@dataclass(frozen=True, slots=True)
class OrderPage:
    """One page of an order's items, asked for by ``party`` (who may see the order)."""

    party: Party
    order_id: int
    limit: int
    offset: int


def order_page(*, most: int, default: int) -> Any:
    """The dependency of a page of one order's items: at most ``most`` a page,
    ``default`` without a ``limit``."""

    async def page(
        session: SessionDep,
        party: CurrentParty,
        order_id: OrderIdPath,
        limit: Annotated[int, Query(ge=1, le=most), Digits] = default,
        offset: Offset = 0,
    ) -> OrderPage:
        visible_owners(session, party, order_id)
        return OrderPage(party, order_id, limit, offset)

    return Depends(page)
