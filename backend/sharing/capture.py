"""Reading a partner's EPCIS 2.0 document for capture (``POST /epcis/capture``).

:func:`parse_capture` checks a document and says what to store, without touching the
database: the size, JSON, GS1's schema, the number of events, and that each event
names exactly one of our purchase orders (a ``bizTransaction`` of type ``po`` with
the URN of :class:`~backend.sharing.epcis.Identity`). Any problem refuses the whole
document (all or nothing) with a :class:`CaptureError` that names it: where in the
document, which schema keyword, which event. Whether the caller may capture for
that order, and the storing, are the API's (backend/api/epcis.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backend.core.errors import TrustShipError
from backend.sharing.epcis import TS_NAMESPACE, TS_PREFIX, Identity
from backend.sharing.hashid import CBV, event_hash_id, namespaces
from backend.sharing.schema import EpcisSchema

#: The ways a ``po`` business transaction type may be written.
PO_TYPES = frozenset({"po", CBV + "BTT-po", "urn:epcglobal:cbv:btt:po"})
PO_URN_PREFIX = "urn:trustship:po:"


class CaptureError(TrustShipError):
    """Raised when a document cannot be captured: an HTTP status, a stable code, a message
    naming what is wrong, and per-problem details."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One event of a captured document, ready to store."""

    index: int
    event: dict[str, Any]
    event_id: str
    hash_id: str
    order_id: int
    event_type: str
    biz_step: str | None
    event_time: int


@dataclass(frozen=True, slots=True)
class ParsedCapture:
    events: list[ParsedEvent]
    #: The prefixes the document's ``@context`` declares (stored with each event).
    prefixes: dict[str, str]


def _unix(text: str) -> int:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def order_of(event: dict[str, Any], index: int, identity: Identity) -> int:
    """The order the event names (its one ``po`` business transaction of our contract)."""
    where = f"$.epcisBody.eventList[{index}]"
    pos = [
        str(bt.get("bizTransaction", ""))
        for bt in event.get("bizTransactionList") or []
        if isinstance(bt, dict) and bt.get("type") in PO_TYPES
    ]
    if not pos:
        raise CaptureError(
            422,
            "no_order_reference",
            f"{where}: no bizTransaction of type 'po' names an order "
            f"(expected {identity.po(0).rsplit(':', 1)[0]}:<order id>)",
        )
    ids: set[int] = set()
    scope = identity.po(0).rsplit(":", 1)[0] + ":"
    for po in pos:
        if not po.lower().startswith(PO_URN_PREFIX):
            raise CaptureError(
                422, "foreign_order_reference", f"{where}: purchase order {po!r} is not ours"
            )
        if not po.lower().startswith(scope):
            raise CaptureError(
                422,
                "foreign_order_reference",
                f"{where}: purchase order {po!r} is of another chain or contract "
                f"(this deployment's are {scope}<order id>)",
            )
        tail = po[len(scope) :]
        if not tail.isdigit() or not 0 < int(tail) < 2**63:
            raise CaptureError(422, "foreign_order_reference", f"{where}: {po!r} names no order id")
        ids.add(int(tail))
    if len(ids) > 1:
        raise CaptureError(
            422,
            "ambiguous_order_reference",
            f"{where}: names several orders ({', '.join(map(str, sorted(ids)))}); "
            "capture one event per order",
        )
    return ids.pop()


def parse_capture(
    body: bytes,
    schema: EpcisSchema,
    identity: Identity,
    *,
    max_bytes: int,
    max_events: int,
) -> ParsedCapture:
    """The events to store from ``body``, or a :class:`CaptureError` naming the problem."""
    if len(body) > max_bytes:
        raise CaptureError(
            413, "too_large", f"the document has {len(body)} bytes; at most {max_bytes}"
        )
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaptureError(422, "malformed_json", f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("type") != "EPCISDocument":
        raise CaptureError(
            422,
            "not_an_epcis_document",
            "$.type: capture takes an EPCISDocument (a JSON object with type 'EPCISDocument')",
        )
    body_ = document.get("epcisBody")
    events = body_.get("eventList") if isinstance(body_, dict) else None
    if isinstance(events, list) and len(events) > max_events:
        raise CaptureError(
            413, "too_many_events", f"the document has {len(events)} events; at most {max_events}"
        )
    violations = schema.violations(document)
    if violations:
        raise CaptureError(
            422,
            "epcis_schema_violation",
            "the document breaks the EPCIS 2.0 schema: " + "; ".join(map(str, violations)),
            [{"path": v.path, "keyword": v.keyword, "message": v.message} for v in violations],
        )
    assert isinstance(events, list)  # the schema requires it
    if not events:
        raise CaptureError(422, "no_events", "$.epcisBody.eventList: the document has no events")
    context = document.get("@context")
    prefixes = namespaces(context)
    if prefixes.get(TS_PREFIX, TS_NAMESPACE) != TS_NAMESPACE:
        raise CaptureError(
            422,
            "prefix_conflict",
            f"$.@context: prefix {TS_PREFIX!r} is TrustShip's ({TS_NAMESPACE}); "
            "declare your extensions under another prefix",
        )
    out: list[ParsedEvent] = []
    seen: dict[str, int] = {}
    for i, event in enumerate(events):
        assert isinstance(event, dict)
        order_id = order_of(event, i, identity)
        hash_id = event_hash_id({k: v for k, v in event.items() if k != "eventID"}, context)
        event_id = str(event.get("eventID") or hash_id)
        if event_id in seen:
            raise CaptureError(
                422,
                "duplicate_event_id",
                f"$.epcisBody.eventList[{i}].eventID: {event_id} is also event {seen[event_id]}",
            )
        seen[event_id] = i
        step = event.get("bizStep")
        out.append(
            ParsedEvent(
                index=i,
                event={**event, "eventID": event_id},
                event_id=event_id,
                hash_id=hash_id,
                order_id=order_id,
                event_type=str(event.get("type")),
                biz_step=str(step) if step is not None else None,
                event_time=_unix(str(event["eventTime"])),
            )
        )
    return ParsedCapture(out, prefixes)
