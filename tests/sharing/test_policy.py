"""The decision function over the whole matrix: class × role × same/other jurisdiction
× grant state × whose data, and the filter that applies it to an answer."""

from __future__ import annotations

import hashlib
import itertools

import pytest

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
from backend.sharing.policy import (
    PSEUDONYM_PREFIX,
    REGION_E6,
    OrderOwners,
    Outcome,
    PlanMemo,
    PolicyRefused,
    Pseudonyms,
    Release,
    Rule,
    Shape,
    Viewer,
    coarsen,
    decide,
    release_records,
)

HOME, ABROAD = "EU", "US"
BUYER, SUPPLIER, OTHER = "0x" + "b" * 40, "0x" + "5" * 40, "0x" + "0" * 39 + "1"
ORDER = 7
NOW = 1_000_000
ROLES = ("buyer", "supplier", "arbiter", "auditor", "admin")
GRANT_STATES = ("none", "requested", "approved", "denied", "expired", "revoked")


def viewer_and_owners(role: str, jurisdiction: str) -> tuple[Viewer, OrderOwners]:
    """A viewer of ``role`` in ``jurisdiction``; the order's other parties are at HOME."""
    address = {"buyer": BUYER, "supplier": SUPPLIER}.get(role, OTHER)
    owners = OrderOwners(
        ORDER,
        BUYER,
        SUPPLIER,
        jurisdiction if role == "buyer" else HOME,
        jurisdiction if role == "supplier" else HOME,
    )
    return Viewer(role, address, frozenset({role}), jurisdiction), owners


def grant(state: str, address: str, *, decided_as: str = "supplier", order: int = ORDER) -> Grant:
    stored = {"expired": "approved"}.get(state, state)
    decided = state != "requested"
    return Grant(
        id=3,
        order_id=order,
        sensitivity="medium",
        grantee="v",
        grantee_address=address,
        grantee_jurisdiction=ABROAD,
        reason="audit",
        state=stored,
        requested_at=NOW - 100,
        decided_by="s" if decided else None,
        decided_as=decided_as if decided else None,
        decided_at=NOW - 50 if decided else None,
        decision_reason="no" if state == "denied" else None,
        expires_at=(NOW - 1 if state == "expired" else NOW + 3600)
        if stored == "approved"
        else None,
        revoked_at=NOW - 10 if state == "revoked" else None,
    )


def expected(role: str, jurisdiction: str, cls: Sensitivity, kind: Owner, state: str) -> Outcome:
    """The policy of docs/sharing.md, written out independently of the code."""
    if cls is LOW:
        return Outcome.ALLOW
    owns = role == "supplier" or (role == "buyer" and kind is Owner.AGREEMENT)
    if owns or jurisdiction == HOME:
        return Outcome.ALLOW
    if cls is HIGH:
        return Outcome.COARSEN
    return Outcome.ALLOW_UNDER_GRANT if state == "approved" else Outcome.REFUSE


MATRIX = list(
    itertools.product(
        (LOW, MEDIUM, HIGH), ROLES, (HOME, ABROAD), GRANT_STATES, (Owner.AGREEMENT, Owner.TELEMETRY)
    )
)


@pytest.mark.parametrize(
    ("cls", "role", "jurisdiction", "state", "kind"),
    MATRIX,
    ids=[
        f"{c.value}-{r}-{'same' if j == HOME else 'other'}-{s}-{k.value}"
        for c, r, j, s, k in MATRIX
    ],
)
def test_decision_matrix(
    cls: Sensitivity, role: str, jurisdiction: str, state: str, kind: Owner
) -> None:
    viewer, owners = viewer_and_owners(role, jurisdiction)
    grants = [] if state == "none" else [grant(state, viewer.address)]
    d = decide(viewer, owners, kind, cls, grants, NOW, Coarsening.REGION)
    assert d.outcome is expected(role, jurisdiction, cls, kind, state), d
    assert d.sensitivity is cls
    if d.outcome is Outcome.REFUSE:
        assert d.rule is Rule.MEDIUM_NEEDS_GRANT
        assert f"the viewer's grant: {state}" in d.reason
    if d.outcome is Outcome.ALLOW_UNDER_GRANT:
        assert d.grant_id == 3 and d.owner_jurisdiction == HOME
    if d.outcome is Outcome.COARSEN:
        assert d.rule is Rule.HIGH_STAYS


def test_high_without_a_coarsening_is_withheld_even_under_a_grant() -> None:
    viewer, owners = viewer_and_owners("auditor", ABROAD)
    d = decide(viewer, owners, Owner.TELEMETRY, HIGH, [grant("approved", OTHER)], NOW)
    assert d.outcome is Outcome.WITHHOLD


