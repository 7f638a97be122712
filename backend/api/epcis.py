"""EPCIS 2.0 for the API and the CLI: gather an order's records, build and check the
document, and store a partner's captured events (docs/epcis.md).

:func:`epcis_records_for` is the one place that decides which records of an order go
into its EPCIS document for a viewer: it reads them with the same queries as the REST
read routes. The sensitivity policy (backend/sharing) filters here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.api import queries
from backend.api.errors import ApiError
from backend.api.parties import Party, PartyRegistry
from backend.api.sharing import owners_of
from backend.core.settings import Settings
from backend.domain.sensitivity import HIGH, MEDIUM, Coarsening, Owner
from backend.sharing import disclosures
from backend.sharing import grants as grant_store
from backend.sharing.capture import CaptureError, ParsedCapture, parse_capture
from backend.sharing.epcis import CapturedEvent, EpcisRecords, Identity, build_document
from backend.sharing.policy import (
    Decision,
    DisclosureNote,
    Outcome,
    Pseudonyms,
    Redaction,
    Statement,
    decide,
)
from backend.sharing.schema import EpcisSchema, SchemaUnavailableError, load_schema
from backend.store import repositories as repo

log = logging.getLogger(__name__)

#: The indexer's cursor names the deployment it indexes: ``chain id:PurchaseOrders:block``.
INDEXER_CURSOR = "chain"


def schema_of(settings: Settings) -> EpcisSchema:
    """GS1's schema from ``EPCIS_SCHEMA_DIR``; 503 naming the setting when it is missing."""
    try:
        return load_schema(settings.EPCIS_SCHEMA_DIR)
    except SchemaUnavailableError as exc:
        raise ApiError(503, "epcis_schema_unavailable", str(exc)) from None


def check_schema_dir(settings: Settings) -> str | None:
    """What is wrong with ``EPCIS_SCHEMA_DIR`` (None: the schema loads), for startup."""
    try:
        load_schema(settings.EPCIS_SCHEMA_DIR)
    except SchemaUnavailableError as exc:
        return str(exc)
    return None


def identity_of(
    session: Session, chain_id: int | None = None, purchase_orders: str | None = None
) -> Identity:
    """Whose order ids these are: the given deployment, else the one the indexer recorded."""
    if chain_id is not None and purchase_orders is not None:
        return Identity(chain_id, purchase_orders)
    recorded = repo.get_cursor_deployment(session, INDEXER_CURSOR)
    parts = (recorded or "").split(":")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].startswith("0x"):
        return Identity(int(parts[0]), parts[1])
    raise ApiError(
        503,
        "no_deployment",
        "the order identifiers need the contract deployment (chain id, PurchaseOrders), "
        "which neither this API nor the database's indexer names yet",
    )


@dataclass(frozen=True, slots=True)
class _Pseudonymous:
    """A reading as a viewer elsewhere gets it: its device named by a pseudonym."""

    row: Any
    device: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)


@dataclass(frozen=True, slots=True)
class EpcisShare:
    """What the sharing policy lets one viewer have of one order's EPCIS document: the
    readings (medium telemetry), the devices' identities (high: a pseudonym elsewhere)
    and the partner events captured for the order (medium agreement data). Contract
    events, commitments and the outcome are low: everyone who sees the order gets them."""

    readings: Decision
    devices: Decision
    captured: Decision
    #: how the viewer's document names the devices when ``devices`` coarsens them
    pseudonyms: Pseudonyms

    def statement(self, order_id: int, viewer_jurisdiction: str) -> Statement:
        redactions = []
        notes = []
        for path, d, action in (
            ("readings", self.readings, "left_out"),
            ("deviceID", self.devices, "coarsened"),
            ("captured", self.captured, "left_out"),
        ):
            if d.outcome is Outcome.ALLOW_UNDER_GRANT and d.grant_id is not None:
                notes.append(
                    DisclosureNote(
                        order_id, d.grant_id, d.sensitivity.value, d.owner_jurisdiction or ""
                    )  # fmt: skip
                )
            elif not d.outcome.releases:
                redactions.append(
                    Redaction(order_id, path, d.sensitivity.value, action, d.rule.value, d.reason)
                )
        return Statement(viewer_jurisdiction, tuple(redactions), tuple(notes))


