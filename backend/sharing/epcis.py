"""An order's records as a GS1 EPCIS 2.0 ``EPCISDocument`` (JSON-LD), docs/epcis.md.

:func:`build_document` is pure: it takes the records it is given (the order, its
readings, the fleet commitments that hold them, the order's contract events and the
partner events captured for it) and returns the document. What a caller may see is
decided before, by whoever gathers the records; nothing here filters.

Events (each an ``ObjectEvent`` on the consignment, with the purchase order in
``bizTransactionList``):

* shipping (``shipping`` / ``in_transit``) at the order's ``shippedAt``;
* one sensor event per device and UTC hour with readings (``sensor_reporting`` /
  ``in_transit``): min, max and mean temperature (``CEL``), relative humidity (``P1``,
  percent) and shock peak (``K40``, g), and an ``ALARM_CONDITION`` report per quantity
  that left the order's limits in that hour (the first reading out, and the worst value);
* receiving (``receiving`` / ``in_progress``, or ``non_conformant`` when a breach was
  proven) at ``deliveredAt``.

Each event links to the chain in extension fields of the ``ts:`` namespace: the
contract event and its transaction, the fleet commitments (batch, Merkle root,
transaction) of the readings it sums up, the API path of a reading's proof, and the
breach or arrival evidence proven on-chain. Event IDs are CBV event hash IDs
(:mod:`backend.sharing.hashid`); events are sorted by time, then ID, and the
``creationDate`` is the newest event's time, so the same records give the same document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from backend.sharing.hashid import event_hash_id
from backend.sharing.policy import PSEUDONYM_PREFIX

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
#: TrustShip's extension namespace (its prefix is ``ts``).
TS_PREFIX = "ts"
TS_NAMESPACE = "https://trustship.example/ns/epcis/"
SCHEMA_VERSION = "2.0"
#: One sensor event sums up one device's readings of one UTC hour.
WINDOW_SECS = 3600

SHIPPING = ("shipping", "in_transit")
SENSOR = ("sensor_reporting", "in_transit")
RECEIVING = ("receiving", "in_progress")
RECEIVING_BREACHED = ("receiving", "non_conformant")

#: (sensorReport type, uom, reading attribute, divisor to the uom)
QUANTITIES = (
    ("Temperature", "CEL", "temperature_centi_c", 100),  # centi-°C → °C
    ("RelativeHumidity", "P1", "humidity_permille", 10),  # permille → percent
    ("Acceleration", "K40", "shock_milli_g", 1000),  # milli-g → g (standard gravity)
)
ALARM = "ALARM_CONDITION"
EVIDENCE_EVENTS = ("ExcursionProven", "ShockProven")
ARRIVAL_EVENTS = ("ArrivalProven",)


# --- the records it reads (attributes of the store's rows) ----------------------------


class OrderFacts(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def created_at(self) -> int | None: ...
    @property
    def shipped_at(self) -> int | None: ...
    @property
    def delivered_at(self) -> int | None: ...
    @property
    def breached(self) -> bool: ...
    @property
    def late_seconds(self) -> int | None: ...
    @property
    def min_temp_centi_c(self) -> int: ...
    @property
    def max_temp_centi_c(self) -> int: ...
    @property
    def max_humidity_permille(self) -> int: ...
    @property
    def max_shock_milli_g(self) -> int: ...


class ReadingFacts(Protocol):
    @property
    def device(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def temperature_centi_c(self) -> int: ...
    @property
    def humidity_permille(self) -> int: ...
    @property
    def shock_milli_g(self) -> int: ...
    @property
    def batch_seq(self) -> int | None: ...


class CommitmentFacts(Protocol):
    @property
    def batch_seq(self) -> int: ...
    @property
    def root(self) -> bytes: ...
    @property
    def tx_hash(self) -> bytes | None: ...
    @property
    def log_index(self) -> int | None: ...


class ChainEventFacts(Protocol):
    @property
    def event(self) -> str: ...
    @property
    def tx_hash(self) -> bytes: ...
    @property
    def block_number(self) -> int: ...
    @property
    def args(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class CapturedEvent:
    """A partner's event stored by capture: the event as captured (with its eventID) and
    the prefixes its document declared."""

    event: dict[str, Any]
    prefixes: dict[str, str]


@dataclass(frozen=True, slots=True)
class Identity:
    """Whose orders: the chain and the PurchaseOrders contract (docs/epcis.md, "Identifiers")."""

    chain_id: int
    purchase_orders: str

    def _scope(self) -> str:
        return f"{self.chain_id}:{self.purchase_orders.lower()}"

    def po(self, order_id: int) -> str:
        """The purchase order (``bizTransaction`` of type ``po``)."""
        return f"urn:trustship:po:{self._scope()}:{order_id}"

    def consignment(self, order_id: int) -> str:
        """The goods of the order (the events' ``epcList``)."""
        return f"urn:trustship:consignment:{self._scope()}:{order_id}"

    def device(self, address: str) -> str:
        """A device's ``deviceID``: its account as a ``did:pkh`` (CAIP-10) URI, or, for
        a viewer the sharing policy gives only a pseudonym (``pseudonym:<hex>``), that."""
        if address.startswith(PSEUDONYM_PREFIX):
            return f"urn:trustship:device:{address}"
        return f"did:pkh:eip155:{self.chain_id}:{address}"


@dataclass
class EpcisRecords:
    """Everything one order's document is built from."""

    order: OrderFacts
    readings: Sequence[ReadingFacts] = ()
    commitments: Sequence[CommitmentFacts] = ()
    chain_events: Sequence[ChainEventFacts] = ()
    captured: Sequence[CapturedEvent] = field(default_factory=list)


# --- values ------------------------------------------------------------------------------


def iso(ts: int) -> str:
    """Unix seconds as an EPCIS time (UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scaled(value: int | Decimal, divisor: int) -> float:
    return float(Decimal(value) / divisor)


def _mean(values: Sequence[int]) -> Decimal:
    """The mean in the reading's own unit, rounded half up to a whole unit."""
    total, n = sum(values), len(values)
    return Decimal((2 * total + n) // (2 * n))


def _hex(b: bytes | None) -> str | None:
    return None if b is None else "0x" + bytes(b).hex()


def ts(name: str) -> str:
    return f"{TS_PREFIX}:{name}"


def _chain_link(e: ChainEventFacts) -> dict[str, Any]:
    return {ts("event"): e.event, ts("txHash"): _hex(e.tx_hash), ts("block"): e.block_number}


# --- events -------------------------------------------------------------------------------


def _event(
    identity: Identity, order_id: int, at: int, step: tuple[str, str], **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": iso(at),
        "eventTimeZoneOffset": "+00:00",
        "epcList": [identity.consignment(order_id)],
        "action": "OBSERVE",
        "bizStep": step[0],
        "disposition": step[1],
    }
    sensors = extra.pop("sensorElementList", None)
    event["bizTransactionList"] = [{"type": "po", "bizTransaction": identity.po(order_id)}]
    if sensors is not None:
        event["sensorElementList"] = sensors
    event.update({k: v for k, v in extra.items() if v is not None})
    return event


def _reports(order: OrderFacts, window: Sequence[ReadingFacts]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind, uom, attr, divisor in QUANTITIES:
        values = [int(getattr(r, attr)) for r in window]
        out.append(
            {
                "type": kind,
                "minValue": _scaled(min(values), divisor),
                "maxValue": _scaled(max(values), divisor),
                "meanValue": _scaled(_mean(values), divisor),
                "uom": uom,
            }
        )
    out.extend(_alarms(order, window))
    return out


def _limits(order: OrderFacts) -> dict[str, tuple[int | None, int | None]]:
    return {
        "temperature_centi_c": (order.min_temp_centi_c, order.max_temp_centi_c),
        "humidity_permille": (None, order.max_humidity_permille),
        # a zero shock limit is not checked (the contract's rule)
        "shock_milli_g": (None, order.max_shock_milli_g or None),
    }


def _alarms(order: OrderFacts, window: Sequence[ReadingFacts]) -> list[dict[str, Any]]:
    """One ``ALARM_CONDITION`` report per quantity that left the order's limits."""
    out = []
    limits = _limits(order)
    for kind, uom, attr, divisor in QUANTITIES:
        lo, hi = limits[attr]

        def outside(v: int, lo: int | None = lo, hi: int | None = hi) -> int:
            """How far ``v`` is outside [lo, hi] (0 inside)."""
            return max(lo - v if lo is not None else 0, v - hi if hi is not None else 0, 0)

        bad = [r for r in window if outside(int(getattr(r, attr)))]
        if not bad:
            continue
        worst = max(bad, key=lambda r: (outside(int(getattr(r, attr))), -r.timestamp))
        out.append(
            {
                "type": kind,
                "exception": ALARM,
                "time": iso(bad[0].timestamp),
                "value": _scaled(int(getattr(worst, attr)), divisor),
                "uom": uom,
            }
        )
    return out


def _windows(readings: Iterable[ReadingFacts]) -> dict[tuple[str, int], list[ReadingFacts]]:
    out: dict[tuple[str, int], list[ReadingFacts]] = {}
    for r in sorted(readings, key=lambda r: (r.device, r.timestamp, r.seq)):
        out.setdefault((r.device, r.timestamp // WINDOW_SECS), []).append(r)
    return out


def _evidence_in(
    events: Sequence[ChainEventFacts], device: str, seqs: tuple[int, int]
) -> list[dict[str, Any]]:
    """The breach evidence proven on-chain that starts with one of these readings."""
    out = []
    for e in events:
        if e.event not in EVIDENCE_EVENTS or e.args.get("device") != device:
            continue
        first = int(e.args.get("firstSeq", e.args.get("seq", -1)))
        if seqs[0] <= first <= seqs[1]:
            link = _chain_link(e)
            link[ts("firstSeq")] = first
            link[ts("lastSeq")] = int(e.args.get("lastSeq", first))
            out.append(link)
    return out


def _sensor_event(
    records: EpcisRecords,
    identity: Identity,
    window: Sequence[ReadingFacts],
    commitments: Mapping[int, CommitmentFacts],
    proof_base: str,
) -> dict[str, Any]:
    order = records.order
    first, last = window[0], window[-1]
    device = first.device
    committed = [r for r in window if r.batch_seq is not None and r.batch_seq in commitments]
    batches = sorted({r.batch_seq for r in committed if r.batch_seq is not None})
    links = [
        {
            ts("batchSeq"): c.batch_seq,
            ts("root"): _hex(c.root),
            ts("txHash"): _hex(c.tx_hash),
            ts("logIndex"): c.log_index,
        }
        for c in (commitments[b] for b in batches)
    ]
    seqs = (min(r.seq for r in window), max(r.seq for r in window))
    return _event(
        identity,
        order.id,
        last.timestamp,
        SENSOR,
        sensorElementList=[
            {
                "sensorMetadata": {
                    "startTime": iso(first.timestamp),
                    "endTime": iso(last.timestamp),
                    "deviceID": identity.device(device),
                },
                "sensorReport": _reports(order, window),
            }
        ],
        **{
            ts("readings"): {
                ts("count"): len(window),
                ts("firstSeq"): seqs[0],
                ts("lastSeq"): seqs[1],
                ts("committed"): len(committed),
            },
            ts("commitments"): [{k: v for k, v in c.items() if v is not None} for c in links]
            or None,
            ts("proof"): (  # the proof route names the device: not for a pseudonym
                f"{proof_base}/orders/{order.id}/readings/{device}/{committed[0].seq}/proof"
                if committed and not device.startswith(PSEUDONYM_PREFIX)
                else None
            ),
            ts("evidence"): _evidence_in(records.chain_events, device, seqs) or None,
        },
    )


def _first(events: Sequence[ChainEventFacts], name: str) -> ChainEventFacts | None:
    return next((e for e in events if e.event == name), None)


def _with_id(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {**event, "eventID": event_hash_id(event, context)}


def context(captured: Sequence[CapturedEvent] = ()) -> list[Any]:
    """The document's ``@context``: EPCIS 2.0's, then our prefix and the partners'."""
    prefixes = {TS_PREFIX: TS_NAMESPACE}
    for c in captured:
        for p, iri in c.prefixes.items():
            prefixes.setdefault(p, iri)
    return [EPCIS_CONTEXT, dict(sorted(prefixes.items()))]


def order_events(
    records: EpcisRecords, identity: Identity, *, proof_base: str = ""
) -> list[dict[str, Any]]:
    """The order's own events (with their hash IDs), by time then ID."""
    order, chain = records.order, records.chain_events
    ctx = context()
    events: list[dict[str, Any]] = []
    if order.shipped_at:
        shipped = _first(chain, "OrderShipped")
        events.append(
            _event(
                identity,
                order.id,
                order.shipped_at,
                SHIPPING,
                **{ts("chainEvent"): _chain_link(shipped) if shipped else None},
            )
        )
    commitments = {c.batch_seq: c for c in records.commitments if c.tx_hash is not None}
    for window in _windows(records.readings).values():
        events.append(_sensor_event(records, identity, window, commitments, proof_base))
    if order.delivered_at:
        delivered = _first(chain, "OrderDelivered")
        arrivals = [_chain_link(e) for e in chain if e.event in ARRIVAL_EVENTS]
        events.append(
            _event(
                identity,
                order.id,
                order.delivered_at,
                RECEIVING_BREACHED if order.breached else RECEIVING,
                **{
                    ts("chainEvent"): _chain_link(delivered) if delivered else None,
                    ts("lateSeconds"): order.late_seconds,
                    ts("evidence"): arrivals or None,
                },
            )
        )
    return sorted((_with_id(e, ctx) for e in events), key=_sort_key)


def _sort_key(event: Mapping[str, Any]) -> tuple[str, str]:
    when = datetime.fromisoformat(str(event["eventTime"]).replace("Z", "+00:00"))
    return (when.astimezone(UTC).isoformat(), str(event.get("eventID", "")))


def build_document(
    records: EpcisRecords, identity: Identity, *, proof_base: str = ""
) -> dict[str, Any]:
    """The order's ``EPCISDocument``: its own events and the captured partner events.

    ``proof_base`` prefixes the proof paths (e.g. the API's URL; default: a path).
    """
    events = order_events(records, identity, proof_base=proof_base)
    events += [dict(c.event) for c in records.captured]
    events.sort(key=_sort_key)
    created = max(
        (_sort_key(e)[0] for e in events),
        default=datetime.fromtimestamp(records.order.created_at or 0, UTC).isoformat(),
    )
    return {
        "@context": context(records.captured),
        "type": "EPCISDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": datetime.fromisoformat(created).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "epcisBody": {"eventList": events},
    }
