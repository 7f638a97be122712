"""Service endpoints: health and Prometheus metrics (no API key needed)."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from backend.api.context import ApiContext
from backend.api.deps import ContextDep
from backend.api.errors import ApiError, responses
from backend.api.schemas import ComponentHealth, DeploymentPublic, HealthPublic
from backend.api.sharing import PolicyRoute
from backend.core.metrics import CONTENT_TYPE

router = APIRouter(tags=["system"], route_class=PolicyRoute)
log = logging.getLogger(__name__)


def _database(ctx: ApiContext) -> ComponentHealth:
    try:
        with ctx.session_factory() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return ComponentHealth(status="down", detail=f"{type(exc).__name__}: {exc}"[:300])
    return ComponentHealth(status="ok")


def check_health(ctx: ApiContext) -> HealthPublic:
    components = {"database": _database(ctx)}
    if ctx.custodian is not None:
        components["chain"] = ctx.custodian.health()
    else:
        components["chain"] = ComponentHealth(status="disabled", detail="read-only API")
    for name, check in ctx.health_checks.items():
        try:
            components[name] = check()
        except Exception as exc:
            log.warning("health check %s failed: %s", name, exc)
            components[name] = ComponentHealth(status="down", detail=str(exc)[:300])
    statuses = {c.status for c in components.values()}
    overall: Literal["ok", "degraded", "down", "error"]
    if "error" in statuses:
        overall = "error"
    elif "down" in statuses:
        overall = "down" if components["database"].status == "down" else "degraded"
    elif "degraded" in statuses:
        overall = "degraded"
    else:
        overall = "ok"
    return HealthPublic(status=overall, components=components)


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={
        503: {
            "model": HealthPublic,
            "description": "The database is down, or the chain was reset (`error`)",
        }
    },
)
async def health(ctx: ContextDep) -> Response:
    """Database, chain and broker status; 503 when the database cannot be reached or the
    chain no longer holds the deployment (status ``error``, with the reason)."""
    result = await run_in_threadpool(check_health, ctx)
    return JSONResponse(
        status_code=503 if result.status in ("down", "error") else 200,
        content=result.model_dump(),
    )


@router.get(
    "/deployment",
    response_model=DeploymentPublic,
    responses=responses(503),
)
async def deployment(ctx: ContextDep) -> DeploymentPublic:
    """The chain id and contract addresses (public, like the contracts themselves)."""
    d = ctx.deployment
    if d is None or ctx.chain_id is None:
        raise ApiError(503, "no_deployment", "this API has no contract deployment loaded")
    return DeploymentPublic(
        chain_id=ctx.chain_id,
        contracts=dict(d.addresses),
        token=d.token,
        start_block=d.block_number,
        oracle_clock=ctx.oracle_clock() if ctx.oracle_clock is not None else None,
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(ctx: ContextDep) -> PlainTextResponse:
    """Prometheus text format: API request counts and latency, plus the oracle's counters."""
    return PlainTextResponse(ctx.metrics.render(), media_type=CONTENT_TYPE)
