"""The sensitivity policy: one decision function, and one filter that applies it.

**The decision** — :func:`decide` (viewer, the order's owners and their
jurisdictions, a class, the viewer's grants on the order, now) → a :class:`Decision`:

* ``low`` → allow (any authenticated party);
* the viewer owns the data (the supplier for telemetry; buyer or supplier for the
  agreement), or is in an owner's jurisdiction → allow;
* ``medium`` across a border → allow under an approved, unexpired grant of that order
  and class (the release is written to the disclosure log), else refuse;
* ``high`` across a border → never released: coarsened (positions to a region, device
  identities to a pseudonym) or withheld, whatever grants exist.

**The filter** — :class:`Release` walks an answer (JSON-ready dicts) along its
:class:`Shape` (each record's :class:`~backend.domain.sensitivity.Classified` and its
nested records) and applies the decision to each record and each field. A refused
field is withheld (null) or coarsened; a refused record is left out of a list across
orders, and refuses the whole answer (:class:`PolicyRefused` → 403) when the answer is
about one order. :meth:`Release.statement` says what was coarsened, withheld or
released under which grant; :meth:`Release.disclosures` lists the grant uses to log.

**Entry points**

* The API: every route passes through ``backend.api.sharing.PolicyRoute`` (REST) and
  the alert stream's frames through the same :class:`Release` (SSE).
* EPCIS export (and any other export): :func:`release_records` — the viewer, the
  order's owners, the viewer's grants, the records and their shape → the filtered
  records and the redaction statement; raise nothing for a refused record but leave
  it out (``refuse_whole=True`` raises :class:`PolicyRefused` instead). Log the
  returned :attr:`Statement.disclosures` with
  :func:`backend.sharing.disclosures.append` in the same session as the read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeGuard

from backend.domain.sensitivity import (
    HIGH,
    LOW,
    MEDIUM,
    Classified,
    Coarsening,
    FieldClass,
    Owner,
    Sensitivity,
)
from backend.domain.sharing import Grant, GrantState

OWNER_ROLES: dict[Owner, tuple[str, ...]] = {
    Owner.AGREEMENT: ("buyer", "supplier"),
    Owner.TELEMETRY: ("supplier",),
}


class Rule(StrEnum):
    """The rule that decided (named in every redaction and in a 403's ``policy``)."""

    LOW_ANY = "low-any-authenticated-party"
    OWN_DATA = "own-data"
    SAME_JURISDICTION = "same-jurisdiction"
    MEDIUM_UNDER_GRANT = "medium-cross-border-under-grant"
    MEDIUM_NEEDS_GRANT = "medium-cross-border-needs-approved-grant"
    HIGH_STAYS = "high-never-leaves-its-jurisdiction"
    NO_OWNER = "no-owner-known"


class Outcome(StrEnum):
    ALLOW = "allow"
    ALLOW_UNDER_GRANT = "allow_under_grant"
    COARSEN = "coarsen"
    WITHHOLD = "withhold"
    REFUSE = "refuse"

    @property
    def releases(self) -> bool:
        return self in (Outcome.ALLOW, Outcome.ALLOW_UNDER_GRANT)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads: a party's name, account, roles and jurisdiction."""

    name: str
    address: str
    roles: frozenset[str]
    jurisdiction: str


@dataclass(frozen=True, slots=True)
class OrderOwners:
    """An order's parties whose data it holds, with their jurisdictions."""

    order_id: int
    buyer: str
    supplier: str
    buyer_jurisdiction: str
    supplier_jurisdiction: str

    def owners(self, kind: Owner) -> tuple[tuple[str, str, str], ...]:
        """(role, address, jurisdiction) of the owners of ``kind`` data."""
        buyer = ("buyer", self.buyer, self.buyer_jurisdiction)
        supplier = ("supplier", self.supplier, self.supplier_jurisdiction)
        return tuple(buyer if r == "buyer" else supplier for r in OWNER_ROLES.get(kind, ()))


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    sensitivity: Sensitivity
    rule: Rule
    reason: str
    grant_id: int | None = None
    owner_jurisdiction: str | None = None


def usable_grant(
    viewer: Viewer, owners: OrderOwners, kind: Owner, grants: Sequence[Grant], now: int
) -> Grant | None:
    """The viewer's approved, unexpired medium grant on this order that covers ``kind``
    data: decided by an owner of that kind (the supplier for telemetry)."""
    roles = OWNER_ROLES.get(kind, ())
    for g in grants:
        if (
            g.order_id == owners.order_id
            and g.grantee_address == viewer.address
            and g.sensitivity == MEDIUM.value
            and g.decided_as in roles
            and g.state_at(now) is GrantState.APPROVED
        ):
            return g
    return None


def _grant_state(viewer: Viewer, order_id: int, grants: Sequence[Grant], now: int) -> str:
    mine = [g for g in grants if g.order_id == order_id and g.grantee_address == viewer.address]
    if not mine:
        return "none"
    return max(mine, key=lambda g: g.id).state_at(now).value


def decide(
    viewer: Viewer,
    owners: OrderOwners | None,
    kind: Owner,
    sensitivity: Sensitivity,
    grants: Sequence[Grant],
    now: int,
    coarsening: Coarsening = Coarsening.WITHHOLD,
) -> Decision:
    """The policy for ``viewer`` reading ``kind`` data of class ``sensitivity`` of the
    order ``owners`` describes (docs/sharing.md, "The policy")."""
    if sensitivity is LOW or kind in (Owner.PUBLIC, Owner.CALLER):
        return Decision(Outcome.ALLOW, sensitivity, Rule.LOW_ANY, "low data: any party")
    if owners is None:
        return Decision(Outcome.REFUSE, sensitivity, Rule.NO_OWNER, "no order names an owner")
    holders = owners.owners(kind)
    home = holders[-1][2]  # the supplier's, for the statement
    for _role, address, _j in holders:
        if address == viewer.address:
            return Decision(Outcome.ALLOW, sensitivity, Rule.OWN_DATA, "the viewer's own data")
    for _role, _a, jurisdiction in holders:
        if jurisdiction == viewer.jurisdiction:
            return Decision(
                Outcome.ALLOW,
                sensitivity,
                Rule.SAME_JURISDICTION,
                f"inside the owner's jurisdiction {jurisdiction}",
                owner_jurisdiction=jurisdiction,
            )
    border = f"{viewer.jurisdiction} is outside the owner's jurisdiction {home}"
    if sensitivity is HIGH:
        outcome = Outcome.WITHHOLD if coarsening is Coarsening.WITHHOLD else Outcome.COARSEN
        return Decision(
            outcome,
            sensitivity,
            Rule.HIGH_STAYS,
            f"high data never leaves its jurisdiction: {border}",
            owner_jurisdiction=home,
        )
    grant = usable_grant(viewer, owners, kind, grants, now)
    if grant is not None:
        return Decision(
            Outcome.ALLOW_UNDER_GRANT,
            sensitivity,
            Rule.MEDIUM_UNDER_GRANT,
            f"released under grant {grant.id}: {border}",
            grant_id=grant.id,
            owner_jurisdiction=home,
        )
    state = _grant_state(viewer, owners.order_id, grants, now)
    return Decision(
        Outcome.REFUSE,
        sensitivity,
        Rule.MEDIUM_NEEDS_GRANT,
        f"medium data of order {owners.order_id} crosses a border only under a grant the "
        f"owner approved ({border}; the viewer's grant: {state}); "
        f"request one with POST /orders/{owners.order_id}/grants",
        owner_jurisdiction=home,
    )


# --- coarsening ----------------------------------------------------------------------

#: Micro-degrees per degree: positions are coarsened to whole degrees (about 111 km).
REGION_E6 = 1_000_000


def coarsen(value: Any, how: Coarsening, pseudonyms: Pseudonyms) -> Any:
    """The coarsened form of a high field's value (None for ``withhold``)."""
    if value is None or how is Coarsening.WITHHOLD:
        return None
    if how is Coarsening.REGION:
        if isinstance(value, int) and not isinstance(value, bool):
            return round(value / REGION_E6) * REGION_E6
        return None
    if how is Coarsening.PSEUDONYM:
        return pseudonyms.of(str(value))
    return None


#: How a pseudonym starts (what an export checks to know it holds no real identity).
PSEUDONYM_PREFIX = "pseudonym:"

#: An account address (a device's or a party's: high data) inside a free-form value.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}(?![0-9a-fA-F])")
#: The shortened forms messages use ("0x5620A6Dc…", "0x5620…a092").
_SHORT_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,10}…[0-9a-fA-F]{0,10}")


