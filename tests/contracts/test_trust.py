"""Who may vouch for a shipment (issue 15, part 1) and the fleet commitment (part 3).

A device counts as a witness only with a certificate from an issuer the terms name;
the supplier cannot choose its own witnesses. Fleet roots: rebuilt from the readings,
they match the chain, and any reading altered, dropped or reordered after commitment
no longer does.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager

import pytest

from backend.chain.contracts import OrderState
from backend.chain.errors import ContractRevert
from backend.chain.testing import Stack, certify, device_key, issuer, issuer_key
from backend.telemetry import device_address
from backend.telemetry.certificates import SignedCertificate
from backend.telemetry.fleet import FleetBatch, FleetLog
from tests.contracts.helpers import (
    GAS,
    HOUR,
    Orders,
    cert,
    changes_nothing,
    dev,
    events,
    reading,
    refused,
    sign,
)

#: a key only the supplier holds: its own logger
ROGUE_KEY = device_key(666)
ROGUE = device_address(ROGUE_KEY)


def _rogue_cert(stack: Stack, order_id: int, issuer_n: int = 1) -> object:
    return certify(stack.domain, order_id, ROGUE, issuer_key(issuer_n))


def _self_certified(
    stack: Stack, order_id: int
) -> tuple[SignedCertificate, AbstractContextManager[None]]:
    """The supplier's own certificate for its logger (the supplier is no issuer the terms
    name) and the refusal every use of it meets: ``UncertifiedDevice``, nothing changed."""
    supplier = stack.accounts.supplier
    own = certify(stack.domain, order_id, ROGUE, supplier.key.hex())
    return own, refused(
        stack,
        [order_id],
        "QualityVerificationUncertifiedDevice",
        orderId=order_id,
        device=ROGUE,
        issuer=supplier.address,
    )


# ---- terms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device_issuer", "supplier"),
        ("device_issuer", "zero"),
        ("second_device_issuer", "supplier"),
        ("second_device_issuer", "first"),
        ("arrival_quorum", 3),
        ("arrival_quorum", 2),  # without a second issuer
    ],
)
def test_terms_refuse_the_supplier_as_issuer_and_bad_quorums(
    stack: Stack, orders: Orders, field: str, value: object
) -> None:
    a = stack.accounts
    resolved = (
        {
            "supplier": a.supplier.address,
            "zero": "0x0000000000000000000000000000000000000000",
            "first": issuer(1),
        }.get(value, value)
        if isinstance(value, str)
        else value
    )
    terms = orders.terms(**{field: resolved})
    name = (
        "arrivalQuorum"
        if field == "arrival_quorum"
        else ("deviceIssuer" if field == "device_issuer" else "secondDeviceIssuer")
    )
    with refused(stack, [], "PurchaseOrdersInvalidTerms", field=name):
        stack.po.create_order(terms, by=a.buyer, gas=GAS)


# ---- shipment ----------------------------------------------------------------------------


def test_supplier_binding_an_uncertified_device_is_refused_by_name(
    stack: Stack, orders: Orders
) -> None:
    a = stack.accounts
    oid = orders.funded()
    # the supplier certifies its own logger: it is not an issuer the terms name
    own, uncertified = _self_certified(stack, oid)
    with uncertified:
        stack.po.ship_order(oid, [own], by=a.supplier, gas=GAS)


def test_certificate_for_another_order_is_refused(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    first, second = orders.funded(), orders.funded()
    with refused(
        stack,
        [second],
        "QualityVerificationCertificateWrongOrder",
        orderId=second,
        certificateOrderId=first,
    ):
        stack.po.ship_order(second, [cert(stack, first)], by=a.supplier, gas=GAS)


def test_forged_issuer_signature_is_refused(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded()
    good = cert(stack, oid)
    # names issuer 1 but signed by the supplier
    forged = dataclasses.replace(
        certify(stack.domain, oid, dev(1), a.supplier.key.hex()), certificate=good.certificate
    )
    with refused(
        stack,
        [oid],
        "QualityVerificationForgedCertificate",
        orderId=oid,
        device=dev(1),
        issuer=issuer(1),
    ):
        stack.po.ship_order(oid, [forged], by=a.supplier, gas=GAS)


def test_expired_certificate_is_refused_at_shipment(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded()
    now = stack.chain.now()
    old = cert(stack, oid, valid_from=now - 10 * HOUR, valid_until=now - HOUR)
    with changes_nothing(stack, oid), pytest.raises(ContractRevert) as info:
        stack.po.ship_order(oid, [old], by=a.supplier, gas=GAS)
    err = info.value
    assert err.name == "QualityVerificationCertificateNotValid"
    assert (err.args["orderId"], err.args["device"]) == (oid, dev(1))
    assert (err.args["validFrom"], err.args["validUntil"]) == (now - 10 * HOUR, now - HOUR)
    assert err.args["at"] >= now


def test_revoked_device_cannot_be_bound(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded()
    _at, revoked = _revoke_device_1(stack, oid)
    with revoked:
        stack.po.ship_order(oid, [cert(stack, oid)], by=a.supplier, gas=GAS)


def test_ship_emits_device_bound_with_the_issuer(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded()
    result = stack.po.ship_order(oid, orders.certs(oid, (1, 2)), by=a.supplier)
    assert events(result, "QualityVerification") == [
        ("DeviceBound", {"orderId": oid, "device": dev(1), "issuer": issuer(1)}),
        ("DeviceBound", {"orderId": oid, "device": dev(2), "issuer": issuer(1)}),
    ]
    assert orders.state(oid) == OrderState.SHIPPED


def test_two_issuers_each_must_certify_a_device(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded(second_device_issuer=issuer(2), arrival_quorum=2)
    with refused(stack, [oid], "QualityVerificationIssuerMissing", orderId=oid, issuer=issuer(2)):
        stack.po.ship_order(oid, orders.certs(oid, (1,)), by=a.supplier, gas=GAS)


def test_wrong_terms_are_refused(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded()
    terms = orders.terms_of(oid)
    cheaper = terms.replace(price=terms.price - 1)
    with refused(
        stack,
        [oid],
        "PurchaseOrdersWrongTerms",
        orderId=oid,
        expected=terms.digest(),
        actual=cheaper.digest(),
    ):
        stack.po.ship_order(oid, orders.certs(oid), terms=cheaper, by=a.supplier, gas=GAS)


# ---- evidence ----------------------------------------------------------------------------


def _revoke_device_1(stack: Stack, order_id: int) -> tuple[int, AbstractContextManager[None]]:
    """Issuer 1 revokes device 1: the revocation time and the refusal every later use of
    the device on ``order_id`` meets (``DeviceRevoked``, nothing changed)."""
    revoked = stack.qv.revoke_device(dev(1), by=_issuer_account(stack, 1), gas=GAS)
    at = int(revoked.event("DeviceRevoked")["revokedAt"])
    return at, refused(
        stack,
        [order_id],
        "QualityVerificationDeviceRevoked",
        orderId=order_id,
        device=dev(1),
        issuer=issuer(1),
        revokedAt=at,
    )


def _issuer_account(stack: Stack, n: int):  # type: ignore[no-untyped-def]
    """Issuer ``n`` as an account that can send (funded from the admin)."""
    from eth_account import Account

    acct = Account.from_key(issuer_key(n))
    if stack.chain.balance(acct.address) == 0:
        stack.chain.sender(stack.accounts.admin).transact(
            acct.address, b"", value=10**18, gas=21_000, function="fund issuer"
        )
    return acct


def test_fake_arrival_by_a_supplier_held_device_fails(stack: Stack, orders: Orders) -> None:
    """The attack of issue 15: the supplier signs a reading inside the destination
    geofence with a key it holds. Neither binding it nor using it as evidence works."""
    a = stack.accounts
    oid = orders.shipped()
    terms = orders.terms_of(oid)
    start = stack.chain.now()
    fake = reading(oid, 1, start + 60)  # at the destination
    from backend.telemetry import SignedReading, sign_reading

    signed = SignedReading(fake, ROGUE, sign_reading(fake, stack.domain, ROGUE_KEY))
    stack.chain.advance_time(120)
    # with a certificate it signed itself
    own, uncertified = _self_certified(stack, oid)
    with uncertified:
        stack.qv.prove_arrival(oid, terms, [signed], [own], by=a.supplier, gas=GAS)
    # with the real device's certificate
    with refused(stack, [oid], "QualityVerificationUnknownDevice", orderId=oid, device=ROGUE):
        stack.qv.prove_arrival(oid, terms, [signed], [cert(stack, oid)], by=a.supplier, gas=GAS)
    # with a certificate the issuer never signed for the rogue device
    good = cert(stack, oid)
    stolen = dataclasses.replace(
        good, certificate=dataclasses.replace(good.certificate, device=ROGUE)
    )
    with refused(
        stack,
        [oid],
        "QualityVerificationForgedCertificate",
        orderId=oid,
        device=ROGUE,
        issuer=issuer(1),
    ):
        stack.qv.prove_arrival(oid, terms, [signed], [stolen], by=a.supplier, gas=GAS)
    assert orders.state(oid) == OrderState.SHIPPED


def test_quorum_two_needs_a_device_of_each_issuer(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.shipped(second_device_issuer=issuer(2), arrival_quorum=2, devices=(1, 100))
    terms = orders.terms_of(oid)
    t0 = stack.chain.now()
    stack.chain.advance_time(HOUR)
    carrier = sign(stack, reading(oid, 1, t0 + 600), 1)
    buyer_side = sign(stack, reading(oid, 1, t0 + 900), 100)
    c1, c2 = orders.certs(oid, (1, 100))
    # one issuer's device alone (e.g. a carrier colluding with the supplier) is not enough
    with refused(
        stack, [oid], "QualityVerificationQuorumNotMet", orderId=oid, required=2, provided=1
    ):
        stack.qv.prove_arrival(oid, terms, [carrier], [c1], by=a.stranger, gas=GAS)
    result = stack.qv.prove_arrival(oid, terms, [carrier, buyer_side], [c1, c2], by=a.stranger)
    delivered = result.event("OrderDelivered")
    assert delivered["deliveredAt"] == t0 + 900  # the moment the quorum was met
    assert orders.state(oid) == OrderState.SETTLED


def test_breach_by_any_certified_device_stands_under_quorum_two(
    stack: Stack, orders: Orders
) -> None:
    a = stack.accounts
    oid = orders.shipped(
        second_device_issuer=issuer(2), arrival_quorum=2, devices=(1, 100), max_shock_milli_g=1000
    )
    terms = orders.terms_of(oid)
    t0 = stack.chain.now()
    stack.chain.advance_time(HOUR)
    shock = sign(stack, reading(oid, 7, t0 + 60, shock_milli_g=5000), 100)
    result = stack.qv.prove_shock(oid, terms, shock, orders.certs(oid, (100,))[0], by=a.stranger)
    assert ("BreachRecorded", {"orderId": oid}) in events(result, "PurchaseOrders")


def test_readings_after_revocation_no_longer_count(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.shipped(max_shock_milli_g=1000)
    terms = orders.terms_of(oid)
    shipped = orders_shipped_at(stack, oid)
    # revoke strictly after shipment (anvil may mine consecutive blocks in one second)
    stack.chain.set_next_block_timestamp(max(shipped, stack.chain.now()) + 10)
    at, revoked = _revoke_device_1(stack, oid)
    assert stack.qv.revoked_at(issuer(1), dev(1)) == at
    stack.chain.advance_time(HOUR)
    after = sign(stack, reading(oid, 9, at + 10, shock_milli_g=5000))
    with revoked:
        stack.qv.prove_shock(oid, terms, after, cert(stack, oid), by=a.stranger, gas=GAS)
    # a reading from before the revocation still counts
    before = sign(stack, reading(oid, 8, at - 1, shock_milli_g=5000))
    assert before.reading.timestamp >= shipped
    stack.qv.prove_shock(oid, terms, before, cert(stack, oid), by=a.stranger)
    assert stack.po.get_order(oid).breached
    with refused(
        stack,
        [],
        "QualityVerificationAlreadyRevoked",
        issuer=issuer(1),
        device=dev(1),
        revokedAt=at,
    ):
        stack.qv.revoke_device(dev(1), by=_issuer_account(stack, 1), gas=GAS)


def orders_shipped_at(stack: Stack, order_id: int) -> int:
    return stack.po.get_order(order_id).timestamp


def test_expired_certificate_does_not_cover_a_reading(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    now = stack.chain.now()
    oid = orders.funded(max_shock_milli_g=1000)
    short = cert(stack, oid, valid_from=0, valid_until=now + 2 * HOUR)
    stack.po.ship_order(oid, [short], by=a.supplier, gas=GAS)
    stack.chain.advance_time(4 * HOUR)
    late = sign(stack, reading(oid, 3, now + 3 * HOUR, shock_milli_g=5000))
    with refused(
        stack,
        [oid],
        "QualityVerificationCertificateNotValid",
        orderId=oid,
        device=dev(1),
        validFrom=0,
        validUntil=now + 2 * HOUR,
        at=now + 3 * HOUR,
    ):
        stack.qv.prove_shock(oid, orders.terms_of(oid), late, short, by=a.stranger, gas=GAS)


def test_quorum_zero_leaves_delivery_to_the_buyer(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.shipped(arrival_quorum=0)
    stack.chain.advance_time(HOUR)
    r = sign(stack, reading(oid, 1, stack.chain.now() - 10))
    with refused(
        stack, [oid], "QualityVerificationQuorumNotMet", orderId=oid, required=0, provided=1
    ):
        stack.qv.prove_arrival(
            oid, orders.terms_of(oid), [r], [cert(stack, oid)], by=a.stranger, gas=GAS
        )


def test_only_purchase_orders_binds_devices(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded()
    with refused(stack, [oid], "QualityVerificationNotPurchaseOrders", caller=a.supplier.address):
        stack.qv.bind_devices(oid, issuer(1), issuer(2), [cert(stack, oid)], by=a.supplier, gas=GAS)


# ---- fleet commitments -------------------------------------------------------------------


def _fleet(stack: Stack, orders: Orders, n_orders: int = 3, per_order: int = 12):  # type: ignore[no-untyped-def]
    # distinct prices: distinct terms even when blocks share a timestamp (anvil)
    ids = [orders.shipped(price=10**18 + k) for k in range(n_orders)]
    t0 = stack.chain.now()
    readings = []
    for k in range(per_order):  # interleaved, as a window of the fleet arrives
        for oid in ids:
            readings.append(sign(stack, reading(oid, k + 1, t0 + 60 * k)))
    return ids, readings


def test_fleet_roots_rebuilt_from_the_readings_match_the_chain(
    stack: Stack, orders: Orders
) -> None:
    a = stack.accounts
    ids, readings = _fleet(stack, orders)
    log = FleetLog()
    batches = [FleetBatch(readings[:20], stack.domain), FleetBatch(readings[20:], stack.domain)]
    for seq, batch in enumerate(batches, start=1):
        result = stack.qv.commit_fleet_root(seq, batch.root, len(batch), by=a.oracle)
        assert result.event("FleetRootCommitted")["logIndex"] == log.append(
            seq, batch.root, len(batch)
        )
    assert stack.qv.fleet_log(a.oracle.address) == (2, 2)
    assert stack.qv.fleet_log_root(a.oracle.address) == log.root()

    # every reading stays provable for its order
    for log_index, batch in enumerate(batches):
        for i in (0, len(batch) - 1):
            r = batch.readings[i]
            proof = log.fleet_proof(log_index, batch, i)
            c = cert(stack, r.reading.order_id)
            terms = orders.terms_of(r.reading.order_id)
            assert stack.qv.verify_fleet_reading(a.oracle.address, terms, r, c, proof)
            # not for another order's terms, not at another position, not in another log
            other = orders.terms_of(ids[0] if r.reading.order_id != ids[0] else ids[1])
            assert not stack.qv.verify_fleet_reading(a.oracle.address, other, r, c, proof)
            moved = dataclasses.replace(proof, leaf_index=i ^ 1)
            assert not stack.qv.verify_fleet_reading(a.oracle.address, terms, r, c, moved)
            assert not stack.qv.verify_fleet_reading(a.stranger.address, terms, r, c, proof)


def test_rebuilt_roots_catch_a_reading_altered_dropped_or_reordered(
    stack: Stack, orders: Orders
) -> None:
    a = stack.accounts
    _ids, readings = _fleet(stack, orders)
    batch = FleetBatch(readings, stack.domain)
    stack.qv.commit_fleet_root(1, batch.root, len(batch), by=a.oracle, gas=GAS)
    log = FleetLog()
    log.append(1, batch.root, len(batch))
    assert log.root() == stack.qv.fleet_log_root(a.oracle.address)

    def rebuilt(rows: list) -> bytes:  # type: ignore[type-arg]
        fake_log = FleetLog()
        fake_log.append(1, FleetBatch(rows, stack.domain).root, len(rows))
        return fake_log.root()

    chain_root = stack.qv.fleet_log_root(a.oracle.address)
    assert rebuilt(list(readings)) == chain_root
    altered = list(readings)
    r = altered[5].reading
    altered[5] = dataclasses.replace(
        altered[5], reading=dataclasses.replace(r, temperature_centi_c=r.temperature_centi_c + 1)
    )
    dropped = readings[:7] + readings[8:]
    swapped = list(readings)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # siblings: sorted pairs alone would not see it
    for tampered in (altered, dropped, swapped):
        assert rebuilt(tampered) != chain_root


def test_fleet_log_refuses_stale_and_empty_batches(stack: Stack) -> None:
    a = stack.accounts
    root = b"\x11" * 32
    stack.qv.commit_fleet_root(5, root, 10, by=a.oracle, gas=GAS)
    with refused(
        stack,
        [],
        "QualityVerificationStaleBatch",
        committer=a.oracle.address,
        batchSeq=5,
        lastBatchSeq=5,
    ):
        stack.qv.commit_fleet_root(5, root, 10, by=a.oracle, gas=GAS)
    with refused(stack, [], "QualityVerificationEmptyBatch", committer=a.oracle.address):
        stack.qv.commit_fleet_root(6, bytes(32), 10, by=a.oracle, gas=GAS)
    with refused(stack, [], "QualityVerificationEmptyBatch", committer=a.oracle.address):
        stack.qv.commit_fleet_root(6, root, 0, by=a.oracle, gas=GAS)
    # logs are per committer: another committer starts its own
    stack.qv.commit_fleet_root(1, root, 10, by=a.stranger, gas=GAS)
    assert stack.qv.fleet_log(a.stranger.address) == (1, 1)


def test_a_fleet_root_costs_at_most_45000_gas_in_steady_state(stack: Stack) -> None:
    a = stack.accounts
    gas = [
        stack.qv.commit_fleet_root(
            i + 1, (i + 1).to_bytes(32, "big"), 10_000, by=a.buyer, gas=GAS
        ).gas_used
        for i in range(40)
    ]
    later = gas[1:]
    # a level of the frontier written for the first time (at 2, 4, 8, ... roots) costs a
    # new slot once in the log's life; every other root updates one slot
    fresh_levels = {1, 3, 7, 15, 31}
    steady = [g for i, g in enumerate(gas) if i not in fresh_levels and i != 0]
    assert max(steady) <= 45_000, steady
    assert sum(later) / len(later) <= 45_000
