"""Chain actions: what the oracle decides to do on chain, as a closed set of typed records.

The rules, the batcher and the indexer create them; the outbox stores each as its
``kind`` and a JSON payload (backend/store: ``outbox.kind``, ``outbox.payload``) and
the executor (backend/oracle/chain_actions.py) turns it back into the record and
the record into a contract call. The payload is derived from the record's fields
(everything but ``order_id``, which has its own column): integers and strings as
they are, ``bytes`` as 0x-hex, tuples of integers as lists. Decoding is strict:
a payload with a missing, extra or mistyped field is refused with
:class:`ActionPayloadError`.

=================  ===================  ==================  ====  ==================
kind               record               dedup key           rank  contract call
=================  ===================  ==================  ====  ==================
``commit_batch``   :class:`CommitBatch`   commit:{batch}      0     commitFleetRoot
``anchor_disclosures`` :class:`AnchorDisclosures` anchor:{seq} 0  (a transaction to itself)
``prove_excursion`` :class:`ProveExcursion` breach:{o}        0     proveExcursion
``prove_shock``    :class:`ProveShock`    breach:{o}          0     proveShock
``prove_arrival``  :class:`ProveArrival`  arrival:{o}         1     proveArrival
``settle``         :class:`Settle`        settle:{o}          2     settleOrder
=================  ===================  ==================  ====  ==================

The disclosure log's head (docs/sharing.md, "Anchoring") is anchored with the next
fleet commitment: a zero-value transaction from the oracle's account to itself whose
input is the head (``backend.sharing.anchor.payload``), in the commitments' lane.

Commitments run in a lane of their own (a stuck commitment never holds back breach
evidence); a fleet commitment covers every order's readings, so its ``order_id`` is
:data:`FLEET` (0, never an order id). In the other lane an order's actions run by
rank: breach evidence, then the arrival proof, then settlement. Evidence carries no
terms or certificates: the executor reads the order's terms and each device's
certificate from the store (the indexer's ``orders`` and ``devices`` rows).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from backend.core.errors import TrustShipError

#: The lane of commitments; every other action runs in :data:`ACTION_LANE`.
COMMIT_LANE = "commit"
ACTION_LANE = "action"

#: The ``order_id`` of a fleet commitment (order ids start at 1).
FLEET = 0

RANK_BREACH = 0
RANK_ARRIVAL = 1
RANK_SETTLE = 2


class ActionPayloadError(TrustShipError):
    """Raised when an outbox entry's kind is unknown or its payload is not that kind's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainAction:
    """One chain action for one order (the base of the closed set below)."""

    #: The outbox's ``kind`` column.
    kind: ClassVar[str]
    #: Commitments and actions are separate per-order lanes.
    lane: ClassVar[str] = ACTION_LANE
    #: Order within an order's lane (lower first).
    rank: ClassVar[int] = RANK_BREACH

    #: The dedup key is ``<dedup>:<the dedup_by field>``.
    dedup: ClassVar[str]
    dedup_by: ClassVar[str] = "order_id"

    order_id: int

    @property
    def dedup_key(self) -> str:
        """Two actions with the same key are the same action: the outbox keeps the first."""
        return self.key_for(getattr(self, self.dedup_by))

    @classmethod
    def key_for(cls, value: object) -> str:
        """The dedup key of this kind's action whose ``dedup_by`` field is ``value``."""
        return f"{cls.dedup}:{value}"

    def payload(self) -> dict[str, Any]:
        """The JSON payload stored in the outbox (all fields but ``order_id``)."""
        return {name: _encode(getattr(self, name)) for name, _ in _payload_fields(type(self))}

    @classmethod
    def from_payload(cls, order_id: int, payload: dict[str, Any]) -> typing.Self:
        """The action from its outbox payload; :class:`ActionPayloadError` if it does not fit."""
        wanted = _payload_fields(cls)
        names = {name for name, _ in wanted}
        if not isinstance(payload, dict) or set(payload) != names:
            got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
            raise ActionPayloadError(
                f"{cls.kind} payload has fields {got}, expected {sorted(names)}"
            )
        values = {name: _decode(cls.kind, name, payload[name], t) for name, t in wanted}
        return cls(order_id=order_id, **values)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitBatch(ChainAction):
    """Commit the Merkle root of the fleet's next batch of readings (``order_id`` :data:`FLEET`)."""

    kind: ClassVar[str] = "commit_batch"
    dedup: ClassVar[str] = "commit"
    dedup_by: ClassVar[str] = "batch_seq"
    lane: ClassVar[str] = COMMIT_LANE

    batch_seq: int
    root: bytes
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorDisclosures(ChainAction):
    """Publish the disclosure log's head on chain (``order_id`` :data:`FLEET`)."""

    kind: ClassVar[str] = "anchor_disclosures"
    dedup: ClassVar[str] = "anchor"
    dedup_by: ClassVar[str] = "head_seq"
    lane: ClassVar[str] = COMMIT_LANE

    head_seq: int
    head_hash: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ProveExcursion(ChainAction):
    """Prove a breach by a device's consecutive out-of-range readings."""

    kind: ClassVar[str] = "prove_excursion"
    dedup: ClassVar[str] = "breach"

    device: str
    #: The evidence, in seq order (readings' row ids).
    reading_ids: tuple[int, ...]
    first_seq: int
    last_seq: int
    started_at: int
    ended_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProveShock(ChainAction):
    """Prove a breach by one reading over the shock limit."""

    kind: ClassVar[str] = "prove_shock"
    dedup: ClassVar[str] = "breach"

    reading_id: int
    device: str
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProveArrival(ChainAction):
    """Prove delivery by readings inside the destination geofence: one per witness, as
    many as the terms' ``arrival_quorum`` (one device of each issuer for a quorum of 2).
    ``timestamp`` is the latest of them (the delivery time the contract records); the
    earliest proof wins."""

    kind: ClassVar[str] = "prove_arrival"
    dedup: ClassVar[str] = "arrival"
    rank: ClassVar[int] = RANK_ARRIVAL

    reading_ids: tuple[int, ...]
    devices: tuple[str, ...]
    timestamp: int

    def earlier_than(self, other: ChainAction) -> bool:
        """Whether this proof should replace ``other`` (a later arrival of the same order)."""
        return isinstance(other, ProveArrival) and other.timestamp > self.timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class Settle(ChainAction):
    """Settle an order once its dispute window has closed."""

    kind: ClassVar[str] = "settle"
    dedup: ClassVar[str] = "settle"
    rank: ClassVar[int] = RANK_SETTLE

    dispute_window_closes_at: int