def scrub(value: Any, pseudonyms: Pseudonyms, *, field: bool = True) -> Any:
    """``value`` with every account address in it replaced by its pseudonym (and every
    shortened one by ``address withheld``): what a medium value released across a border
    under a grant may still carry of high data (contract event arguments, alert messages,
    risk reasons' texts). Dicts and lists are scrubbed item by item. A field that *is*
    an address (``field``: the whole value) keeps the class its own declaration gives it
    (a token contract's address is not a party's account)."""
    if isinstance(value, str):
        if "0x" not in value or (field and _ADDRESS.fullmatch(value)):
            return value
        out = _ADDRESS.sub(lambda m: pseudonyms.of(m.group(0)), value)
        return _SHORT_ADDRESS.sub("address withheld", out)
    if isinstance(value, Mapping):
        return {k: scrub(v, pseudonyms, field=False) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, pseudonyms, field=False) for v in value]
    return value


@dataclass(frozen=True)
class Pseudonyms:
    """The pseudonyms one audience (a viewer) gets for addresses: ``pseudonym:<16 hex>``
    of HMAC-SHA256 under the deployment's secret ``key`` (``SHARING_PSEUDONYM_KEY``) over
    the audience and the address (case-insensitive).

    Stable for one viewer (its answers and exports can be joined on them), different for
    two viewers (they cannot join theirs with each other's), and not reversible without
    the key: device and party addresses are public on chain (``DeviceBound``), so an
    unkeyed hash of one would be looked up by anyone who hashes them all."""

    key: bytes
    audience: str

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ValueError("a pseudonym key has at least 16 bytes")

    @classmethod
    def for_viewer(cls, key: str, viewer: Viewer) -> Pseudonyms:
        return cls(key.encode(), viewer.name)

    def of(self, value: str) -> str:
        return _keyed_pseudonym(self.key, self.audience, value.lower())


