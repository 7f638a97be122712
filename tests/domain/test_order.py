"""An order's terms, its fields and its states have one definition
(backend.domain.order); the contract's structs and enum, the indexer's ``orders``
table, the API's terms schema and the simulator's scenario terms must agree with it."""

from __future__ import annotations

import dataclasses
from typing import Any, get_args

from annotated_types import Ge, Le
from sqlalchemy import BigInteger, Integer, SmallInteger

from backend.api import convert
from backend.api.schemas import OrderPublic, TermsPublic
from backend.api.schemas import Terms as TermsCreate
from backend.domain.fields import FieldSpec, camel, int_range
from backend.domain.order import (
    ORDER_ATTRS,
    ORDER_SPEC,
    ORDER_STATE_LABELS,
    PARTY_ATTRS,
    STATE_LABELS,
    TERMS_ABI_TYPE,
    TERMS_ATTRS,
    TERMS_BODY_ATTRS,
    TERMS_SPEC,
    Order,
    OrderState,
    Terms,
)
from backend.oracle.rules import OrderTerms
from backend.store.models import OrderRow
from backend.store.types import Uint256
from iot_simulator.scenario import Terms as ScenarioTerms
from tests.domain.abi import solidity_enum, struct

TERMS = Terms(
    buyer="0x" + "1" * 40,
    supplier="0x" + "2" * 40,
    price=10**18,
    delivery_deadline=1_800_000_000,
    dest_lat_e6=51_950_000,
    dest_lon_e6=4_050_000,
    geofence_e6=50_000,
    min_temp_centi_c=200,
    max_temp_centi_c=800,
    tolerated_excursion_secs=1800,
    late_penalty_bps_per_hour=100,
    late_penalty_cap_bps=2000,
    breach_refund_bps=3000,
    arbiter="0x" + "Ab" * 20,
    device_issuer="0x" + "Cd" * 20,
    arrival_quorum=2,
    second_device_issuer="0x" + "Ef" * 20,
)


def _sol(specs: tuple[FieldSpec, ...]) -> list[tuple[str, str]]:
    return [(f.wire, f.sol_type) for f in specs]


def test_terms_match_the_contracts_terms_struct() -> None:
    abi = struct("PurchaseOrders", "struct IPurchaseOrders.Terms")
    assert [(name, t) for name, t, _ in abi] == _sol(TERMS_SPEC)
    assert Terms.SOLIDITY_ORDER == TERMS_ATTRS == tuple(f.name for f in dataclasses.fields(Terms))
    assert Terms.from_tuple(TERMS.as_tuple()) == TERMS


def test_order_matches_the_contracts_order_struct() -> None:
    abi = struct("PurchaseOrders", "struct IPurchaseOrders.Order")
    assert [(name, t) for name, t, _ in abi] == _sol(ORDER_SPEC)
    internal = {name: it for name, _, it in abi}
    assert internal["state"] == "enum IPurchaseOrders.OrderState"
    assert tuple(f.name for f in dataclasses.fields(Order)) == ("order_id", *ORDER_ATTRS)


def test_order_states_match_the_solidity_enum() -> None:
    members = solidity_enum("IPurchaseOrders", "OrderState")
    assert list(STATE_LABELS) == members
    assert [s.value for s in OrderState] == list(range(len(members)))
    assert all(OrderState.from_label(label).label == label for label in members)


def test_the_api_answers_every_state_but_none() -> None:
    annotation = OrderPublic.model_fields["state"].annotation
    assert get_args(annotation) == ORDER_STATE_LABELS


#: The ``orders`` table: the order's fields (``id`` for ``order_id``, terms flattened)
#: and what the indexer adds from events.
INDEXER_COLUMNS = {
    "created_at",
    "shipped_at",
    "delivered_at",
    "disputed_at",
    "late_seconds",
    "delivery_confirmed_by",
    "buyer_amount",
    "supplier_amount",
    "updated_block",
}


def test_order_row_columns_are_the_order_and_its_terms() -> None:
    columns = [c.name for c in OrderRow.__table__.columns]
    # The contract's digest and phase time are derived: the row keeps the terms and
    # each phase's time (from the events).
    expected = {"id", *ORDER_ATTRS, *TERMS_ATTRS, *INDEXER_COLUMNS} - {"terms_digest", "timestamp"}
    assert set(columns) == expected
    assert [c for c in columns if c in TERMS_ATTRS] == list(TERMS_ATTRS)


