"""Every error the API returns: one JSON shape with a stable ``code``.

``{"code": "...", "message": "...", "error": <Solidity error name or null>,
"args": {...} or null, "details": [...] or null}``. Clients branch on ``code``
(and, for ``contract_revert``, on ``error``); ``message`` is for people.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.errors import TrustShipError
from backend.domain.contract_errors import ErrorKind, error_kind

log = logging.getLogger(__name__)


class ErrorPublic(BaseModel):
    """The body of every non-2xx response."""

    code: str = Field(description="Stable machine-readable error code (docs/api.md).")
    message: str = Field(description="What went wrong, for a person.")
    error: str | None = Field(
        default=None, description="The Solidity custom error's name, for `contract_revert`."
    )
    args: dict[str, Any] | None = Field(
        default=None, description="The Solidity error's decoded arguments, by parameter name."
    )
    details: list[dict[str, Any]] | None = Field(
        default=None,
        description="Per-field problems, for `validation_error` and `epcis_schema_violation`.",
    )
    sensitivity: str | None = Field(
        default=None, description="The class refused, for `policy_refused` (docs/sharing.md)."
    )
    policy: str | None = Field(
        default=None, description="The policy rule that refused it, for `policy_refused`."
    )


class ApiError(TrustShipError):
    """Raised by a route to answer with a typed error (status + stable code)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        error: str | None = None,
        args: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
        sensitivity: str | None = None,
        policy: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sensitivity = sensitivity
        self.policy = policy
        self.status = status
        self.code = code
        self.message = message
        self.error = error
        self.args_ = args
        self.headers = headers
        self.details = details

    def body(self) -> dict[str, Any]:
        return ErrorPublic(
            code=self.code,
            message=self.message,
            error=self.error,
            args=self.args_,
            details=self.details,
            sensitivity=self.sensitivity,
            policy=self.policy,
        ).model_dump()


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


# --- contract reverts -----------------------------------------------------------------

# What each contract error means is classified once, in backend.domain.contract_errors;
# anything not a TrustShip contract error is a conflict with the on-chain state.
_STATUS: dict[ErrorKind, int] = {
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.INVALID: 422,
    ErrorKind.CONFLICT: 409,
}


def revert_status(name: str) -> int:
    """The HTTP status for a named Solidity revert."""
    return _STATUS[error_kind(name)]


def _jsonable(value: Any) -> Any:
    """Revert arguments as JSON: bytes → 0x-hex, ints beyond 2^53 → decimal strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value if isinstance(value, str | float) or value is None else str(value)


def revert_error(name: str, args: Any, message: str | None = None) -> ApiError:
    """An :class:`ApiError` for a contract revert named ``name`` with ``args``."""
    if isinstance(args, dict):
        arg_map = {str(k): _jsonable(v) for k, v in args.items()}
    else:
        arg_map = {str(i): _jsonable(v) for i, v in enumerate(args or ())}
    return ApiError(
        revert_status(name),
        "contract_revert",
        message or f"the contract refused the call: {name}",
        error=name,
        args=arg_map,
    )


# --- OpenAPI helpers ------------------------------------------------------------------

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or unknown API key (`unauthorized`)",
    403: "Not allowed for this party (`forbidden`, `read_only`, an access `contract_revert`, "
    "or `policy_refused` naming the `sensitivity` class and the `policy` rule: docs/sharing.md)",
    404: "No such resource, or an order the caller is not a party to (`not_found`)",
    409: "The on-chain state does not allow this (`contract_revert`, `not_committed`), or "
    "an event ID already stored with other content (`event_id_conflict`)",
    413: "The body is too large (`too_large`, `too_many_events`)",
    422: "Invalid input (`validation_error`) or terms the contract refuses (`contract_revert`)",
    502: "The chain is unreachable, the node refused the transaction or it failed "
    "(`chain_unavailable`, `tx_rejected`, `tx_failed`, `chain_error`)",
    503: "A dependency is not configured or not ready (`unavailable`)",
    504: "The transaction was sent but not mined in time (`tx_timeout`; it may still be mined)",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting these error statuses with :class:`ErrorPublic`."""
    return {s: {"model": ErrorPublic, "description": _DESCRIPTIONS[s]} for s in statuses}


