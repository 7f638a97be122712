"""The calling party: who it is, its escrow credits, and withdrawing them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from backend.api import queries
from backend.api.broker_logins import ENDED
from backend.api.deps import ContextDep, CurrentParty, SessionDep, WritingParty, visible_order
from backend.api.errors import AUTH, WRITE, ApiError, responses
from backend.api.parties import Party
from backend.api.schemas import (
    AccountPublic,
    CreditPublic,
    MqttCredentialsPublic,
    MqttCredentialsRequest,
    PartyPublic,
    WithdrawalPublic,
    WithdrawRequest,
)
from backend.api.sharing import PolicyRoute
from backend.telemetry.access import order_filters
from backend.telemetry.dynsec import DynsecError

router = APIRouter(prefix="/account", tags=["account"], route_class=PolicyRoute)


def party_public(party: Party) -> PartyPublic:
    return PartyPublic(
        name=party.name,
        address=party.address,
        roles=sorted(party.roles),
        custodial=party.private_key is not None,
        jurisdiction=party.jurisdiction,
    )


@router.get("", response_model=AccountPublic, responses=responses(*AUTH))
async def get_account(session: SessionDep, party: CurrentParty) -> AccountPublic:
    """The calling party and its escrow credits."""
    credits = queries.credits(session, party.address)
    return AccountPublic(
        party=party_public(party),
        credits=[CreditPublic(token=t, amount=str(a)) for t, a in sorted(credits.items())],
    )


@router.post("/withdraw", response_model=WithdrawalPublic, responses=responses(*WRITE))
async def withdraw(body: WithdrawRequest, ctx: ContextDep, party: WritingParty) -> WithdrawalPublic:
    """Withdraw the caller's escrow credit in one token (pull payment) to its account."""
    if ctx.custodian is None:
        raise ApiError(503, "unavailable", "this API instance does not send transactions")
    sent = await run_in_threadpool(ctx.custodian.withdraw, party, body.token)
    return WithdrawalPublic(
        tx_hash=sent.tx_hash,
        block_number=sent.block_number,
        account=party.address,
        token=body.token,
        amount=str(sent.amount or 0),
    )


@router.post(
    "/mqtt-credentials",
    response_model=MqttCredentialsPublic,
    status_code=201,
    responses=responses(401, 404, 409, 422, 503),
)
async def mqtt_credentials(
    body: MqttCredentialsRequest, ctx: ContextDep, session: SessionDep, party: CurrentParty
) -> MqttCredentialsPublic:
    """A read-only broker login for one of the caller's orders: it may subscribe to that
    order's telemetry and status and nothing else (no other order, no publishing, not
    the oracles' share group), for ``trustship watch`` (docs/watcher.md). Auditors may
    ask too (the login only reads). Deleted when the order ends."""
    order = visible_order(session, party, body.order_id)
    if order.state in ENDED:
        raise ApiError(
            409, "order_ended", f"order {body.order_id} is {order.state}: nothing to watch"
        )
    if ctx.broker_logins is None:
        raise ApiError(503, "unavailable", "this API instance has no broker admin (MQTT_ADMIN_URL)")
    try:
        login = await run_in_threadpool(ctx.broker_logins.issue, body.order_id)
    except DynsecError as exc:
        raise ApiError(
            503, "broker_unavailable", f"the broker did not issue a login: {exc}"
        ) from None
    return MqttCredentialsPublic(
        order_id=body.order_id,
        username=login.username,
        password=login.password,
        topics=list(order_filters(body.order_id)),
    )
