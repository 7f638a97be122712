"""Sensitivity classes: how far a field or record may travel (DESIGN.md §11, docs/sharing.md).

Every field the system holds or serves has one class, declared once with its
definition:

* the domain records carry it in their fields' metadata, next to the Solidity type
  (``field(metadata=solidity("int32") | classed(HIGH, Coarsening.REGION))`` in
  :class:`backend.domain.reading.ReadingFields`, :class:`backend.domain.order.Terms`,
  :class:`backend.domain.alert.Alert`); :func:`field_classes` reads them;
* records that exist only as API answers declare a :class:`Classified` beside their
  schema (``__sensitivity__`` in backend/api/schemas.py), and the schemas built from a
  domain record take the record's classes from here.

``low`` flows to any authenticated party; ``medium`` inside the owner's
jurisdiction, across a border only under an approved grant; ``high`` never leaves
it: a viewer elsewhere gets the field's :class:`Coarsening` (or nothing). The policy
itself is backend/sharing/policy.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

_SENSITIVITY = "sensitivity"


class Sensitivity(StrEnum):
    """The three classes, lowest first."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Sensitivity.LOW: 0, Sensitivity.MEDIUM: 1, Sensitivity.HIGH: 2}

LOW, MEDIUM, HIGH = Sensitivity.LOW, Sensitivity.MEDIUM, Sensitivity.HIGH


class Coarsening(StrEnum):
    """What a viewer outside the jurisdiction gets of a ``high`` field."""

    #: Nothing: the field is null (a key, a signature, an account, an exact route).
    WITHHOLD = "withhold"
    #: A position in micro-degrees rounded to whole degrees (about 111 km: a region).
    REGION = "region"
    #: A device or account address replaced by a stable pseudonym (never reversible
    #: without a list of candidates; the same device gets the same pseudonym).
    PSEUDONYM = "pseudonym"


class Owner(StrEnum):
    """Whose data a record is (docs/sharing.md, "Whose data")."""

    #: The agreement: terms, prices, settlement, the order's events — buyer and supplier.
    AGREEMENT = "agreement"
    #: What the supplier's devices produce: readings, alerts, risk, positions, devices.
    TELEMETRY = "telemetry"
    #: The caller's own account (always its own jurisdiction).
    CALLER = "caller"
    #: Nobody's in particular: public aggregates and service data (always low).
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class FieldClass:
    sensitivity: Sensitivity
    coarsening: Coarsening = Coarsening.WITHHOLD


def classed(sensitivity: Sensitivity, coarsening: Coarsening | None = None) -> dict[str, Any]:
    """Field metadata: the field's sensitivity class (and, for ``high``, its coarsening)."""
    if coarsening is not None and sensitivity is not HIGH:
        raise ValueError("only a high field is coarsened")
    return {_SENSITIVITY: FieldClass(sensitivity, coarsening or Coarsening.WITHHOLD)}


def field_classes(record: type[Any]) -> dict[str, FieldClass]:
    """The class of every field of a domain dataclass; a field without one is an error."""
    out: dict[str, FieldClass] = {}
    for f in dataclasses.fields(record):
        fc = f.metadata.get(_SENSITIVITY)
        if fc is None:
            raise TypeError(f"{record.__name__}.{f.name} declares no sensitivity class")
        out[f.name] = fc
    return out


@dataclass(frozen=True)
class Classified:
    """A record's class (what a viewer refused it loses: the whole record), whose data it
    is, and the class of each of its fields (a field may be higher than its record)."""

    record: Sensitivity
    owner: Owner
    fields: Mapping[str, FieldClass] = field(default_factory=dict)

    def of(self, name: str) -> FieldClass:
        return self.fields[name]


def fields_of(default: Sensitivity, names: Any, **special: FieldClass) -> dict[str, FieldClass]:
    """``names`` all of class ``default`` except those given in ``special``."""
    out = {n: FieldClass(default) for n in names}
    unknown = set(special) - set(out)
    if unknown:
        raise ValueError(f"classes for fields that are not there: {sorted(unknown)}")
    out.update(special)
    return out


#: Classes of the order's own fields besides its terms (the contract's ``Order`` slot,
#: its parties and outcome): state and outcome are low, the parties are part of the
#: agreement (medium), the delivery confirmation's account is high.
ORDER_FIELD_CLASSES: dict[str, FieldClass] = {
    "id": FieldClass(LOW),
    "state": FieldClass(LOW),
    "funded": FieldClass(LOW),
    "breached": FieldClass(LOW),
    "created_at": FieldClass(LOW),
    "shipped_at": FieldClass(LOW),
    "delivered_at": FieldClass(LOW),
    "disputed_at": FieldClass(LOW),
    "late_seconds": FieldClass(LOW),
    "settlement": FieldClass(LOW),  # the settlement outcome
    "updated_block": FieldClass(LOW),
    "buyer": FieldClass(MEDIUM),
    "supplier": FieldClass(MEDIUM),
    "arbiter": FieldClass(MEDIUM),
    "delivery_confirmed_by": FieldClass(HIGH, Coarsening.PSEUDONYM),
    "terms": FieldClass(MEDIUM),
}