def epcis_share(
    session: Session,
    parties: PartyRegistry,
    viewer: Party,
    order_id: int,
    now: int,
    pseudonyms: Pseudonyms,
) -> EpcisShare:
    """The policy's decisions for ``viewer`` on ``order_id``'s document (the same
    :func:`backend.sharing.policy.decide` every REST answer passes through)."""
    who = viewer.viewer()
    owners = owners_of(session, parties, order_id)
    grants = grant_store.of_viewer(session, who.address, order_id)
    return EpcisShare(
        readings=decide(who, owners, Owner.TELEMETRY, MEDIUM, grants, now),
        devices=decide(who, owners, Owner.TELEMETRY, HIGH, grants, now, Coarsening.PSEUDONYM),
        captured=decide(who, owners, Owner.AGREEMENT, MEDIUM, grants, now),
        pseudonyms=pseudonyms,
    )


def epcis_records_for(
    session: Session, viewer: Party, order: queries.OrderRecord, share: EpcisShare | None = None
) -> EpcisRecords:
    """The records of ``order`` that ``viewer`` gets in its EPCIS document.

    ``viewer`` already sees the order (the caller checked). Every record is read with
    the REST read routes' queries; ``share`` (the policy's decisions for this viewer,
    :func:`epcis_share`; None: the operator's own export) leaves out the readings or the
    captured events and names the devices by pseudonyms where the policy says so.
    """
    captured, _ = queries.epcis_events(session, order.id)
    readings: list[Any] = []
    if share is None or share.readings.outcome.releases:
        readings = list(queries.all_readings(session, order.id))
        if share is not None and not share.devices.outcome.releases:
            readings = [_Pseudonymous(r, share.pseudonyms.of(str(r.device))) for r in readings]
    if share is not None and not share.captured.outcome.releases:
        captured = []
    return EpcisRecords(
        order=order,
        readings=readings,
        commitments=queries.all_commitments(session, order.id),
        chain_events=queries.all_chain_events(session, order.id),
        captured=[CapturedEvent(dict(r.event), dict(r.prefixes)) for r in captured],
    )


