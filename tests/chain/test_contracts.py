"""The typed wrappers: structs round-trip, every kind of call works, and the product's
settlement preview (backend/chain/settlement.py) agrees with the contract."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.chain.artifacts import load_artifact
from backend.chain.contracts import (
    ETH,
    ContractWrapper,
    Escrow,
    OrderState,
    PurchaseOrders,
    QualityVerification,
    Stablecoin,
    Terms,
    terms_from_abi,
)
from backend.chain.errors import ContractRevert
from backend.chain.settlement import settlement, settlement_split
from backend.chain.testing import Stack, default_terms, device, device_key, signed
from backend.telemetry import Reading, reading_digest
from backend.telemetry.fleet import FleetBatch, FleetLog, fleet_tree

pytestmark = pytest.mark.timeout(120)


def shipped_order(stack: Stack, terms: Terms, dev: int = 1) -> int:
    a = stack.accounts
    order_id = int(stack.po.create_and_fund_order(terms, by=a.buyer).value)
    stack.po.accept_order(order_id, by=a.supplier)
    stack.po.ship_order(order_id, [stack.certify(order_id, dev)], by=a.supplier)
    return order_id


def reading(order_id: int, seq: int, ts: int, **kw: int) -> Reading:
    values = {
        "temperature_centi_c": 500,
        "humidity_permille": 500,
        "shock_milli_g": 0,
        "latitude_e6": 40_000_000,
        "longitude_e6": 0,
    }
    values.update(kw)
    return Reading(order_id=order_id, seq=seq, timestamp=ts, **values)


def test_terms_and_order_round_trip_through_the_contract(
    stack: Stack, make_terms: Callable[..., Terms]
) -> None:
    a = stack.accounts
    terms = make_terms(
        price=123_456_789,
        expiry_grace_secs=3 * 86400,
        dest_lat_e6=-33_900_000,
        dest_lon_e6=151_200_000,
        geofence_e6=12_345,
        min_temp_centi_c=-2500,
        max_temp_centi_c=-1800,
        max_humidity_permille=850,
        max_shock_milli_g=5000,
        tolerated_excursion_secs=900,
        late_penalty_bps_per_hour=250,
        late_penalty_cap_bps=5000,
        breach_refund_bps=10_000,
        dispute_window_secs=86400,
    )
    result = stack.po.create_order(terms, by=a.buyer)
    order = stack.po.get_order(result.value)
    # the contract keeps the digest; the terms travel in OrderCreated
    assert order.terms_digest == terms.digest() == stack.po.hash_terms(terms)
    assert order.state is OrderState.CREATED and not order.funded and not order.breached
    assert order.timestamp == stack.chain.w3.eth.get_block(result.block_number)["timestamp"]
    created = result.event("OrderCreated")
    assert (created.args["buyer"], created.args["supplier"]) == (
        a.buyer.address,
        a.supplier.address,
    )
    assert terms_from_abi(tuple(created.args["terms"])) == terms
    assert created.contract == "PurchaseOrders"
    fresh = PurchaseOrders(stack.chain, stack.po.address)  # knows no terms yet
    assert fresh.terms_of(result.value) == terms  # read back from the event


def test_erc20_order_cancel_and_withdraw(stack: Stack, make_terms: Callable[..., Terms]) -> None:
    a = stack.accounts
    token = stack.token
    assert token.decimals() == 6
    price = 2_500 * 10**6
    token.mint(a.buyer.address, price, by=a.buyer)
    token.approve(stack.escrow.address, price, by=a.buyer)
    terms = make_terms(token=token.address, price=price)
    order_id = stack.po.create_and_fund_order(terms, by=a.buyer).value
    assert stack.po.get_order(order_id).funded
    assert stack.escrow.total_owed(token.address) == price
    assert token.balance_of(a.buyer.address) == 0
    stack.po.cancel_order(order_id, by=a.buyer)
    assert stack.po.order_state(order_id) is OrderState.CANCELLED
    assert stack.escrow.credit_of(a.buyer.address, token.address) == price
    withdrawn = stack.escrow.withdraw(token.address, by=a.buyer)
    assert withdrawn.event("FundsWithdrawn")["amount"] == price
    assert token.balance_of(a.buyer.address) == price
    assert stack.escrow.total_owed(token.address) == 0


def test_fleet_roots_submitted_without_waiting(stack: Stack) -> None:
    a, domain, make_terms = stack.accounts, stack.domain, stack.make_terms
    order_id = shipped_order(stack, make_terms())
    now = stack.chain.now()
    batch = [
        (order_id, device(1), reading_digest(reading(order_id, i, now + i), domain))
        for i in range(8)
    ]
    tree = fleet_tree(batch)
    oracle = stack.chain.sender(a.oracle)
    for seq in range(1, 6):
        stack.qv.submit_commit_fleet_root(seq, tree.root, 8, by=a.oracle, gas=200_000)
    results = oracle.wait_all()
    assert [r.event("FleetRootCommitted")["batchSeq"] for r in results] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    assert [r.event("FleetRootCommitted")["logIndex"] for r in results] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]
    assert stack.qv.fleet_log(a.oracle.address) == (5, 5)
    log = FleetLog()
    for seq in range(1, 6):
        log.append(seq, tree.root, 8)
    assert stack.qv.fleet_log_root(a.oracle.address) == log.root()
    with pytest.raises(ContractRevert) as info:
        stack.qv.commit_fleet_root(5, tree.root, 8, by=a.oracle)
    assert info.value.name == "QualityVerificationStaleBatch"
    assert info.value.args == {"committer": a.oracle.address, "batchSeq": 5, "lastBatchSeq": 5}


def test_committed_reading_verifies_with_its_fleet_proof(stack: Stack) -> None:
    a, domain, make_terms = stack.accounts, stack.domain, stack.make_terms
    terms = make_terms()
    order_id = shipped_order(stack, terms)
    now = stack.chain.now()
    signed_readings = [
        signed(reading(order_id, i, now + i), domain, device_key(1)) for i in range(5)
    ]
    batch = FleetBatch(signed_readings, domain)
    stack.qv.commit_fleet_root(1, batch.root, len(batch), by=a.oracle)
    log = FleetLog()
    log.append(1, batch.root, len(batch))
    assert stack.qv.hash_reading(signed_readings[2]) == reading_digest(
        signed_readings[2].reading, domain
    )
    cert = stack.certify(order_id, 1)
    proof = log.fleet_proof(0, batch, 2)
    assert stack.qv.verify_fleet_reading(a.oracle.address, terms, signed_readings[2], cert, proof)
    wrong = log.fleet_proof(0, batch, 3)
    assert not stack.qv.verify_fleet_reading(
        a.oracle.address, terms, signed_readings[2], cert, wrong
    )


def test_excursion_proof_records_a_breach_and_preview_matches(stack: Stack) -> None:
    a, domain, make_terms = stack.accounts, stack.domain, stack.make_terms
    terms = make_terms(tolerated_excursion_secs=600)
    order_id = shipped_order(stack, terms)
    t0 = stack.chain.now() + 10
    warm = [
        signed(reading(order_id, s, t0 + 300 * s, temperature_centi_c=1200), domain, device_key(1))
        for s in range(1, 5)
    ]  # 900 s above the 8 °C limit
    stack.chain.time_travel(t0 + 1500)
    cert = stack.certify(order_id, 1)
    result = stack.qv.prove_excursion(order_id, terms, warm, cert, by=a.stranger)  # anyone
    proven = result.event("ExcursionProven")
    assert (proven["firstSeq"], proven["lastSeq"]) == (1, 4)
    assert result.event("BreachRecorded")["orderId"] == order_id
    order = stack.po.get_order(order_id)
    assert order.breached
    for late in (0, 1, 3600, 3601, 40 * 3600):
        at = terms.delivery_deadline + late
        assert stack.po.preview_settlement(order_id, at) == settlement_split(
            terms.price, terms, at, True
        )


def test_arrival_settles_as_the_preview_says(stack: Stack) -> None:
    a, domain, make_terms = stack.accounts, stack.domain, stack.make_terms
    terms = make_terms()
    order_id = shipped_order(stack, terms)
    arrived = terms.delivery_deadline + 2 * 3600 - 600  # 1h50 late → 2 started hours
    stack.chain.time_travel(arrived + 60)
    at_port = signed(
        reading(
            order_id, 1, arrived, latitude_e6=terms.dest_lat_e6, longitude_e6=terms.dest_lon_e6
        ),
        domain,
        device_key(1),
    )
    expected = settlement(terms.price, terms, arrived, False)
    assert expected.late_penalty_bps == 200
    assert stack.po.preview_settlement(order_id, arrived) == (
        expected.buyer_amount,
        expected.supplier_amount,
    )
    cert = stack.certify(order_id, 1)
    result = stack.qv.prove_arrival(order_id, terms, [at_port], [cert], by=a.oracle)
    settled = result.event("OrderSettled")
    assert (settled["buyerAmount"], settled["supplierAmount"]) == (
        expected.buyer_amount,
        expected.supplier_amount,
    )
    assert stack.po.order_state(order_id) is OrderState.SETTLED
    before = stack.chain.balance(a.supplier.address)
    w = stack.escrow.withdraw(by=a.supplier)
    assert stack.chain.balance(a.supplier.address) == (
        before + expected.supplier_amount - w.gas_used * w.effective_gas_price
    )


@given(
    price=st.integers(0, 2**88 - 1),
    late=st.integers(-(10**6), 10**8),
    rate=st.integers(0, 10_000),
    cap=st.integers(0, 10_000),
    breach=st.integers(0, 10_000),
    breached=st.booleans(),
)
def test_preview_conserves_money(
    price: int, late: int, rate: int, cap: int, breach: int, breached: bool
) -> None:
    terms = default_terms(
        1_000_000,
        "0x" + "11" * 20,
        buyer="0x" + "22" * 20,
        supplier="0x" + "33" * 20,
        late_penalty_bps_per_hour=rate,
        late_penalty_cap_bps=cap,
        breach_refund_bps=breach,
        token=ETH,
    )
    at = terms.delivery_deadline + late
    buyer, supplier = settlement_split(price, terms, at, breached)
    assert buyer + supplier == price
    assert 0 <= buyer <= price
    if late <= 0 and not breached:
        assert buyer == 0


WRAPPERS = (PurchaseOrders, QualityVerification, Escrow, Stablecoin)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda w: w.NAME)
def test_every_external_function_has_a_method(wrapper: type[ContractWrapper]) -> None:
    missing = [
        e["name"]
        for e in load_artifact(wrapper.NAME).abi_entries("function")
        if not callable(getattr(wrapper, _snake(e["name"]), None))
    ]
    assert missing == []


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda w: w.NAME)
def test_every_sending_method_takes_by_and_gas(wrapper: type[ContractWrapper]) -> None:
    for name, fn in inspect.getmembers(wrapper, inspect.isfunction):
        params = inspect.signature(fn).parameters
        if "by" in params and not name.startswith("_") and name != "submit":
            assert params["by"].kind is inspect.Parameter.KEYWORD_ONLY, name
            assert "gas" in params, f"{wrapper.NAME}.{name} takes no gas="
