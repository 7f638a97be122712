"""Where the sensitivity policy meets the API: every route's answer passes through here.

Every router is built with ``route_class=PolicyRoute`` (tests/api/test_sensitivity.py
fails on a route that is not): after the endpoint has answered, its JSON body is
filtered by :class:`backend.sharing.policy.Release` along the response model's
:class:`~backend.sharing.policy.Shape` (the classes declared in
``backend.api.schemas.SENSITIVITY``), refused medium data of one order answers
``403 policy_refused``, a ``policy`` member states what was coarsened, withheld or left
out, and every release under a grant is appended to the disclosure log in the same
request. The alert stream (SSE) filters its frames with :func:`filter_records`.
Route code holds no checks of its own.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from functools import cache
from typing import Any

import orjson
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from backend.api.context import ApiContext
from backend.api.errors import ApiError
from backend.api.lean import LeanJSON, Owners
from backend.api.parties import Party, PartyRegistry
from backend.api.schemas import ORDER_KEYS, SENSITIVITY
from backend.domain.sharing import Grant
from backend.sharing import disclosures
from backend.sharing import grants as grant_store
from backend.sharing.policy import OrderOwners, PolicyRefused, Pseudonyms, Release, Shape, Viewer
from backend.store.models import ORDERS

API_KEY_HEADER = "X-API-Key"


def _nested_model(tp: Any) -> type[BaseModel] | None:
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is not None:
        for arg in typing.get_args(tp):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None


@cache
def shape_of(model: type[BaseModel]) -> Shape:
    """The filter's map of ``model``: its classes and its nested records' shapes."""
    try:
        classified = SENSITIVITY[model]
    except KeyError:
        raise TypeError(
            f"{model.__name__} has no sensitivity classes: declare them in "
            "backend.api.schemas.SENSITIVITY (docs/sharing.md)"
        ) from None
    children: dict[str, Shape] = {}
    for name, f in model.model_fields.items():
        sub = _nested_model(f.annotation)
        if sub is not None:
            children[name] = shape_of(sub)
    key = ORDER_KEYS.get(model, "order_id" if "order_id" in model.model_fields else None)
    return Shape(model.__name__, classified, key, children)


#: The owners of a page's orders (one statement, compiled once: a page's ids expand).
_OWNERS = select(ORDERS.c.id, ORDERS.c.buyer, ORDERS.c.supplier).where(
    ORDERS.c.id.in_(bindparam("ids", expanding=True))
)


def owners_of(
    session: Session, parties: PartyRegistry, order_id: int, known: Owners | None = None
) -> OrderOwners | None:
    return owners_of_many(session, parties, [order_id], known).get(order_id)


def owners_of_many(
    session: Session,
    parties: PartyRegistry,
    order_ids: Collection[int],
    known: Owners | None = None,
) -> dict[int, OrderOwners]:
    """The owners of each of ``order_ids`` that exists: those ``known`` (the buyer and
    supplier the route read), the rest in one query."""
    known = known or {}
    found = {o: known[o] for o in order_ids if o in known}
    todo = [o for o in order_ids if o not in found]
    if todo:
        for order_id, buyer, supplier in session.connection().execute(_OWNERS, {"ids": todo}):
            found[int(order_id)] = (str(buyer), str(supplier))
    return {
        order_id: OrderOwners(
            order_id,
            buyer,
            supplier,
            parties.jurisdiction_of(buyer),
            parties.jurisdiction_of(supplier),
        )
        for order_id, (buyer, supplier) in found.items()
    }


def release_for(
    ctx: ApiContext,
    session: Session,
    party: Party,
    scoped_order: int | None,
    known: Owners | None = None,
) -> Release:
    """A :class:`Release` of ``party``'s answers, reading owners (but those ``known``)
    and grants in ``session``."""
    viewer = party.viewer()

    def grants_of(order_id: int) -> Sequence[Grant]:
        return grant_store.of_viewer(session, viewer.address, order_id)

    return Release(
        viewer,
        int(ctx.clock()),
        lambda oid: owners_of(session, ctx.parties, oid, known),
        grants_of,
        scoped_order=scoped_order,
        owners_of_many=lambda ids: owners_of_many(session, ctx.parties, ids, known),
        grants_of_many=lambda ids: grant_store.of_viewer_many(session, viewer.address, ids),
        pseudonyms=pseudonyms_for(ctx, viewer),
        memo=ctx.policy_plans,
    )


def pseudonyms_for(ctx: ApiContext, viewer: Viewer) -> Pseudonyms:
    """The pseudonyms ``viewer`` gets, under the deployment's ``SHARING_PSEUDONYM_KEY``."""
    return Pseudonyms.for_viewer(ctx.settings.SHARING_PSEUDONYM_KEY.get_secret_value(), viewer)


