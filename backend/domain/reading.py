"""The reading: one definition of its fields (DESIGN.md §2, §3).

:class:`ReadingFields` declares the nine integers once, each with its Solidity type
(the EIP-712 ``Reading`` type and ``IQualityVerification.Reading``). :class:`Reading`
(validated) and the rules' view :class:`StoredReading` (plus row id, device and
arrival time) inherit them; the wire names, the ranges, the EIP-712 type list, the
database columns (backend/store) and the API's reading schemas follow from them, or
are checked against them in tests/domain, which also reads the struct from the ABI.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any

from backend.core.errors import WireError
from backend.domain.fields import field_specs, solidity
from backend.domain.sensitivity import HIGH, LOW, MEDIUM, Coarsening, classed

FLAG_DOOR_OPEN = 1 << 0
FLAG_TAMPER = 1 << 1
FLAG_SENSOR_FAULT = 1 << 2


@dataclass(frozen=True, slots=True)
class ReadingFields:
    """The reading's nine integers in struct order, each with its Solidity type: the one
    declaration that :class:`Reading` validates and :class:`StoredReading` extends."""

    order_id: int = field(metadata=solidity("uint256") | classed(LOW))
    seq: int = field(metadata=solidity("uint32") | classed(LOW))
    timestamp: int = field(metadata=solidity("uint64") | classed(MEDIUM))
    temperature_centi_c: int = field(metadata=solidity("int32") | classed(MEDIUM))
    humidity_permille: int = field(metadata=solidity("uint16") | classed(MEDIUM))
    shock_milli_g: int = field(metadata=solidity("uint32") | classed(MEDIUM))
    latitude_e6: int = field(
        metadata=solidity("int32", lo=-90_000_000, hi=90_000_000) | classed(HIGH, Coarsening.REGION)
    )
    longitude_e6: int = field(
        metadata=solidity("int32", lo=-180_000_000, hi=180_000_000)
        | classed(HIGH, Coarsening.REGION)
    )
    flags: int = field(default=0, metadata=solidity("uint8") | classed(MEDIUM))


@dataclass(frozen=True, slots=True)
class Reading(ReadingFields):
    """One sensor reading in integer units (DESIGN.md §2), checked against its fields'
    types and ranges."""

    def __post_init__(self) -> None:
        for wire, attr, lo, hi in _CHECKS:
            value = getattr(self, attr)
            if type(value) is not int:  # bool and float are refused
                raise WireError(
                    "bad_type", f"{wire} must be an integer, got {type(value).__name__}"
                )
            if not lo <= value <= hi:
                raise WireError("out_of_range", f"{wire}={value} is outside [{lo}, {hi}]")

    def to_wire(self) -> dict[str, int]:
        """The reading's fields under their wire (EIP-712) names."""
        return dict(zip(READING_FIELDS, _values(self), strict=True))

    def as_tuple(self) -> tuple[int, ...]:
        """The fields in EIP-712 order, as the contract's ``Reading`` struct takes them."""
        return _values(self)

    def values(self) -> dict[str, int]:
        """The fields by attribute name (the database columns' names)."""
        return dict(zip(READING_ATTRS, _values(self), strict=True))

    @classmethod
    def from_wire(cls, fields: dict[str, Any]) -> Reading:
        return cls(*(fields[wire] for wire in READING_FIELDS))

    @classmethod
    def of(cls, source: Any) -> Reading:
        """The reading held by any object with the reading's attributes (a stored row,
        a :class:`StoredReading`); validated like any other."""
        return cls(*_values(source))


#: The reading's fields as declared: attribute, wire name, Solidity type, range.
READING_SPEC = field_specs(ReadingFields)
#: Attribute names (= database columns, API fields), in struct order.
READING_ATTRS: tuple[str, ...] = tuple(f.attr for f in READING_SPEC)
#: Wire names (= EIP-712 and Solidity struct names), in struct order.
READING_FIELDS: tuple[str, ...] = tuple(f.wire for f in READING_SPEC)
FIELD_RANGES: dict[str, tuple[int, int]] = {
    f.wire: (f.lo, f.hi) for f in READING_SPEC if f.lo is not None and f.hi is not None
}
EIP712_TYPES: tuple[tuple[str, str], ...] = tuple((f.wire, f.sol_type) for f in READING_SPEC)
_CHECKS: tuple[tuple[str, str, int, int], ...] = tuple(
    (f.wire, f.attr, *FIELD_RANGES[f.wire]) for f in READING_SPEC
)
_values = attrgetter(*READING_ATTRS)


@dataclass(frozen=True, slots=True)
class SignedReading:
    """A reading with the device that claims it and that device's signature."""

    reading: Reading
    device: str  # checksummed address
    signature: bytes  # 65 bytes r || s || v (v = 27 or 28)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reading": asdict(self.reading),
            "device": self.device,
            "signature": "0x" + self.signature.hex(),
        }


def signed_reading(row: Any) -> SignedReading:
    """The signed reading held by a stored row (the reading's attributes, ``device`` and
    ``signature``), as the contracts take it for evidence."""
    return SignedReading(Reading.of(row), row.device, bytes(row.signature))


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReading(ReadingFields):
    """A stored reading as the rules see it: the reading's fields, flat (not checked
    again), with its row id, device and arrival time (no signature: chain actions load
    it by id)."""

    id: int
    device: str
    received_at: float

    @classmethod
    def of(cls, reading_id: int, signed: SignedReading, received_at: float) -> StoredReading:
        """The view of a reading just stored under ``reading_id``."""
        return cls(
            *signed.reading.as_tuple(), id=reading_id, device=signed.device, received_at=received_at
        )

    @classmethod
    def from_row(cls, row: Any) -> StoredReading:
        """The view of a stored row (any object with these attributes)."""
        return cls(*_values(row), id=row.id, device=row.device, received_at=row.received_at)


#: :class:`StoredReading`'s fields: the reading's fields, row id, device, arrival time.
STORED_READING_ATTRS: tuple[str, ...] = (*READING_ATTRS, "id", "device", "received_at")


@dataclass
class ReadingWindow:
    """One device's latest stored readings, by seq (the rules' and the risk model's view)."""

    by_seq: dict[int, StoredReading] = field(default_factory=dict)
    seqs: list[int] = field(default_factory=list)

    def add(self, r: StoredReading, keep: int | None = None) -> None:
        """Add (or replace) ``r``; with ``keep``, then keep only the ``keep`` highest seqs."""
        if r.seq not in self.by_seq:
            bisect.insort(self.seqs, r.seq)
        self.by_seq[r.seq] = r
        if keep is not None:
            self.trim(keep)

    def trim(self, keep: int) -> None:
        """Keep only the ``keep`` highest seqs."""
        if len(self.seqs) > keep:
            for s in self.seqs[: len(self.seqs) - keep]:
                del self.by_seq[s]
            del self.seqs[: len(self.seqs) - keep]

    @property
    def head(self) -> StoredReading | None:
        return self.by_seq[self.seqs[-1]] if self.seqs else None

    def readings(self) -> list[StoredReading]:
        return [self.by_seq[s] for s in self.seqs]

    def last(self, n: int) -> list[StoredReading]:
        return [self.by_seq[s] for s in self.seqs[-n:]]
