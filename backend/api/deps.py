"""FastAPI dependencies: the context, a database session, the calling party, and the
order-id path parameter with the lookup of an order the caller may see.

Route modules share what they have in common through this module and never import
each other (an import-linter contract, docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import Row
from sqlalchemy.orm import Session

from backend.api import queries
from backend.api.context import ApiContext
from backend.api.errors import ApiError, not_found
from backend.api.parties import Party
from backend.api.schemas import MAX_JSON_INT, Digits

API_KEY_HEADER = "X-API-Key"

_R = TypeVar("_R")

_api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The party's API key (docs/api.md, 'Auth'); dev mode: `dev-buyer` …",
)


# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the
# thread pool, a hop that costs more than these functions themselves. None of them
# blocks: a Session opens its connection only at the first query (in the route).


async def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_session(ctx: ContextDep) -> AsyncIterator[Session]:
    with ctx.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_party(ctx: ContextDep, key: Annotated[str | None, Security(_api_key)]) -> Party:
    if not key:
        raise ApiError(
            401,
            "unauthorized",
            f"missing {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "APIKey"},
        )
    party = ctx.parties.lookup(key)
    if party is None:
        raise ApiError(
            401, "unauthorized", "unknown API key", headers={"WWW-Authenticate": "APIKey"}
        )
    return party


CurrentParty = Annotated[Party, Depends(get_party)]


async def get_writer(party: CurrentParty) -> Party:
    """The calling party, when it may send transactions (auditors may not)."""
    if party.read_only:
        raise ApiError(403, "read_only", f"party {party.name!r} is an auditor: read-only")
    return party


WritingParty = Annotated[Party, Depends(get_writer)]


OrderIdPath = Annotated[
    int, Path(ge=1, le=MAX_JSON_INT, description="The on-chain order id (decimal digits)."), Digits
]


def visible_order(session: Session, party: Party, order_id: int) -> queries.OrderRecord:
    """The order ``order_id`` if ``party`` may see it; 404 if it is missing or not theirs
    (the same answer, so an order's existence does not leak)."""
    return _found(queries.get_order(session, party, order_id), order_id)


def visible_owners(session: Session, party: Party, order_id: int) -> Row[Any]:
    """The id, buyer and supplier of order ``order_id`` if ``party`` may see it; 404 as
    :func:`visible_order` (for routes that need no more of the order)."""
    return _found(queries.order_owners(session, party, order_id), order_id)


def _found(row: _R | None, order_id: int) -> _R:
    if row is None:
        raise not_found(f"order {order_id}")
    return row
