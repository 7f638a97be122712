"""The calling party: who it is, its escrow credits, and withdrawing them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from backend.api import queries
from backend.api.deps import ContextDep, CurrentParty, SessionDep, WritingParty
from backend.api.errors import AUTH, WRITE, ApiError, responses
from backend.api.parties import Party
from backend.api.schemas import (
    AccountPublic,
    CreditPublic,
    PartyPublic,
    WithdrawalPublic,
    WithdrawRequest,
)
from backend.api.sharing import PolicyRoute

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