#: The closed set of actions, by kind.
ACTIONS: dict[str, type[ChainAction]] = {
    cls.kind: cls
    for cls in (CommitBatch, AnchorDisclosures, ProveExcursion, ProveShock, ProveArrival, Settle)
}
KINDS: tuple[str, ...] = tuple(ACTIONS)


def decode_action(kind: str, order_id: int, payload: dict[str, Any]) -> ChainAction:
    """An outbox entry's action; :class:`ActionPayloadError` for an unknown kind or a
    payload that is not that kind's."""
    cls = ACTIONS.get(kind)
    if cls is None:
        raise ActionPayloadError(f"unknown action kind {kind!r}")
    return cls.from_payload(order_id, payload)


def lane(kind: str) -> str:
    """The lane of an action kind (unknown kinds run in the action lane)."""
    cls = ACTIONS.get(kind)
    return cls.lane if cls is not None else ACTION_LANE


# --------------------------------------------------------------------- the codec


_FIELDS: dict[type[ChainAction], tuple[tuple[str, Any], ...]] = {}


def _payload_fields(cls: type[ChainAction]) -> tuple[tuple[str, Any], ...]:
    """(name, type) of each payload field of ``cls``: all its fields but ``order_id``."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = tuple(
            (f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.name != "order_id"
        )
        _FIELDS[cls] = found
    return found


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(kind: str, name: str, value: Any, t: Any) -> Any:
    def bad(expected: str) -> ActionPayloadError:
        return ActionPayloadError(f"{kind} payload field {name}={value!r} is not {expected}")

    if t is int:
        if type(value) is not int:
            raise bad("an integer")
        return value
    if t is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if t is bytes:
        if not isinstance(value, str) or not value.startswith("0x"):
            raise bad("0x-hex")
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise bad("0x-hex") from None
    if typing.get_origin(t) is tuple and typing.get_args(t)[1:] == (Ellipsis,):
        (item,) = typing.get_args(t)[:1]
        if not isinstance(value, list):
            raise bad("a list")
        return tuple(_decode(kind, name, v, item) for v in value)
    raise TypeError(f"{kind}.{name}: no payload codec for {t!r}")