def test_a_grant_counts_only_for_its_grantee_its_order_and_its_deciders_data() -> None:
    viewer, owners = viewer_and_owners("arbiter", ABROAD)
    for g in (grant("approved", BUYER), grant("approved", OTHER, order=ORDER + 1)):
        assert decide(viewer, owners, Owner.AGREEMENT, MEDIUM, [g], NOW).outcome is Outcome.REFUSE
    by_buyer = [grant("approved", OTHER, decided_as="buyer")]
    assert (
        decide(viewer, owners, Owner.AGREEMENT, MEDIUM, by_buyer, NOW).outcome
        is Outcome.ALLOW_UNDER_GRANT
    )
    # telemetry is the supplier's: the buyer cannot grant it
    assert decide(viewer, owners, Owner.TELEMETRY, MEDIUM, by_buyer, NOW).outcome is Outcome.REFUSE


def test_an_approval_lapses_at_its_expiry() -> None:
    g = grant("approved", OTHER)
    assert g.expires_at is not None
    assert g.state_at(g.expires_at - 1) is GrantState.APPROVED
    assert g.state_at(g.expires_at) is GrantState.EXPIRED


KEY = "k" * 32
PSEUDONYMS = Pseudonyms(KEY.encode(), "test viewer")


def test_coarsening() -> None:
    mine = Pseudonyms(KEY.encode(), "auditor")
    assert coarsen(51_950_123, Coarsening.REGION, mine) == 52 * REGION_E6
    assert coarsen(-3_400_000, Coarsening.REGION, mine) == -3 * REGION_E6
    a = coarsen("0xAbC", Coarsening.PSEUDONYM, mine)
    assert a == coarsen("0xabc", Coarsening.PSEUDONYM, mine)
    assert a != coarsen("0xabd", Coarsening.PSEUDONYM, mine)
    assert a.startswith("pseudonym:") and "abc" not in a.removeprefix("pseudonym:")
    assert coarsen("0xabc", Coarsening.WITHHOLD, mine) is None


def test_pseudonyms_are_keyed_and_per_viewer() -> None:
    """Stable for one viewer under one key; another viewer, or another key, gets
    another name for the same address; and no unkeyed hash of the address (which is
    public on chain) gives it away."""
    device = "0x" + "5a" * 20
    mine = Pseudonyms(KEY.encode(), "auditor")
    assert mine.of(device) == mine.of(device.upper().replace("0X", "0x"))
    assert mine.of(device) != Pseudonyms(KEY.encode(), "customs").of(device)
    assert mine.of(device) != Pseudonyms(b"j" * 32, "auditor").of(device)
    body = mine.of(device).removeprefix(PSEUDONYM_PREFIX)
    for text in (device, device.lower(), f"trustship-pseudonym:{device}", f"auditor\x00{device}"):
        for h in (hashlib.sha256, hashlib.sha3_256, hashlib.blake2b):
            assert body not in h(text.encode()).hexdigest()
    with pytest.raises(ValueError):
        Pseudonyms(b"short", "auditor")


# --- the filter -----------------------------------------------------------------------

POINT = Shape(
    "Point",
    Classified(
        MEDIUM,
        Owner.TELEMETRY,
        {
            "order_id": FieldClass(LOW),
            "temp": FieldClass(MEDIUM),
            "lat": FieldClass(HIGH, Coarsening.REGION),
            "key": FieldClass(HIGH),
        },
    ),
    "order_id",
)
PAGE = Shape(
    "Page",
    Classified(MEDIUM, Owner.TELEMETRY, {"data": FieldClass(LOW), "count": FieldClass(LOW)}),
    None,
    {"data": POINT},
)
RECORD = {"order_id": ORDER, "temp": 450, "lat": 51_950_000, "key": "0xdead"}


def release(
    role: str,
    jurisdiction: str,
    grants: list[Grant],
    scoped: int | None,
    memo: PlanMemo | None = None,
) -> Release:
    viewer, owners = viewer_and_owners(role, jurisdiction)
    return Release(
        viewer,
        NOW,
        lambda oid: owners if oid == ORDER else None,
        lambda oid: grants,
        scoped_order=scoped,
        pseudonyms=PSEUDONYMS,
        memo=memo,
    )


def test_plans_kept_across_requests_are_those_no_order_or_grant_decides() -> None:
    """A memo shared by requests keeps the plans for data the viewer sees at home; an
    abroad order's plan is the request's own, so a grant approved between two requests
    counts on the second, and one viewer's plans never serve another."""
    memo = PlanMemo()
    body = {"data": [RECORD], "count": 1}
    home = release("auditor", HOME, [], ORDER, memo)
    assert home.apply(body, PAGE) == body
    kept = dict(memo.of(viewer_and_owners("auditor", HOME)[0]))
    assert kept and all(type(standing) is not int for standing, _shape in kept)
    again = release("auditor", HOME, [], ORDER, memo)
    assert again.apply(body, PAGE) == body
    assert memo.of(viewer_and_owners("auditor", HOME)[0]) == kept  # reused, none added
    with pytest.raises(PolicyRefused):
        release("auditor", ABROAD, [], ORDER, memo).apply(body, PAGE)
    assert memo.of(viewer_and_owners("auditor", ABROAD)[0]) == {}  # abroad: not kept
    granted = release("auditor", ABROAD, [grant("approved", OTHER)], ORDER, memo)
    assert granted.apply(body, PAGE)["data"][0]["temp"] == 450
    # the home viewer's plans did not leak into the abroad viewer's (nor back)
    assert memo.of(viewer_and_owners("auditor", HOME)[0]) == kept


