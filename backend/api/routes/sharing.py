"""Grants and the disclosure log (docs/sharing.md).

A party outside an order's data owner's jurisdiction asks for medium data
(``POST /orders/{id}/grants``); an owner of the order's data — its supplier, or its
buyer for the agreement's data — approves with an expiry or denies with a reason, and
may revoke. ``GET /disclosures`` shows the log of every release under a grant to the
owners of the orders concerned and to auditors and admins, with the chain's
verification.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.api import queries
from backend.api.context import ApiContext
from backend.api.deps import ContextDep, CurrentParty, OrderIdPath, SessionDep, WritingParty
from backend.api.errors import READ, ApiError, not_found, responses
from backend.api.pages import Offset
from backend.api.parties import Party
from backend.api.schemas import (
    MAX_JSON_INT,
    ChainHeadPublic,
    Digits,
    DisclosurePublic,
    DisclosuresPublic,
    GrantApproval,
    GrantDenial,
    GrantPublic,
    GrantRequest,
    GrantsPublic,
    VerificationPublic,
)
from backend.api.sharing import PolicyRoute, owners_of
from backend.domain.sensitivity import Owner, Sensitivity
from backend.domain.sharing import Grant
from backend.sharing import disclosures
from backend.sharing import grants as store
from backend.sharing.grants import GrantError
from backend.store.models import ORDERS

router = APIRouter(tags=["sharing"], route_class=PolicyRoute)

GrantIdPath = Annotated[int, Path(ge=1, le=MAX_JSON_INT), Digits]
GRANT_WRITE = (401, 403, 404, 409, 422)

_GRANT_STATUS = {"not_found": 404, "grant_state": 409, "bad_expiry": 422, "not_grantable": 422}


def _error(exc: GrantError) -> ApiError:
    return ApiError(_GRANT_STATUS[exc.code], exc.code, exc.message)


def _public(g: Grant, now: int) -> GrantPublic:
    return GrantPublic.model_validate(
        {**{k: getattr(g, k) for k in Grant.__dataclass_fields__}, "state": g.state_at(now).value}
    )


def _now(ctx: ApiContext) -> int:
    return int(ctx.clock())


@router.post(
    "/orders/{order_id}/grants",
    response_model=GrantPublic,
    status_code=status.HTTP_201_CREATED,
    responses=responses(*GRANT_WRITE),
)
def request_grant(
    body: GrantRequest,
    ctx: ContextDep,
    session: SessionDep,
    party: CurrentParty,
    order_id: OrderIdPath,
) -> GrantPublic:
    """Ask the order's data owner for one class of its data (``medium``). Any party that
    sees the order may ask, auditors included (asking changes nothing on chain); a party
    that needs no grant (the supplier, or a party in its jurisdiction) is told so (409)."""
    if queries.get_order(session, party, order_id) is None:
        raise not_found(f"order {order_id}")
    owners = owners_of(session, ctx.parties, order_id)
    assert owners is not None
    viewer = party.viewer()
    if all(
        a == viewer.address or j == viewer.jurisdiction
        for _r, a, j in owners.owners(Owner.TELEMETRY)
    ):
        raise ApiError(
            409,
            "grant_not_needed",
            f"party {party.name!r} is the supplier or in its jurisdiction "
            f"({owners.supplier_jurisdiction}): the order's data needs no grant",
        )
    try:
        g = store.request(
            session, viewer, order_id, Sensitivity(body.sensitivity), body.reason, _now(ctx)
        )
    except GrantError as exc:
        raise _error(exc) from None
    session.commit()
    return _public(g, _now(ctx))


def _owned_orders(session: Session, party: Party) -> list[int]:
    a = party.address
    return list(
        session.scalars(select(ORDERS.c.id).where(or_(ORDERS.c.buyer == a, ORDERS.c.supplier == a)))
    )


@router.get("/grants", response_model=GrantsPublic, responses=responses(*READ))
def list_grants(
    ctx: ContextDep,
    session: SessionDep,
    party: CurrentParty,
    limit: Annotated[int, Query(ge=1, le=500), Digits] = 100,
    offset: Offset = 0,
) -> GrantsPublic:
    """The grants the caller asked for and those on the orders it owns data of (to
    decide), newest first; auditors and admins see all."""
    owned = None if party.reads_all else _owned_orders(session, party)
    rows, count = store.listing(session, party.address, owned, limit=limit, offset=offset)
    now = _now(ctx)
    return GrantsPublic(data=[_public(g, now) for g in rows], count=count)


def _change(session: Session, ctx: ApiContext, change: Callable[[int], Grant]) -> GrantPublic:
    """Apply a decision at one instant (now), committed, as its answer; a refused one is
    its 4xx."""
    now = _now(ctx)
    try:
        g = change(now)
    except GrantError as exc:
        raise _error(exc) from None
    session.commit()
    return _public(g, now)


def _decider(session: Session, ctx: ApiContext, party: Party, grant_id: int) -> tuple[Grant, str]:
    """The grant and the owner role in which ``party`` decides it (403 otherwise)."""
    g = store.get(session, grant_id)
    if g is None:
        raise not_found(f"grant {grant_id}")
    owners = owners_of(session, ctx.parties, g.order_id)
    if owners is None:
        raise not_found(f"order {g.order_id}")
    if party.address == owners.supplier:
        return g, "supplier"
    if party.address == owners.buyer:
        return g, "buyer"
    if party.address == g.grantee_address:
        raise ApiError(403, "forbidden", "a grantee cannot decide its own grant")
    raise not_found(f"grant {grant_id}")  # not theirs: as if it did not exist


@router.post(
    "/grants/{grant_id}/approve", response_model=GrantPublic, responses=responses(*GRANT_WRITE)
)
def approve_grant(
    body: GrantApproval,
    ctx: ContextDep,
    session: SessionDep,
    party: WritingParty,
    grant_id: GrantIdPath,
) -> GrantPublic:
    """An owner of the order's data approves, until ``expires_at``. Approved by the
    supplier it covers all the order's medium data; by the buyer, the agreement's only
    (terms, prices, events): telemetry is the supplier's."""
    g, role = _decider(session, ctx, party, grant_id)
    return _change(
        session,
        ctx,
        lambda now: store.approve(session, g.id, party.name, role, body.expires_at, now),
    )


