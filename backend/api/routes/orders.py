"""Orders: create, list, read, and every state change of the contract's state machine.

Reads answer from the database the indexer keeps. Writes send a transaction as
the calling party (custodial, docs/api.md) and answer with its hash and the
order's state after it. An order the caller is not a party to answers 404, like
a missing one, so its existence does not leak.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool

from backend.api import convert, queries
from backend.api.context import ApiContext
from backend.api.custody import Custodian, Sent
from backend.api.deps import (
    ContextDep,
    CurrentParty,
    OrderIdPath,
    SessionDep,
    WritingParty,
    visible_order,
)
from backend.api.errors import READ, WRITE, ApiError, responses
from backend.api.lean import LeanJSON, owners_of_orders
from backend.api.pages import Offset
from backend.api.parties import Party
from backend.api.schemas import (
    MAX_JSON_INT,
    Address,
    Digits,
    OrderCreate,
    OrderPublic,
    OrdersPublic,
    OrderState,
    PartyRole,
    RulingRequest,
    SettlementPreview,
    ShipRequest,
    TrueOrFalse,
    TxPublic,
    Uint64,
)
from backend.api.sharing import PolicyRoute

router = APIRouter(prefix="/orders", tags=["orders"], route_class=PolicyRoute)


def _custodian(ctx: ApiContext) -> Custodian:
    if ctx.custodian is None:
        raise ApiError(503, "unavailable", "this API instance does not send transactions")
    return ctx.custodian


def _answer(ctx: ApiContext, party: Party, sent: Sent, order_id: int | None) -> TxPublic:
    """The transaction and the order as the database holds it after the transaction."""
    order = None
    if order_id is not None:
        with ctx.session_factory() as session:
            row = queries.get_order(session, party, order_id)
            order = OrderPublic.model_validate(convert.order(row)) if row is not None else None
    return TxPublic(tx_hash=sent.tx_hash, block_number=sent.block_number, order=order)


# --- reads -------------------------------------------------------------------------------


@router.get("", response_model=OrdersPublic, responses=responses(*READ))
async def list_orders(
    ctx: ContextDep,
    party: CurrentParty,
    state: Annotated[list[OrderState] | None, Query(description="Repeat to match several.")] = None,
    role: Annotated[
        PartyRole | None, Query(description="Only orders where the caller has this role.")
    ] = None,
    buyer: Annotated[Address | None, Query()] = None,
    supplier: Annotated[Address | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200), Digits] = 50,
    offset: Offset = 0,
    after: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_JSON_INT,
            description="The `next` of the page before: the orders below that id (keyset "
            "paging, cheaper than `offset` deep in a long list).",
        ),
        Digits,
    ] = None,
) -> LeanJSON:
    """Orders visible to the caller, newest first (auditors and admins see all)."""
    with ctx.read_sessions() as session:  # (docs/api.md, "Choices": hot reads)
        rows, count = queries.list_orders(
            session,
            party,
            states=state or (),
            role=role,
            buyer=buyer,
            supplier=supplier,
            limit=limit,
            offset=offset,
            before=after,
        )
    data = convert.orders(rows)
    following = rows[-1].id if len(rows) == limit else None
    page = {"data": data, "count": count, "next": following}
    return LeanJSON(page, owners=owners_of_orders(data))


@router.get("/{order_id}", response_model=OrderPublic, responses=responses(*READ))
async def get_order(ctx: ContextDep, party: CurrentParty, order_id: OrderIdPath) -> LeanJSON:
    """One order with its terms and progress."""
    with ctx.read_sessions() as session:  # (docs/api.md, "Choices": hot reads)
        row = visible_order(session, party, order_id)
    data = convert.order(row)
    return LeanJSON(data, owners=owners_of_orders([data]))


@router.get(
    "/{order_id}/settlement-preview",
    response_model=SettlementPreview,
    responses=responses(*READ),
)
async def settlement_preview(
    session: SessionDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    delivered_at: Annotated[Uint64, Query(description="Delivery time, unix seconds."), Digits],
    breach: Annotated[
        bool | None,
        Query(description="Assume a breach (default: as recorded on the order)."),
        TrueOrFalse,
    ] = None,
) -> SettlementPreview:
    """The split the order's terms give for a delivery at ``delivered_at`` (DESIGN.md §4)."""
    from backend.api.settlement import preview

    row = visible_order(session, party, order_id)
    return preview(row, delivered_at, row.breached if breach is None else breach)