def refused(exc: PolicyRefused) -> ApiError:
    d = exc.decision
    return ApiError(
        403,
        "policy_refused",
        f"{d.sensitivity.value} data refused by policy {d.rule.value}: {d.reason}",
        sensitivity=d.sensitivity.value,
        policy=d.rule.value,
        args={"order_id": exc.order_id, "path": exc.path},
    )


def _log(session: Session, release: Release, route: str) -> dict[str, Any] | None:
    statement = release.statement()
    if statement.disclosures:
        disclosures.append(session, release.viewer, statement.disclosures, route, release.now)
    return None if statement.empty else statement.as_json()


def _log_in_own_session(ctx: ApiContext, release: Release, route: str) -> None:
    with ctx.session_factory() as session:
        _log(session, release, route)


async def filter_response(
    ctx: ApiContext,
    party: Party,
    model: type[BaseModel],
    response: Response,
    scoped_order: int | None,
    route: str,
) -> Response:
    """``response`` (a JSON answer of ``model``) as ``party`` may see it.

    On the event loop, like the read routes: the owners of the orders it names (one
    indexed query) and the viewer's grants on those abroad. An answer the policy gives
    back unchanged is served as the route serialised it; any other is parsed again
    with the json module (orjson reads integers beyond 64 bits as floats), filtered
    and served with its ``policy`` statement. A release under a grant is logged in the
    thread pool (a write)."""
    shape = shape_of(model)
    with ctx.read_sessions() as session:
        lean = response if isinstance(response, LeanJSON) else None
        known = lean.owners if lean is not None else None
        release = release_for(ctx, session, party, scoped_order, known)
        raw: bytes | None = None  # the body, copied once, when it is parsed
        if lean is not None:
            data = lean.data
        else:
            raw = bytes(response.body)
            data = orjson.loads(raw)
        try:
            if release.as_it_is(data, shape):
                return response
            raw = raw if raw is not None else bytes(response.body)
            out = dict(release.apply(json.loads(raw), shape))
        except PolicyRefused as exc:
            raise refused(exc) from None
    statement = release.statement()
    if statement.disclosures:
        await run_in_threadpool(_log_in_own_session, ctx, release, route)
    if not statement.empty:
        out["policy"] = statement.as_json()
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return JSONResponse(out, status_code=response.status_code, headers=headers, background=None)


def filter_records(
    ctx: ApiContext,
    party: Party,
    model: type[BaseModel],
    records: Sequence[Mapping[str, Any]],
    route: str,
) -> list[dict[str, Any]]:
    """Records of ``model`` across orders (a stream's frames): those refused are left
    out, the rest filtered; releases under a grant are logged."""
    shape = shape_of(model)
    with ctx.session_factory() as session:
        release = release_for(ctx, session, party, None)
        out = []
        for record in records:
            try:
                out.append(release.apply(record, shape))
            except PolicyRefused:
                continue
        _log(session, release, route)
    return out


def check_order(ctx: ApiContext, party: Party, model: type[BaseModel], order_id: int) -> None:
    """403 ``policy_refused`` unless ``party`` may read ``model`` records of ``order_id``
    (a stream about one order checks this before it starts)."""
    shape = shape_of(model)
    with ctx.session_factory() as session:
        release = release_for(ctx, session, party, order_id)
        d = release.decide(order_id, shape.classified.owner, shape.classified.record)
        if not d.outcome.releases:
            raise refused(PolicyRefused(d, order_id, shape.name))


def _response_model(route: APIRoute) -> type[BaseModel] | None:
    m = route.response_model
    return m if inspect.isclass(m) and issubclass(m, BaseModel) else None


class PolicyRoute(APIRoute):
    """An API route whose JSON answers pass through the sensitivity policy."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        model = _response_model(self)
        if model is None:
            return handler
        shape_of(model)  # fails at start-up on an unclassified schema
        route = self.path

        async def filtered(request: Request) -> Response:
            response = await handler(request)
            json_body = isinstance(response, JSONResponse) or (
                response.media_type == "application/json" and hasattr(response, "body")
            )
            if not 200 <= response.status_code < 300 or not json_body:
                return response
            ctx: ApiContext = request.app.state.context
            party = ctx.parties.lookup(request.headers.get(API_KEY_HEADER))
            if party is None:  # a route without a key is public (health, deployment)
                return response
            if ctx.parties.jurisdictions() == {party.jurisdiction}:
                return response  # nobody is elsewhere: no answer can cross a border
            raw = request.path_params.get("order_id")
            scoped = int(raw) if isinstance(raw, str) and raw.isdigit() else None
            return await filter_response(
                ctx, party, model, response, scoped, f"{request.method} {route}"
            )

        return filtered