@router.post(
    "/grants/{grant_id}/deny", response_model=GrantPublic, responses=responses(*GRANT_WRITE)
)
def deny_grant(
    body: GrantDenial,
    ctx: ContextDep,
    session: SessionDep,
    party: WritingParty,
    grant_id: GrantIdPath,
) -> GrantPublic:
    """An owner of the order's data denies the request, saying why."""
    g, role = _decider(session, ctx, party, grant_id)
    return _change(
        session, ctx, lambda now: store.deny(session, g.id, party.name, role, body.reason, now)
    )


@router.post(
    "/grants/{grant_id}/revoke", response_model=GrantPublic, responses=responses(*GRANT_WRITE)
)
def revoke_grant(
    ctx: ContextDep, session: SessionDep, party: WritingParty, grant_id: GrantIdPath
) -> GrantPublic:
    """An owner of the order's data ends an approved grant now."""
    g, _role = _decider(session, ctx, party, grant_id)
    return _change(session, ctx, lambda now: store.revoke(session, g.id, now))


@router.get("/disclosures", response_model=DisclosuresPublic, responses=responses(*READ))
def list_disclosures(
    session: SessionDep,
    party: CurrentParty,
    order_id: Annotated[int | None, Query(ge=1, le=MAX_JSON_INT), Digits] = None,
    limit: Annotated[int, Query(ge=1, le=1000), Digits] = 100,
    offset: Offset = 0,
) -> DisclosuresPublic:
    """Every cross-border release of medium data on the caller's orders (as buyer or
    supplier; auditors and admins: all), oldest first, and the verification of the whole
    chain (each entry's hash covers the one before: docs/sharing.md)."""
    orders: list[int] | None = None if party.reads_all else _owned_orders(session, party)
    if order_id is not None:
        orders = [order_id] if orders is None or order_id in orders else []
    rows, count = disclosures.entries(session, order_ids=orders, limit=limit, offset=offset)
    v = disclosures.verify(session)
    return DisclosuresPublic(
        data=[
            DisclosurePublic.model_validate({k: getattr(e, k) for k in e.__dataclass_fields__})
            for e in rows
        ],
        count=count,
        verification=VerificationPublic(
            ok=v.ok,
            entries=v.entries,
            head=ChainHeadPublic(seq=v.head.seq, hash="0x" + v.head.hash.hex()),
            first_bad_seq=v.first_bad_seq,
            problem=v.problem,
        ),
    )