# --- writes ------------------------------------------------------------------------------


@router.post(
    "",
    response_model=TxPublic,
    status_code=status.HTTP_201_CREATED,
    responses=responses(*WRITE),
)
async def create_order(body: OrderCreate, ctx: ContextDep, party: WritingParty) -> TxPublic:
    """Create an order as its buyer.

    ``fund: true`` pays the price into escrow in the same transaction
    (createAndFundOrder); for an ERC-20 order the API approves escrow first.
    """
    if not party.has_role("buyer"):
        raise ApiError(403, "forbidden", f"party {party.name!r} has no buyer role")
    custodian = _custodian(ctx)
    sent = await run_in_threadpool(
        custodian.create_order, party, body.supplier, body.terms, body.fund
    )
    return await run_in_threadpool(_answer, ctx, party, sent, sent.order_id)


async def _act(
    ctx: ApiContext, party: Party, order_id: int, action: str, *args: object
) -> TxPublic:
    def run() -> TxPublic:
        with ctx.session_factory() as session:
            row = visible_order(session, party, order_id)
        custodian = _custodian(ctx)
        sent = getattr(custodian, action)(party, row, *args)
        return _answer(ctx, party, sent, order_id)

    return await run_in_threadpool(run)


def _action_route(path: str, name: str, action: str, doc: str) -> None:
    """Route ``POST /orders/{order_id}/<path>`` (no body) to the custodian's ``action``;
    ``name`` and ``doc`` are the endpoint's (its OpenAPI operation and description)."""

    async def endpoint(ctx: ContextDep, party: WritingParty, order_id: OrderIdPath) -> TxPublic:
        return await _act(ctx, party, order_id, action)

    endpoint.__name__ = endpoint.__qualname__ = name
    endpoint.__doc__ = doc
    router.post(f"/{{order_id}}/{path}", response_model=TxPublic, responses=responses(*WRITE))(
        endpoint
    )


_action_route(
    "accept", "accept_order", "accept", "The supplier accepts the terms (Created → Accepted)."
)


_action_route(
    "fund",
    "fund_order",
    "fund",
    "The buyer pays the price into escrow (ETH, or an ERC-20 after an approval).",
)


@router.post("/{order_id}/ship", response_model=TxPublic, responses=responses(*WRITE))
async def ship_order(
    body: ShipRequest, ctx: ContextDep, party: WritingParty, order_id: OrderIdPath
) -> TxPublic:
    """The supplier ships and binds the devices travelling with the goods, each with its
    issuer's certificate. A device no issuer of the terms certified is refused
    (``contract_revert``, ``error`` = ``QualityVerificationUncertifiedDevice``), as are
    a forged, expired, revoked or other order's certificate (docs/api.md)."""
    return await _act(ctx, party, order_id, "ship", body.certificates)


_action_route(
    "confirm-receipt",
    "confirm_receipt",
    "confirm_receipt",
    "The buyer confirms delivery (Shipped → Delivered, or Settled with no dispute window).",
)


_action_route(
    "dispute",
    "open_dispute",
    "open_dispute",
    "Buyer or supplier disputes the split inside the dispute window.",
)


@router.post("/{order_id}/ruling", response_model=TxPublic, responses=responses(*WRITE))
async def resolve_dispute(
    body: RulingRequest, ctx: ContextDep, party: WritingParty, order_id: OrderIdPath
) -> TxPublic:
    """The arbiter rules the split of a disputed order."""
    return await _act(ctx, party, order_id, "resolve_dispute", int(body.buyer_amount))


_action_route(
    "settle", "settle_order", "settle", "Finalise the split once the dispute window has closed."
)


_action_route(
    "cancel", "cancel_order", "cancel", "Cancel before shipment (a funded order refunds the buyer)."
)


_action_route(
    "expire",
    "expire_order",
    "expire",
    "Reclaim an undelivered order after deadline + grace (expireOrder: the buyer is refunded).",
)
