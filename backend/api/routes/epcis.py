"""GS1 EPCIS 2.0: an order's events as an EPCISDocument, and capture of a partner's
events (docs/epcis.md)."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from backend.api import epcis, queries
from backend.api.deps import (
    ContextDep,
    CurrentParty,
    OrderIdPath,
    SessionDep,
    WritingParty,
    visible_order,
)
from backend.api.errors import READ, ApiError, responses
from backend.api.pages import OrderPage, order_page
from backend.api.schemas import (
    CapturePublic,
    EpcisDocumentPublic,
    EpcisEventPublic,
    EpcisEventRef,
    EpcisEventsPublic,
)
from backend.api.sharing import PolicyRoute, pseudonyms_for

router = APIRouter(tags=["epcis"], route_class=PolicyRoute)

CapturedEventsPage = Annotated[OrderPage, order_page(most=500, default=100)]

#: The capture body's outline for OpenAPI; the full rules are GS1's schema (docs/epcis.md).
CAPTURE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["@context", "type", "schemaVersion", "creationDate", "epcisBody"],
    "properties": {
        "@context": {"type": "array", "minItems": 1},
        "type": {"type": "string", "enum": ["EPCISDocument"]},
        "schemaVersion": {"type": "string", "pattern": "^2\\.0$"},
        "creationDate": {"type": "string", "format": "date-time"},
        "epcisBody": {
            "type": "object",
            "required": ["eventList"],
            "properties": {
                "eventList": {"type": "array", "minItems": 1, "items": {"type": "object"}}
            },
        },
    },
}


@router.get(
    "/orders/{order_id}/epcis",
    response_model=EpcisDocumentPublic,
    responses=responses(*READ, 503),
)
async def order_epcis(
    session: SessionDep, ctx: ContextDep, party: CurrentParty, order_id: OrderIdPath
) -> JSONResponse:
    """The order as a GS1 EPCIS 2.0 EPCISDocument: shipping, hourly sensor and receiving
    ObjectEvents with CBV event hash IDs, and the partner events captured for it."""
    order = visible_order(session, party, order_id)
    schema = epcis.schema_of(ctx.settings)
    identity = epcis.identity_of(
        session, ctx.chain_id, ctx.deployment.purchase_orders if ctx.deployment else None
    )
    document = await run_in_threadpool(
        functools.partial(
            epcis.export_document,
            session,
            party,
            order,
            identity,
            schema,
            parties=ctx.parties,
            pseudonyms=pseudonyms_for(ctx, party.viewer()),
            now=int(ctx.clock()),
        )
    )
    return JSONResponse(document)


@router.get(
    "/orders/{order_id}/epcis/events",
    response_model=EpcisEventsPublic,
    responses=responses(*READ),
)
async def captured_events(session: SessionDep, page: CapturedEventsPage) -> EpcisEventsPublic:
    """The partner events captured for the order, by event time."""
    rows, count = queries.epcis_events(session, page.order_id, limit=page.limit, offset=page.offset)
    return EpcisEventsPublic(data=[EpcisEventPublic.model_validate(r) for r in rows], count=count)


async def _body(request: Request, limit: int) -> bytes:
    """The body, read no further than one byte past ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the document has {declared} bytes; at most {limit}")
    out = bytearray()
    async for chunk in request.stream():
        out += chunk
        if len(out) > limit:
            raise ApiError(413, "too_large", f"the document has over {limit} bytes")
    return bytes(out)


@router.post(
    "/epcis/capture",
    response_model=CapturePublic,
    status_code=201,
    responses={
        200: {"model": CapturePublic, "description": "Every event was stored before"},
        **responses(401, 403, 404, 409, 413, 422, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A GS1 EPCIS 2.0 EPCISDocument, checked against GS1's EPCIS 2.0 "
            "JSON Schema (EPCISDocument.schema.json, docs/epcis.md), whose events each name "
            "one order (a bizTransaction of type po: "
            "urn:trustship:po:<chain id>:<PurchaseOrders>:<order id>).",
            "content": {"application/json": {"schema": CAPTURE_BODY}},
        }
    },
)
async def capture(
    request: Request, session: SessionDep, ctx: ContextDep, party: WritingParty
) -> Any:
    """Capture a partner's EPCIS 2.0 events (e.g. a warehouse's receiving event) for
    orders the caller is a party to. The document is checked against GS1's schema and
    stored all or nothing; an event stored before (same eventID) is not stored again."""
    body = await _body(request, ctx.settings.EPCIS_CAPTURE_MAX_BYTES)
    identity = epcis.identity_of(
        session, ctx.chain_id, ctx.deployment.purchase_orders if ctx.deployment else None
    )
    parsed = await run_in_threadpool(epcis.parse, body, ctx.settings, identity)
    outcome = await run_in_threadpool(epcis.store_capture, session, party, parsed)
    result = CapturePublic(
        captured=[EpcisEventRef(order_id=o, event_id=e) for o, e in outcome.captured],
        duplicates=[EpcisEventRef(order_id=o, event_id=e) for o, e in outcome.duplicates],
        count=len(outcome.captured),
    )
    return JSONResponse(result.model_dump(), status_code=201 if outcome.captured else 200)
