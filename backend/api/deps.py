"""FastAPI dependencies: the context, a database session, the calling party."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from backend.api.context import ApiContext
from backend.api.errors import ApiError
from backend.api.parties import Party

API_KEY_HEADER = "X-API-Key"

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
    session = ctx.session_factory()
    try:
        yield session
    finally:
        session.close()


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