@lru_cache(maxsize=4096)
def _keyed_pseudonym(key: bytes, audience: str, value: str) -> str:
    mac = hmac.new(key, f"{audience}\x00{value}".encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + mac[:16]


# --- the filter ----------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A record's classes and where its nested records are: the filter's map of an answer.

    ``order_key`` names the field holding the record's order id (``order_id``, or ``id``
    for an order); ``children`` the fields that hold nested records (a record or a list
    of records) with their shapes.
    """

    name: str
    classified: Classified
    order_key: str | None = None
    children: Mapping[str, Shape] = field(default_factory=dict)
    #: The children whose records (or theirs) name an order, and whether this shape's
    #: records do: worked out once here, read on every answer to find its order ids.
    order_children: tuple[tuple[str, Shape], ...] = field(init=False, repr=False, compare=False)
    names_orders: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        named = tuple((n, c) for n, c in self.children.items() if c.names_orders)
        object.__setattr__(self, "order_children", named)
        object.__setattr__(self, "names_orders", self.order_key is not None or bool(named))


@dataclass(frozen=True, slots=True)
class Redaction:
    order_id: int | None
    path: str
    sensitivity: str
    action: str  # coarsened | withheld | left_out
    rule: str
    reason: str
    #: How many values (list items × this field) it applies to.
    count: int = 1


@dataclass(frozen=True, slots=True)
class DisclosureNote:
    """One release under a grant, to be written to the disclosure log."""

    order_id: int
    grant_id: int
    sensitivity: str
    owner_jurisdiction: str


@dataclass(frozen=True)
class Statement:
    """What the policy did to an answer (served as its ``policy`` member)."""

    viewer_jurisdiction: str
    redactions: tuple[Redaction, ...]
    disclosures: tuple[DisclosureNote, ...]

    @property
    def empty(self) -> bool:
        return not self.redactions and not self.disclosures

    def as_json(self) -> dict[str, Any]:
        return {
            "viewer_jurisdiction": self.viewer_jurisdiction,
            "redactions": [
                {
                    "order_id": r.order_id,
                    "path": r.path,
                    "sensitivity": r.sensitivity,
                    "action": r.action,
                    "rule": r.rule,
                    "reason": r.reason,
                    "count": r.count,
                }
                for r in self.redactions
            ],
            "grants_used": sorted({d.grant_id for d in self.disclosures}),
        }


class PolicyRefused(Exception):
    """Raised when the policy refuses an answer about one order (the API's 403)."""

    def __init__(self, decision: Decision, order_id: int | None, path: str) -> None:
        super().__init__(decision.reason)
        self.decision = decision
        self.order_id = order_id
        self.path = path


_SKIP = object()
_ABROAD = object()
_INDEX = re.compile(r"\[\d+\]")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@dataclass(frozen=True, slots=True)
class _Plan:
    """A record type's decisions on one order: the record's, each field's (with its class
    and nested shape), whether every field goes out as it is, the uses of grants."""

    record: Decision | None
    fields: Mapping[str, tuple[Decision, FieldClass, Shape | None]]
    plain: bool
    granted: Sequence[Decision]
    #: Every field allowed outright (nested records may still hold back some of theirs).
    released: bool
    #: The fields that hold nested records, with their shapes.
    nested: Sequence[tuple[str, Shape]]


def _embedded(released: Decision) -> Decision:
    """The statement's entry for addresses scrubbed out of a value released under a grant."""
    return Decision(
        Outcome.COARSEN,
        HIGH,
        Rule.HIGH_STAYS,
        "account addresses inside the value replaced by pseudonyms",
        owner_jurisdiction=released.owner_jurisdiction,
    )


class PlanMemo:
    """Plans a viewer's releases reuse across requests: those for a standing that names
    no order (the viewer's own data, its jurisdiction's, public data, no owner). Their
    decisions depend on the viewer, the owner kind and the field classes only, never on
    an order, its grants or the clock; an abroad order's plan (its grants, its id in the
    reasons) stays with the request. Bounded: a viewer's plans are dropped when they
    reach ``per_viewer`` (the record types times a few standings stay far below)."""

    def __init__(self, per_viewer: int = 1024) -> None:
        self.per_viewer = per_viewer
        self._by_viewer: dict[Viewer, dict[tuple[object, int], tuple[Shape, _Plan]]] = {}

    def of(self, viewer: Viewer) -> dict[tuple[object, int], tuple[Shape, _Plan]]:
        plans = self._by_viewer.setdefault(viewer, {})
        if len(plans) >= self.per_viewer:
            plans.clear()
        return plans


class Release:
    """Applies the policy to the answers of one request (or one stream) of one viewer.

    ``owners_of`` and ``grants_of`` look an order's owners and the viewer's grants on it
    up (each order once); ``owners_of_many`` and ``grants_of_many``, when given, look
    up those of every order an answer names at once, before it is filtered (one query
    per page instead of one per order). ``scoped_order`` is the order the answer is
    about (a route under ``/orders/{order_id}``): a record of it that the policy
    refuses refuses the whole answer, where a list across orders only leaves it out.
    """

    def __init__(
        self,
        viewer: Viewer,
        now: int,
        owners_of: Callable[[int], OrderOwners | None],
        grants_of: Callable[[int], Sequence[Grant]],
        *,
        scoped_order: int | None = None,
        owners_of_many: Callable[[Collection[int]], Mapping[int, OrderOwners]] | None = None,
        grants_of_many: Callable[[Collection[int]], Mapping[int, Sequence[Grant]]] | None = None,
        pseudonyms: Pseudonyms,
        memo: PlanMemo | None = None,
    ) -> None:
        self.viewer = viewer
        self.pseudonyms = pseudonyms
        self.now = now
        self.scoped_order = scoped_order
        self._owners_of = owners_of
        self._grants_of = grants_of
        self._owners_of_many = owners_of_many
        self._grants_of_many = grants_of_many
        self._owners: dict[int, OrderOwners | None] = {}
        self._grants: dict[int, Sequence[Grant]] = {}
        self._redactions: dict[tuple[int | None, str, str, Decision], int] = {}
        self._disclosures: dict[tuple[int, int], DisclosureNote] = {}
        # one decision per (standing, owner kind, field class): an answer has few of them
        self._decisions: dict[tuple[object, Owner, FieldClass], Decision] = {}
        self._standings: dict[tuple[int | None, Owner], object] = {}
        self._alike: dict[tuple[Owner, str, str, str, str], object] = {}
        self._plans: dict[tuple[object, int], _Plan] = {}
        self._memo = memo.of(viewer) if memo is not None else None

    # lookups, once per order
    def owners(self, order_id: int) -> OrderOwners | None:
        if order_id not in self._owners:
            self._owners[order_id] = self._owners_of(order_id)
        return self._owners[order_id]

    def grants(self, order_id: int) -> Sequence[Grant]:
        if order_id not in self._grants:
            self._grants[order_id] = self._grants_of(order_id)
        return self._grants[order_id]

    def load(self, order_ids: Collection[int]) -> None:
        """Look up the owners of ``order_ids`` (and the viewer's grants on those whose
        data lives abroad) in one go, where bulk lookups were given."""
        if self._owners_of_many is not None:
            todo = [o for o in order_ids if o not in self._owners]
            if todo:
                found = self._owners_of_many(todo)
                for o in todo:
                    self._owners[o] = found.get(o)
        if self._grants_of_many is not None:
            abroad = []
            for o in order_ids:  # (a loop, not any(): this runs for every order named)
                if o not in self._grants:
                    for kind in OWNER_ROLES:
                        if type(self._standing(o, kind)) is int:
                            abroad.append(o)
                            break
            if abroad:
                held = self._grants_of_many(abroad)
                for o in abroad:
                    self._grants[o] = held.get(o, ())

    def _standing(self, order_id: int | None, kind: Owner) -> object:
        """What the decisions on ``kind`` data of ``order_id`` depend on, besides the
        field's class: the viewer owns that data, or shares a jurisdiction with an
        owner, or no order names an owner (the same decisions for every such order), or
        the order itself (its data lives abroad: grants and reasons are the order's)."""
        key = (order_id, kind)
        hit = self._standings.get(key, _SKIP)
        if hit is not _SKIP:
            return hit
        standing: object
        if order_id is None:
            standing = None
        elif kind not in OWNER_ROLES:
            standing = "anyone's"  # public and caller data: low, for every order alike
        elif (owners := self.owners(order_id)) is None:
            standing = "no owner"
        else:
            # orders of the same owners stand alike (a page of one party's orders)
            o = owners
            who = (kind, o.buyer, o.supplier, o.buyer_jurisdiction, o.supplier_jurisdiction)
            alike = self._alike.get(who)
            if alike is None:
                alike = self._alike[who] = self._owned(owners, kind)
            standing = order_id if alike is _ABROAD else alike
        self._standings[key] = standing
        return standing

    def _owned(self, owners: OrderOwners, kind: Owner) -> object:
        """The viewer's standing on ``kind`` data of an order of ``owners``: own (the
        viewer is an owner), home (an owner shares its jurisdiction), else abroad."""
        v = self.viewer
        standing: object = _ABROAD  # the owners' data lives elsewhere
        for _role, address, jurisdiction in owners.owners(kind):
            if address == v.address:
                return "own"
            if jurisdiction == v.jurisdiction:
                standing = "home"
        return standing

    def decide(self, order_id: int | None, kind: Owner, fc: FieldClass | Sensitivity) -> Decision:
        if isinstance(fc, Sensitivity):
            fc = FieldClass(fc)
        key = (self._standing(order_id, kind), kind, fc)
        hit = self._decisions.get(key)
        if hit is None:
            hit = self._decisions[key] = self._decide(order_id, kind, fc)
        return hit

    def _decide(self, order_id: int | None, kind: Owner, fc: FieldClass) -> Decision:
        owners = self.owners(order_id) if order_id is not None else None
        grants: Sequence[Grant] = ()
        if owners is not None and self._abroad(owners, kind):
            grants = self.grants(owners.order_id)
        return decide(self.viewer, owners, kind, fc.sensitivity, grants, self.now, fc.coarsening)

    def _abroad(self, owners: OrderOwners, kind: Owner) -> bool:
        held = owners.owners(kind)
        v = self.viewer
        return all(a != v.address and j != v.jurisdiction for _r, a, j in held)

    def _note(self, decision: Decision, order_id: int | None) -> None:
        if decision.outcome is Outcome.ALLOW_UNDER_GRANT and order_id is not None:
            assert decision.grant_id is not None and decision.owner_jurisdiction is not None
            self._disclosures[(order_id, decision.grant_id)] = DisclosureNote(
                order_id, decision.grant_id, decision.sensitivity.value, decision.owner_jurisdiction
            )

    def _redact(self, decision: Decision, order_id: int | None, path: str, action: str) -> None:
        # one entry per field of a kind of record, counted: "data[].device", not one per item
        key = (order_id, _INDEX.sub("[]", path), action, decision)
        self._redactions[key] = self._redactions.get(key, 0) + 1

    def apply(self, value: Mapping[str, Any], shape: Shape, *, path: str = "") -> dict[str, Any]:
        """``value`` as the viewer may see it; :class:`PolicyRefused` if the record
        itself is refused."""
        if self.as_it_is(value, shape) and isinstance(value, dict):
            return value  # (nothing to note: no grant used, nothing held back)
        out = self._record(value, shape, self.scoped_order, path, top=True)
        assert isinstance(out, dict)
        return out

    def as_it_is(self, value: Mapping[str, Any], shape: Shape) -> bool:
        """Whether :meth:`apply` gives ``value`` back unchanged, with nothing to state
        (nothing held back, no grant used); records nothing. Loads the owners of every
        order the answer names first, in one go where bulk lookups were given."""
        if self._owners_of_many is not None:
            ids: set[int] = set() if self.scoped_order is None else {self.scoped_order}
            _order_ids(value, shape, ids)
            self.load(ids)
        return self._as_it_is(value, shape, self.scoped_order)

    def _as_it_is(self, value: Mapping[str, Any], shape: Shape, order_id: int | None) -> bool:
        """Whether ``value`` goes out exactly as it is: every record released, every field
        of it (nested records too) allowed outright, none unclassified. The same
        decisions as :meth:`_record`'s, without building a copy."""
        if shape.order_key is not None and isinstance(value.get(shape.order_key), int):
            order_id = int(value[shape.order_key])
        plan = self._plan(order_id, shape)
        if plan.record is not None and plan.record.outcome is not Outcome.ALLOW:
            return False
        if not plan.released or not value.keys() <= plan.fields.keys():
            return False
        for name, child in plan.nested:
            v = value.get(name)
            if isinstance(v, list):
                for item in v:
                    if not _is_mapping(item) or not self._as_it_is(item, child, order_id):
                        return False
            elif _is_mapping(v):
                if not self._as_it_is(v, child, order_id):
                    return False
            elif v is not None:
                return False
        return True

    def _plan(self, order_id: int | None, shape: Shape) -> _Plan:
        """The decisions for every field of ``shape`` on ``order_id`` (once per answer)."""
        standing = self._standing(order_id, shape.classified.owner)
        key = (standing, id(shape))
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        memo = self._memo if type(standing) is not int else None
        if memo is not None and (kept := memo.get(key)) is not None and kept[0] is shape:
            plan = self._plans[key] = kept[1]
            return plan
        c = shape.classified
        record = None
        if order_id is not None:  # a container of records across orders has none
            record = self.decide(order_id, c.owner, FieldClass(c.record))
        fields = {
            name: (self.decide(order_id, c.owner, fc), fc, shape.children.get(name))
            for name, fc in c.fields.items()
        }
        # released as it is: every field allowed outright (a value released under a grant
        # goes through scrub(), as it may carry addresses)
        plain = all(
            d.outcome is Outcome.ALLOW and child is None for d, _fc, child in fields.values()
        )
        granted = [d for d, _fc, _c in fields.values() if d.outcome is Outcome.ALLOW_UNDER_GRANT]
        if record is not None and record.outcome is Outcome.ALLOW_UNDER_GRANT:
            granted.append(record)
        released = all(d.outcome is Outcome.ALLOW for d, _fc, _child in fields.values())
        nested = [(name, child) for name, (_d, _fc, child) in fields.items() if child is not None]
        plan = self._plans[key] = _Plan(record, fields, plain, granted, released, nested)
        if memo is not None:
            memo[key] = (shape, plan)
        return plan

    def _record(
        self,
        value: Mapping[str, Any],
        shape: Shape,
        order_id: int | None,
        path: str,
        *,
        top: bool,
    ) -> dict[str, Any] | object:
        if shape.order_key is not None and isinstance(value.get(shape.order_key), int):
            order_id = int(value[shape.order_key])
        plan = self._plan(order_id, shape)
        d = plan.record
        if d is not None and not d.outcome.releases:
            if top or self.scoped_order is not None:
                raise PolicyRefused(d, order_id, path or shape.name)
            self._redact(d, order_id, path or shape.name, "left_out")
            return _SKIP
        for g in plan.granted:
            self._note(g, order_id)
        if plan.plain and value.keys() <= plan.fields.keys():
            return dict(value)  # every field released as it is
        out: dict[str, Any] = {}
        for name, v in value.items():
            entry = plan.fields.get(name)
            if entry is None:  # fail closed: an unclassified field never leaves
                fc = FieldClass(HIGH)
                entry = (self.decide(order_id, shape.classified.owner, fc), fc, None)
            d, fc, child = entry
            if d.outcome.releases:
                if child is not None and v is not None:
                    out[name] = self._nested(v, child, order_id, _join(path, name))
                elif d.outcome is Outcome.ALLOW_UNDER_GRANT and v is not None:
                    out[name] = scrubbed = scrub(v, self.pseudonyms)
                    if scrubbed != v:
                        self._redact(_embedded(d), order_id, _join(path, name), "coarsened")
                else:
                    out[name] = v
            elif d.outcome is Outcome.COARSEN:
                out[name] = coarsen(v, fc.coarsening, self.pseudonyms)
                if v is not None:
                    self._redact(d, order_id, _join(path, name), "coarsened")
            else:
                out[name] = None if not isinstance(v, list) else []
                if v is not None:
                    self._redact(d, order_id, _join(path, name), "withheld")
        return out

    def _nested(self, v: Any, shape: Shape, order_id: int | None, where: str) -> Any:
        if isinstance(v, list):
            items = []
            for i, item in enumerate(v):
                r = self._record(item, shape, order_id, f"{where}[{i}]", top=False)
                if r is not _SKIP:
                    items.append(r)
            return items
        if isinstance(v, Mapping):
            r = self._record(v, shape, order_id, where, top=False)
            return None if r is _SKIP else r
        return v

    def statement(self) -> Statement:
        return Statement(
            self.viewer.jurisdiction,
            tuple(
                Redaction(oid, path, d.sensitivity.value, action, d.rule.value, d.reason, n)
                for (oid, path, action, d), n in self._redactions.items()
            ),
            tuple(self._disclosures.values()),
        )


def _order_ids(value: Mapping[str, Any], shape: Shape, out: set[int]) -> None:
    """Add the order ids ``value`` (a record of ``shape``) and its nested records name."""
    if shape.order_key is not None:
        oid = value.get(shape.order_key)
        if isinstance(oid, int):
            out.add(oid)
    for name, child in shape.order_children:
        v = value.get(name)
        if isinstance(v, list):
            for item in v:
                if _is_mapping(item):
                    _order_ids(item, child, out)
        elif _is_mapping(v):
            _order_ids(v, child, out)


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, without the ABC check for a plain dict (what
    answers are made of): the filter asks this of every record of every answer."""
    return type(value) is dict or isinstance(value, Mapping)


def release_records(
    viewer: Viewer,
    owners: OrderOwners,
    grants: Sequence[Grant],
    records: Sequence[Mapping[str, Any]],
    shape: Shape,
    now: int,
    *,
    pseudonyms: Pseudonyms,
    refuse_whole: bool = False,
) -> tuple[list[dict[str, Any]], Statement]:
    """The entry point for exports (EPCIS): one order's ``records`` of ``shape`` as
    ``viewer`` may receive them, and the statement of what was coarsened, withheld or
    left out and under which grants (log ``Statement.disclosures``). With
    ``refuse_whole`` a refused record raises :class:`PolicyRefused`."""
    release = Release(
        viewer,
        now,
        lambda oid: owners if oid == owners.order_id else None,
        lambda oid: grants if oid == owners.order_id else (),
        scoped_order=owners.order_id if refuse_whole else None,
        pseudonyms=pseudonyms,
    )
    out: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        r = release._record(record, shape, owners.order_id, f"[{i}]", top=refuse_whole)
        if isinstance(r, dict):
            out.append(r)
    return out, release.statement()