AUTH = (401,)
READ = (401, 403, 404, 422)  # 403: `policy_refused` (docs/sharing.md)
WRITE = (401, 403, 404, 409, 422, 502, 503, 504)


# --- handlers -------------------------------------------------------------------------

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.body(), exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"])
    return _json(
        422,
        ErrorPublic(
            code="validation_error",
            message=f"{where}: {first['msg']}" if where else str(first["msg"]),
            details=details,
        ).model_dump(),
    )


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document gives this path (Starlette's 405 names only
    the first route's, and GET /orders and POST /orders are two routes). A concrete path
    is matched before templated ones, as OpenAPI says (``/orders/quote`` is not
    ``/orders/{order_id}``)."""
    table: list[tuple[re.Pattern[str], bool, set[str]]] | None = getattr(
        request.app.state, "allowed_methods", None
    )
    if table is None:
        table = []
        for template, operations in request.app.openapi()["paths"].items():
            parts = re.split(r"(\{[^/}]+\})", template)
            rx = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
            methods = {m.upper() for m in operations if m in _HTTP_METHODS}
            table.append((re.compile(rx), "{" in template, methods))
        request.app.state.allowed_methods = table
    path = request.url.path
    concrete = [m for rx, templated, m in table if not templated and rx.fullmatch(path)]
    matches = concrete or [m for rx, _, m in table if rx.fullmatch(path)]
    return ", ".join(sorted(set().union(*matches)))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        exc.headers = {**(exc.headers or {}), "Allow": _allowed_methods(request)}
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI answers a body that is not UTF-8 with a bare 400; JSON is UTF-8 (RFC 8259),
        # so it is an invalid body like any malformed JSON: the documented 422.
        return _json(
            422,
            ErrorPublic(
                code="validation_error",
                message=f"body: not UTF-8 JSON ({exc.__cause__.reason} at byte "
                f"{exc.__cause__.start})",
                details=[{"loc": ["body"], "msg": "body is not UTF-8", "type": "json_invalid"}],
            ).model_dump(),
        )
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return _json(
        exc.status_code,
        ErrorPublic(code=code, message=str(exc.detail)).model_dump(),
        dict(exc.headers) if exc.headers else None,
    )


def _internal_error() -> JSONResponse:
    return _json(
        500,
        ErrorPublic(
            code="internal_error", message="internal server error (see the server log)"
        ).model_dump(),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Only reached for errors outside UnhandledErrors (in the outer middleware): Starlette's
    # ServerErrorMiddleware sends this answer, then re-raises to the server, which closes
    # the connection.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _internal_error()


class UnhandledErrors:
    """Answers a bug (an exception no handler knows) with 500 ``internal_error`` and
    keeps the connection usable.

    Starlette's own catch-all (``ServerErrorMiddleware``) sends its 500 and then
    re-raises the exception to the server "so that servers can log it"; uvicorn then
    closes the connection, and a keep-alive client's next request fails with "Server
    disconnected". This middleware, inside it, logs the traceback and answers, and the
    exception ends here. Only an error after the response has started is re-raised:
    then the answer is cut short and closing the connection is the honest outcome.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await _internal_error()(scope, receive, send)


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {f.alias for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


_known_query: dict[int, frozenset[str]] = {}


async def no_unknown_query_parameters(request: Request) -> None:
    """Refuse query parameters the route does not declare (422 naming each), as request
    bodies refuse unknown fields: a mistyped filter (``?stat=Created``) would otherwise be
    ignored silently and answer every order."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _known_query.get(id(route))
    if known is None:
        known = _known_query[id(route)] = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": "unknown query parameter",
                    "input": request.query_params[name],
                }
                for name in unknown
            ]
        )


def install_error_handlers(app: FastAPI) -> None:
    """The handlers of every error answer, and :class:`UnhandledErrors` around the routes
    (add the other middleware after this, so they see its 500s)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(UnhandledErrors)