def test_a_viewers_plans_are_dropped_at_the_bound() -> None:
    memo = PlanMemo(per_viewer=2)
    body = {"data": [RECORD], "count": 1}
    viewer = viewer_and_owners("auditor", HOME)[0]
    assert release("auditor", HOME, [], ORDER, memo).apply(body, PAGE) == body
    assert len(memo._by_viewer[viewer]) == 2  # the page's plan and its records'
    assert memo.of(viewer) == {}  # the next request finds the bound reached: dropped
    assert release("auditor", HOME, [], ORDER, memo).apply(body, PAGE) == body
    assert len(memo._by_viewer[viewer]) == 2


def test_one_orders_answer_is_refused_whole_with_the_class_and_rule() -> None:
    r = release("auditor", ABROAD, [], ORDER)
    with pytest.raises(PolicyRefused) as info:
        r.apply({"data": [RECORD], "count": 1}, PAGE)
    assert info.value.decision.sensitivity is MEDIUM
    assert info.value.decision.rule is Rule.MEDIUM_NEEDS_GRANT


def test_a_list_across_orders_leaves_refused_records_out_and_says_so() -> None:
    r = release("auditor", ABROAD, [], None)
    out = r.apply({"data": [RECORD], "count": 1}, PAGE)
    assert out["data"] == []
    (red,) = r.statement().redactions
    assert (red.action, red.sensitivity, red.path, red.count) == ("left_out", "medium", "data[]", 1)


def test_under_a_grant_medium_flows_high_is_coarsened_or_withheld_and_the_use_is_noted() -> None:
    r = release("auditor", ABROAD, [grant("approved", OTHER)], ORDER)
    out = r.apply({"data": [RECORD, RECORD], "count": 2}, PAGE)
    assert out["data"] == [{"order_id": ORDER, "temp": 450, "lat": 52_000_000, "key": None}] * 2
    s = r.statement()
    assert {(x.path, x.action, x.count) for x in s.redactions} == {
        ("data[].lat", "coarsened", 2),
        ("data[].key", "withheld", 2),
    }
    assert [(d.order_id, d.grant_id, d.owner_jurisdiction) for d in s.disclosures] == [
        (ORDER, 3, HOME)
    ]


def test_at_home_nothing_is_changed_or_logged() -> None:
    r = release("auditor", HOME, [], ORDER)
    body = {"data": [RECORD], "count": 1}
    assert r.apply(body, PAGE) == body
    assert r.statement().empty


def test_an_unclassified_field_never_leaves() -> None:
    r = release("auditor", ABROAD, [grant("approved", OTHER)], ORDER)
    out = r.apply({**RECORD, "secret": "x"}, POINT)
    assert out["secret"] is None


def test_the_export_entry_point() -> None:
    viewer, owners = viewer_and_owners("auditor", ABROAD)
    records, statement = release_records(
        viewer, owners, [], [RECORD], POINT, NOW, pseudonyms=PSEUDONYMS
    )
    assert records == [] and statement.redactions[0].action == "left_out"
    records, statement = release_records(
        viewer, owners, [grant("approved", OTHER)], [RECORD], POINT, NOW, pseudonyms=PSEUDONYMS
    )
    assert records[0]["lat"] == 52_000_000 and statement.disclosures
    with pytest.raises(PolicyRefused):
        release_records(
            viewer, owners, [], [RECORD], POINT, NOW, pseudonyms=PSEUDONYMS, refuse_whole=True
        )


def test_each_record_of_a_list_stands_on_its_own_orders_owners_and_grants() -> None:
    """Orders of the same owners share their standing (own, home, abroad) but not their
    grants: a page filters each record as a page of that record alone would."""
    viewer = Viewer("auditor", OTHER, frozenset({"auditor"}), HOME)
    owners = {
        6: OrderOwners(6, BUYER, SUPPLIER, ABROAD, HOME),  # the supplier at home
        7: OrderOwners(7, BUYER, SUPPLIER, ABROAD, ABROAD),
        8: OrderOwners(8, BUYER, SUPPLIER, ABROAD, ABROAD),  # as 7, with a grant
    }
    grants = {8: [grant("approved", OTHER, order=8)]}

    def release_of() -> Release:
        return Release(
            viewer,
            NOW,
            owners.get,
            lambda oid: grants.get(oid, []),
            owners_of_many=lambda todo: {o: owners[o] for o in todo if o in owners},
            grants_of_many=lambda todo: {o: grants[o] for o in todo if o in grants},
            pseudonyms=PSEUDONYMS,
        )

    records = [RECORD | {"order_id": o} for o in (6, 7, 8, 7, 8)]
    page = release_of().apply({"data": records, "count": 5}, PAGE)["data"]
    alone = []
    for r in records:
        alone += release_of().apply({"data": [r], "count": 1}, PAGE)["data"]
    assert page == alone
    assert [r["order_id"] for r in page] == [6, 8, 8]  # 7: no grant, left out
    assert page[0]["lat"] == 51_950_000 and page[1]["lat"] == 52_000_000  # 8: coarsened