#: Terms whose column cannot hold the whole Solidity range, and why that is safe.
NARROWER = {"delivery_deadline"}  # uint64 unix seconds in BIGINT: 2^63 s is far away


def test_order_row_columns_hold_each_terms_range() -> None:
    capacity = {
        SmallInteger: (-(2**15), 2**15 - 1),
        Integer: (-(2**31), 2**31 - 1),
        BigInteger: (-(2**63), 2**63 - 1),
    }
    for f in TERMS_SPEC:
        column_type = OrderRow.__table__.columns[f.attr].type
        if f.sol_type == "address":
            assert column_type.length == 42, f.attr  # type: ignore[attr-defined]
        elif f.sol_type == "uint256":
            assert isinstance(column_type, Uint256), f.attr
        elif f.attr not in NARROWER:
            lo, hi = capacity[type(column_type)]
            assert f.lo is not None and f.hi is not None
            assert lo <= f.lo and f.hi <= hi, f"{f.attr} does not fit {column_type}"


def _bounds(field: Any) -> tuple[int | None, int | None]:
    lo = max((m.ge for m in field.metadata if isinstance(m, Ge)), default=None)
    hi = min((m.le for m in field.metadata if isinstance(m, Le)), default=None)
    return lo, hi


def test_api_terms_schemas_have_every_term_within_its_solidity_range() -> None:
    for model in (TermsPublic, TermsCreate):
        # The parties are the order's own fields (at creation: the caller and ``supplier``).
        assert tuple(model.model_fields) == TERMS_BODY_ATTRS, model.__name__
        for f in TERMS_SPEC:
            if f.sol_type in ("address", "uint256") or f.attr in PARTY_ATTRS:
                continue  # checked addresses; money as a decimal string
            lo, hi = _bounds(model.model_fields[f.attr])
            tlo, thi = int_range(f.sol_type)
            assert lo is not None and hi is not None, f"{model.__name__}.{f.attr} is unbounded"
            assert tlo <= lo and hi <= thi, f"{model.__name__}.{f.attr} exceeds {f.sol_type}"


def test_the_api_shows_an_order_rows_terms() -> None:
    # a transient store row: the columns not given (delivery, dispute, split) are None
    row = OrderRow(
        id=3,
        state="Shipped",
        funded=True,
        breached=False,
        created_at=1,
        shipped_at=2,
        updated_block=9,
        **TERMS.values(),
    )
    shown = OrderPublic.model_validate(convert.order(row))
    terms = Terms(buyer=shown.buyer, supplier=shown.supplier, **shown.terms.model_dump())
    assert terms.replace(price=int(shown.terms.price)) == TERMS
    assert Terms.of(row) == TERMS


def test_the_simulators_scenario_terms_follow_the_struct() -> None:
    # The simulator imports only backend.telemetry: it spells the terms itself.
    scenario = ScenarioTerms(
        price=1,
        token="ETH",
        deadline_s=3600,
        geofence_e6=50_000,
        min_temp_centi_c=200,
        max_temp_centi_c=800,
    )
    wire = scenario.to_contract(
        t0=0,
        destination_e6=(0, 0),
        token_address="0x" + "0" * 40,
        arbiter="0x" + "a" * 40,
        buyer="0x" + "b" * 40,
        supplier="0x" + "c" * 40,
        issuers=("0x" + "d" * 40,),
    )
    assert list(wire) == [camel(a) for a in TERMS_ATTRS]


def test_the_rules_view_takes_its_terms_from_the_terms() -> None:
    names = {f.name for f in dataclasses.fields(OrderTerms)}
    # ``terms`` is the domain record itself (the risk model reads deadline and penalties)
    assert names - {"order_id", "state", "breached", "shipped_at", "terms"} <= set(TERMS_ATTRS)
    assert OrderTerms.__dataclass_fields__["terms"].type in ("Terms | None", Terms | None)


def test_the_terms_digest_is_the_contracts() -> None:
    from eth_abi import encode
    from eth_utils import keccak

    encoded = encode([TERMS_ABI_TYPE], [TERMS.as_tuple()])
    assert TERMS.encode() == encoded and len(encoded) == 32 * len(TERMS_ATTRS)
    assert TERMS.digest() == keccak(encoded)[:25]
    assert TERMS.replace(arrival_quorum=1).digest() != TERMS.digest()
    assert TERMS.issuers() == (TERMS.device_issuer, TERMS.second_device_issuer)