def export_document(
    session: Session,
    viewer: Party,
    order: queries.OrderRecord,
    identity: Identity,
    schema: EpcisSchema,
    *,
    proof_base: str = "",
    parties: PartyRegistry | None = None,
    pseudonyms: Pseudonyms | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """The order's EPCISDocument for ``viewer``, checked against GS1's schema. With
    ``parties`` and the viewer's ``pseudonyms`` (the API) the sharing policy filters it: what it
    held back is stated in the document's ``ts:policy`` member, and each release under a
    grant is written to the disclosure log."""
    at = int(now if now is not None else time.time())
    share = None
    if parties is not None and len(parties.jurisdictions()) > 1:
        if pseudonyms is None:
            raise ValueError("the sharing policy's export needs the viewer's pseudonyms")
        share = epcis_share(session, parties, viewer, order.id, at, pseudonyms)
    document = build_document(
        epcis_records_for(session, viewer, order, share), identity, proof_base=proof_base
    )
    if share is not None:
        statement = share.statement(order.id, viewer.jurisdiction)
        if statement.disclosures:
            disclosures.append(
                session, viewer.viewer(), statement.disclosures,
                "GET /orders/{order_id}/epcis", at,
            )  # fmt: skip
        if not statement.empty:
            document["ts:policy"] = statement.as_json()
    violations = schema.violations(document)
    if violations:  # a bug of ours: never hand out a document that breaks the schema
        log.error("EPCIS export of order %s breaks the schema: %s", order.id, violations)
        raise ApiError(
            500,
            "epcis_export_invalid",
            f"the EPCIS document of order {order.id} breaks the schema: {violations[0]}",
        )
    return document


# --- capture ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    #: (order id, event id) stored now, and those that were stored already.
    captured: list[tuple[int, str]]
    duplicates: list[tuple[int, str]]


def parse(body: bytes, settings: Settings, identity: Identity) -> ParsedCapture:
    """Check a capture body (size, JSON, schema, order references) or raise its 4xx."""
    schema = schema_of(settings)
    try:
        return parse_capture(
            body,
            schema,
            identity,
            max_bytes=settings.EPCIS_CAPTURE_MAX_BYTES,
            max_events=settings.EPCIS_CAPTURE_MAX_EVENTS,
        )
    except CaptureError as exc:
        raise ApiError(exc.status, exc.code, exc.message, details=exc.details) from None


def _check_orders(session: Session, party: Party, parsed: ParsedCapture) -> None:
    for order_id in sorted({e.order_id for e in parsed.events}):
        first = next(e.index for e in parsed.events if e.order_id == order_id)
        row = queries.get_order(session, party, order_id)
        if row is None:
            raise ApiError(
                404,
                "not_found",
                f"order {order_id} not found (named by $.epcisBody.eventList[{first}])",
            )
        if party.address not in (row.buyer, row.supplier, row.arbiter):
            raise ApiError(
                403,
                "forbidden",
                f"party {party.name!r} is not a party to order {order_id}: only its buyer, "
                "supplier or arbiter captures events for it",
            )


def _check_prefixes(session: Session, parsed: ParsedCapture) -> None:
    """A prefix means one namespace in an order's document: a partner may not reuse a
    prefix an earlier capture of the same order declared for another namespace."""
    for order_id in sorted({e.order_id for e in parsed.events}):
        stored, _ = queries.epcis_events(session, order_id)
        for row in stored:
            for prefix, iri in row.prefixes.items():
                if parsed.prefixes.get(prefix, iri) != iri:
                    raise ApiError(
                        422,
                        "prefix_conflict",
                        f"$.@context: prefix {prefix!r} of order {order_id}'s events is "
                        f"{iri}, not {parsed.prefixes[prefix]}",
                    )


def store_capture(session: Session, party: Party, parsed: ParsedCapture) -> CaptureOutcome:
    """Store the document's new events in one transaction (all or nothing); an event
    stored before with the same ID and content is a duplicate, with other content 409."""
    _check_orders(session, party, parsed)
    _check_prefixes(session, parsed)
    for attempt in range(2):
        stored = repo.epcis_events_by_id(session, [e.event_id for e in parsed.events])
        new, dups = [], []
        for e in parsed.events:
            row = stored.get(e.event_id)
            if row is None:
                new.append(e)
                continue
            if row.order_id != e.order_id or row.event != e.event:
                raise ApiError(
                    409,
                    "event_id_conflict",
                    f"$.epcisBody.eventList[{e.index}]: event {e.event_id} is stored already "
                    "with other content",
                )
            dups.append((e.order_id, e.event_id))
        now = time.time()
        repo.add_epcis_events(
            session,
            [
                {
                    "event_id": e.event_id,
                    "hash_id": e.hash_id,
                    "order_id": e.order_id,
                    "event_type": e.event_type,
                    "biz_step": e.biz_step,
                    "event_time": e.event_time,
                    "event": e.event,
                    "prefixes": parsed.prefixes,
                    "captured_by": party.address,
                    "captured_by_name": party.name,
                    "captured_at": now,
                }
                for e in new
            ],
        )
        try:
            session.commit()
        except IntegrityError:  # the same event captured at the same moment elsewhere
            session.rollback()
            if attempt:
                raise
            continue
        return CaptureOutcome([(e.order_id, e.event_id) for e in new], dups)
    raise AssertionError("unreachable")  # pragma: no cover
