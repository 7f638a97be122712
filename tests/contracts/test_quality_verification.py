"""QualityVerification on-chain: the EIP-712 hash against backend.telemetry, Merkle
commitments and proofs built in Python, excursion / shock / arrival evidence with
every refusal — on eth-tester and anvil."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.chain.contracts import OrderState
from backend.chain.testing import Stack
from backend.telemetry import (
    FIELD_RANGES,
    Domain,
    MerkleTree,
    Reading,
    SignedReading,
    leaf_hash,
    reading_digest,
    recover_device,
    sign_reading,
    verify_proof,
)
from tests.contracts.helpers import (
    DAY,
    GAS,
    Orders,
    dev,
    device_key,
    events,
    reading,
    refused,
    sign,
)

pytestmark = pytest.mark.timeout(300)

HOT = 900  # above the default terms' 8.00 °C
COLD = -1_850  # below 2.00 °C, negative on purpose
TOLERATED = 1_800  # default terms


def _range(name: str) -> st.SearchStrategy[int]:
    lo, hi = FIELD_RANGES[name]
    return st.integers(lo, hi)


readings = st.builds(
    Reading,
    order_id=_range("orderId"),
    seq=_range("seq"),
    timestamp=_range("timestamp"),
    temperature_centi_c=_range("temperatureCentiC"),
    humidity_permille=_range("humidityPermille"),
    shock_milli_g=_range("shockMilliG"),
    latitude_e6=_range("latitudeE6"),
    longitude_e6=_range("longitudeE6"),
    flags=_range("flags"),
)


# ---- the hash ---------------------------------------------------------------------------


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(r=readings)
def test_hash_reading_equals_the_python_digest(stack: Stack, r: Reading) -> None:
    assert stack.qv.hash_reading(r) == reading_digest(r, stack.domain)


@pytest.mark.parametrize(
    "extreme",
    [
        {k: lo for k, (lo, _) in FIELD_RANGES.items()},
        {k: hi for k, (_, hi) in FIELD_RANGES.items()},
        {k: (-1 if lo < 0 else 0) for k, (lo, _) in FIELD_RANGES.items()},
    ],
    ids=["all-min", "all-max", "minus-one"],
)
def test_hash_reading_at_the_extremes(stack: Stack, extreme: dict[str, int]) -> None:
    r = Reading.from_wire(extreme)
    assert stack.qv.hash_reading(r) == reading_digest(r, stack.domain)


def test_digest_depends_on_the_domain(stack: Stack) -> None:
    r = reading(1, 1, 1_700_000_000)
    other = Domain(chain_id=stack.domain.chain_id + 1, verifying_contract=stack.qv.address)
    assert stack.qv.hash_reading(r) != reading_digest(r, other)


# ---- commitments ------------------------------------------------------------------------


def test_commit_readings_emits_and_stores_the_root(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.shipped()
    root = b"\x11" * 32
    result = stack.qv.commit_readings(oid, 1, root, 10, by=a.oracle)
    assert events(result) == [
        (
            "ReadingsCommitted",
            {
                "orderId": oid,
                "batchSeq": 1,
                "root": root,
                "readingCount": 10,
                "oracle": a.oracle.address,
            },
        )
    ]
    assert stack.qv.last_batch_seq(oid) == 1
    assert stack.qv.batch_root(oid, 1) == root
    # gaps in batchSeq are allowed; only going back is refused
    stack.qv.commit_readings(oid, 5, b"\x22" * 32, 1, by=a.oracle, gas=GAS)
    assert stack.qv.last_batch_seq(oid) == 5
    assert stack.qv.batch_root(oid, 2) == b"\x00" * 32


def test_stale_batches_are_refused_with_the_last_seq(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.shipped()
    with refused(
        stack, [oid], "QualityVerificationStaleBatch", orderId=oid, batchSeq=0, lastBatchSeq=0
    ):
        stack.qv.commit_readings(oid, 0, b"\x01" * 32, 1, by=a.oracle)
    stack.qv.commit_readings(oid, 3, b"\x01" * 32, 1, by=a.oracle, gas=GAS)
    for seq in (3, 2, 1):
        with refused(
            stack, [oid], "QualityVerificationStaleBatch", orderId=oid, batchSeq=seq, lastBatchSeq=3
        ):
            stack.qv.commit_readings(oid, seq, b"\x02" * 32, 1, by=a.oracle, gas=GAS)
    assert stack.qv.batch_root(oid, 3) == b"\x01" * 32


def test_empty_batches_are_refused(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.shipped()
    with refused(stack, [oid], "QualityVerificationEmptyBatch", orderId=oid):
        stack.qv.commit_readings(oid, 1, b"\x00" * 32, 5, by=a.oracle, gas=GAS)
    with refused(stack, [oid], "QualityVerificationEmptyBatch", orderId=oid):
        stack.qv.commit_readings(oid, 1, b"\x01" * 32, 0, by=a.oracle, gas=GAS)


def test_commitments_need_a_shipped_order(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.funded()
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        stack.qv.commit_readings(oid, 1, b"\x01" * 32, 1, by=a.oracle, gas=GAS)
    unknown = oid + 100
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=unknown):
        stack.qv.commit_readings(unknown, 1, b"\x01" * 32, 1, by=a.oracle, gas=GAS)


def test_commitments_are_accepted_after_settlement(stack: Stack, orders: Orders) -> None:
    """The last batch (often holding the arrival reading) can only come after settlement."""
    a = stack.accounts
    oid = orders.delivered()
    assert orders.state(oid) is OrderState.SETTLED
    stack.qv.commit_readings(oid, 1, b"\x01" * 32, 1, by=a.oracle)
    assert stack.qv.last_batch_seq(oid) == 1


@pytest.mark.parametrize("who", ["admin", "buyer", "supplier", "stranger"])
def test_only_oracles_commit(stack: Stack, orders: Orders, who: str) -> None:
    caller = getattr(stack.accounts, who)
    oid = orders.shipped()
    role = stack.qv.oracle_role()
    with refused(
        stack, [oid], "AccessControlUnauthorizedAccount", account=caller.address, neededRole=role
    ):
        stack.qv.commit_readings(oid, 1, b"\x01" * 32, 1, by=caller, gas=GAS)


def test_admin_grants_and_revokes_the_oracle_role(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.shipped()
    role = stack.qv.oracle_role()
    admin_role = stack.qv.default_admin_role()
    with refused(
        stack,
        [oid],
        "AccessControlUnauthorizedAccount",
        account=a.oracle.address,
        neededRole=admin_role,
    ):
        stack.qv.grant_oracle(a.stranger.address, by=a.oracle)
    result = stack.qv.grant_oracle(a.stranger.address, by=a.admin)
    assert events(result) == [
        ("RoleGranted", {"role": role, "account": a.stranger.address, "sender": a.admin.address})
    ]
    stack.qv.commit_readings(oid, 1, b"\x01" * 32, 1, by=a.stranger)
    stack.qv.revoke_role(role, a.stranger.address, by=a.admin)
    with refused(
        stack,
        [oid],
        "AccessControlUnauthorizedAccount",
        account=a.stranger.address,
        neededRole=role,
    ):
        stack.qv.commit_readings(oid, 2, b"\x01" * 32, 1, by=a.stranger, gas=GAS)


def test_wiring_is_set_once_and_binding_is_internal(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    admin_role = stack.qv.default_admin_role()
    with refused(
        stack,
        [],
        "AccessControlUnauthorizedAccount",
        account=a.stranger.address,
        neededRole=admin_role,
    ):
        stack.qv.set_purchase_orders(a.stranger.address, by=a.stranger)
    with refused(stack, [], "QualityVerificationAlreadyInitialized"):
        stack.qv.set_purchase_orders(a.stranger.address, by=a.admin)
    oid = orders.funded()
    for caller in (a.admin, a.supplier, a.oracle):
        with refused(stack, [oid], "QualityVerificationNotPurchaseOrders", caller=caller.address):
            stack.qv.bind_devices(oid, [dev(1)], by=caller)


# ---- Merkle proofs ----------------------------------------------------------------------


def _batch(stack: Stack, oid: int, n: int, start: int) -> list[SignedReading]:
    """n readings from devices 1 and 2 alternately, with varied (also negative) values."""
    out = []
    for i in range(n):
        r = reading(
            oid,
            i // 2 + 1,
            start + 60 * i,
            temperature_centi_c=-2_000 + 37 * i,
            humidity_permille=(13 * i) % 1001,
            lat=-33_000_000 - i,
            lon=-70_000_000 + 7 * i,
            flags=i % 8,
        )
        out.append(sign(stack, r, device=1 + i % 2))
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_every_leaf_of_a_committed_tree_verifies_on_chain(
    stack: Stack, orders: Orders, size: int
) -> None:
    a = stack.accounts
    oid = orders.shipped(devices=(1, 2))
    start = stack.po.get_order(oid).shipped_at
    batch = _batch(stack, oid, size, start)
    digests = [reading_digest(s.reading, stack.domain) for s in batch]
    tree = MerkleTree.from_digests(digests)
    stack.qv.commit_readings(oid, 1, tree.root, size, by=a.oracle, gas=GAS)
    assert stack.qv.batch_root(oid, 1) == tree.root
    for i, signed in enumerate(batch):
        proof = tree.proof(i)
        assert verify_proof(proof, tree.root, leaf_hash(digests[i]))
        assert stack.qv.verify_committed_reading(oid, 1, signed, proof), f"leaf {i} of {size}"
    # and not under another batch number or another order
    assert not stack.qv.verify_committed_reading(oid, 2, batch[0], tree.proof(0))
    if size > 1:
        # a proof of leaf i does not prove leaf j (reordered)
        for i in range(min(size, 10)):
            j = (i + 1) % size
            assert not stack.qv.verify_committed_reading(oid, 1, batch[j], tree.proof(i)), (i, j)


def test_forged_altered_and_wrong_order_readings_are_refused(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid = orders.shipped(devices=(1, 2))
    other = orders.shipped(devices=(1,))
    start = stack.po.get_order(oid).shipped_at
    good = _batch(stack, oid, 6, start)
    # a forged reading, signed by an unbound key, is *in* the committed tree: the proof
    # is valid, the signer is not
    forged = sign(stack, reading(oid, 99, start + 5), device=9)
    # a reading that names another order, signed by a device bound there too
    foreign = sign(stack, reading(other, 1, start + 5), device=1)
    batch = [*good, forged, foreign]
    digests = [reading_digest(s.reading, stack.domain) for s in batch]
    tree = MerkleTree.from_digests(digests)
    stack.qv.commit_readings(oid, 1, tree.root, len(batch), by=a.oracle, gas=GAS)

    assert stack.qv.verify_committed_reading(oid, 1, good[0], tree.proof(0))
    assert not stack.qv.verify_committed_reading(oid, 1, forged, tree.proof(6))
    assert not stack.qv.verify_committed_reading(oid, 1, foreign, tree.proof(7))
    # altered after signing: one field changed, same signature, the original's proof
    for change in (
        {"temperature_centi_c": good[2].reading.temperature_centi_c + 1},
        {"timestamp": good[2].reading.timestamp - 1},
        {"seq": good[2].reading.seq + 1},
        {"flags": 0 if good[2].reading.flags else 1},
    ):
        altered = SignedReading(
            replace(good[2].reading, **change), good[2].device, good[2].signature
        )
        assert not stack.qv.verify_committed_reading(oid, 1, altered, tree.proof(2)), change
    # a valid reading with a malformed signature: false, not a revert
    short = SignedReading(good[1].reading, good[1].device, good[1].signature[:64])
    assert not stack.qv.verify_committed_reading(oid, 1, short, tree.proof(1))
    # a reading of this order whose signature recovers to a bound device but proof of a sibling
    assert not stack.qv.verify_committed_reading(oid, 1, good[1], tree.proof(0))


# ---- excursion evidence -----------------------------------------------------------------


def _excursion(
    stack: Stack,
    oid: int,
    start: int,
    n: int = 4,
    step: int = 700,
    device: int = 1,
    seq0: int = 10,
    **fields: int,
) -> list[SignedReading]:
    fields.setdefault("temperature_centi_c", HOT)
    return [
        sign(stack, reading(oid, seq0 + i, start + step * i, **fields), device=device)
        for i in range(n)
    ]


def _in_transit(orders: Orders, **overrides: Any) -> tuple[int, int]:
    oid = orders.shipped(devices=(1, 2), **overrides)
    return oid, orders.stack.po.get_order(oid).shipped_at


@pytest.mark.parametrize(
    "fields",
    [{"temperature_centi_c": HOT}, {"temperature_centi_c": COLD}],
    ids=["hot", "cold"],
)
def test_valid_excursion_records_a_breach(
    stack: Stack, orders: Orders, fields: dict[str, int]
) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders)
    evidence = _excursion(stack, oid, start, n=4, step=700, device=2, **fields)  # 2100 s > 1800 s
    result = stack.qv.prove_excursion(oid, evidence, by=a.stranger)
    assert events(result) == [
        (
            "ExcursionProven",
            {
                "orderId": oid,
                "device": dev(2),
                "firstSeq": 10,
                "lastSeq": 13,
                "startedAt": start,
                "endedAt": start + 2100,
                "submitter": a.stranger.address,
            },
        ),
        ("BreachRecorded", {"orderId": oid}),
    ]
    order = stack.po.get_order(oid)
    assert (order.state, order.breached) == (OrderState.SHIPPED, True)


def test_humidity_excursion_counts_only_when_humidity_is_checked(
    stack: Stack, orders: Orders
) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders, max_humidity_permille=800)
    evidence = _excursion(stack, oid, start, temperature_centi_c=500, humidity_permille=801)
    result = stack.qv.prove_excursion(oid, evidence, by=a.buyer)
    assert result.event("ExcursionProven")["submitter"] == a.buyer.address

    oid, start = _in_transit(orders)  # max humidity 0 = not checked
    evidence = _excursion(stack, oid, start, temperature_centi_c=500, humidity_permille=1_000)
    with refused(stack, [oid], "QualityVerificationReadingInRange", orderId=oid, seq=10):
        stack.qv.prove_excursion(oid, evidence, by=a.buyer, gas=GAS)


def test_excursion_must_last_longer_than_tolerated(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders)
    exact = _excursion(stack, oid, start, n=3, step=TOLERATED // 2)  # exactly 1800 s
    with refused(
        stack,
        [oid],
        "QualityVerificationExcursionTooShort",
        orderId=oid,
        duration=1800,
        tolerated=1800,
    ):
        stack.qv.prove_excursion(oid, exact, by=a.stranger, gas=GAS)
    single = _excursion(stack, oid, start, n=1)
    with refused(
        stack,
        [oid],
        "QualityVerificationExcursionTooShort",
        orderId=oid,
        duration=0,
        tolerated=1800,
    ):
        stack.qv.prove_excursion(oid, single, by=a.stranger, gas=GAS)
    just_over = [
        *_excursion(stack, oid, start, n=2, step=900),
        *_excursion(stack, oid, start + 1801, n=1, seq0=12),
    ]
    stack.qv.prove_excursion(oid, just_over, by=a.stranger, gas=GAS)
    assert stack.po.get_order(oid).breached


def test_excursion_refusals(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders)
    ev = _excursion(stack, oid, start, n=4)

    def refuse(evidence: list[SignedReading], name: str, **args: object) -> None:
        with refused(stack, [oid], name, **args):
            stack.qv.prove_excursion(oid, evidence, by=a.stranger, gas=GAS)

    # a gap in seq
    gap = [*ev[:2], sign(stack, reading(oid, 13, start + 1400, temperature_centi_c=HOT)), ev[3]]
    refuse(
        gap, "QualityVerificationNotConsecutive", orderId=oid, index=2, expectedSeq=12, actualSeq=13
    )
    # the same reading twice is not consecutive either
    refuse(
        [ev[0], ev[0]],
        "QualityVerificationNotConsecutive",
        orderId=oid,
        index=1,
        expectedSeq=11,
        actualSeq=10,
    )
    # a different (bound) device in the middle
    mixed = [*ev[:2], sign(stack, ev[2].reading, device=2), ev[3]]
    refuse(
        mixed,
        "QualityVerificationDifferentDevice",
        orderId=oid,
        index=2,
        expected=dev(1),
        actual=dev(2),
    )
    # an unbound device
    refuse(
        _excursion(stack, oid, start, device=7),
        "QualityVerificationUnknownDevice",
        orderId=oid,
        device=dev(7),
    )
    unbound_later = [*ev[:3], sign(stack, ev[3].reading, device=7)]
    refuse(
        unbound_later,
        "QualityVerificationDifferentDevice",
        orderId=oid,
        index=3,
        expected=dev(1),
        actual=dev(7),
    )
    # one reading back inside the range
    dip = [*ev[:2], sign(stack, reading(oid, 12, start + 1400, temperature_centi_c=800)), ev[3]]
    refuse(dip, "QualityVerificationReadingInRange", orderId=oid, seq=12)
    # timestamps must increase
    flat = [ev[0], sign(stack, reading(oid, 11, start, temperature_centi_c=HOT)), *ev[2:]]
    refuse(flat, "QualityVerificationTimestampNotIncreasing", orderId=oid, index=1)
    # a reading of another order
    other, _ = _in_transit(orders)
    foreign = _excursion(stack, other, start, n=4)
    refuse(foreign, "QualityVerificationWrongOrder", orderId=oid, readingOrderId=other)
    refuse(
        [*ev[:3], foreign[3]], "QualityVerificationWrongOrder", orderId=oid, readingOrderId=other
    )
    # taken before shipment
    early = _excursion(stack, oid, start - 1, n=4)
    refuse(
        early,
        "QualityVerificationReadingBeforeShipment",
        orderId=oid,
        timestamp=start - 1,
        shippedAt=start,
    )
    # an unrecoverable signature
    bad = [ev[0], SignedReading(ev[1].reading, ev[1].device, b"\x00" * 65), *ev[2:]]
    refuse(bad, "QualityVerificationInvalidSignature", orderId=oid, index=1)
    # empty evidence, or readings and signatures of different lengths
    refuse([], "QualityVerificationBadEvidence", orderId=oid)
    with refused(stack, [oid], "QualityVerificationBadEvidence", orderId=oid):
        stack.qv._tx(
            "proveExcursion",
            (oid, [s.reading.as_tuple() for s in ev], [s.signature for s in ev[:3]]),
            a.stranger,
            gas=GAS,
        )
    # a signature for another chain recovers someone unbound
    foreign_domain = Domain(chain_id=stack.domain.chain_id + 1, verifying_contract=stack.qv.address)
    sig = sign_reading(ev[0].reading, foreign_domain, device_key(1))
    who = recover_device(ev[0].reading, stack.domain, sig)
    replayed = [SignedReading(ev[0].reading, dev(1), sig), *ev[1:]]
    refuse(replayed, "QualityVerificationUnknownDevice", orderId=oid, device=who)

    # all of the above left the order untouched; the honest evidence still works
    stack.qv.prove_excursion(oid, ev, by=a.stranger, gas=GAS)
    refuse(ev, "QualityVerificationAlreadyBreached", orderId=oid)


@pytest.mark.parametrize("state", ["funded", "settled", "delivered"])
def test_evidence_needs_an_order_in_transit(stack: Stack, orders: Orders, state: str) -> None:
    a = stack.accounts
    if state == "funded":
        oid = orders.funded()
        start = stack.chain.now()
    else:
        oid = orders.delivered(dispute_window_secs=DAY if state == "delivered" else 0)
        start = stack.po.get_order(oid).shipped_at
    ev = _excursion(stack, oid, start)
    shock = sign(stack, reading(oid, 1, start, shock_milli_g=10**6))
    arrival = sign(stack, reading(oid, 1, start))
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        stack.qv.prove_excursion(oid, ev, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        stack.qv.prove_shock(oid, shock, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        stack.qv.prove_arrival(oid, arrival, by=a.stranger, gas=GAS)


# ---- shock evidence ---------------------------------------------------------------------


def _refuses_early_and_unbound(
    stack: Stack,
    prove: Callable[..., Any],
    oid: int,
    start: int,
    early: SignedReading,
    unbound: SignedReading,
    device: str,
) -> None:
    """``prove`` refuses, changing nothing, a reading stamped a second before the shipment at
    ``start`` and one signed by ``device``, which the order does not bind."""
    a = stack.accounts
    with refused(stack, [oid], "QualityVerificationUnknownDevice", orderId=oid, device=device):
        prove(oid, unbound, by=a.stranger, gas=GAS)
    with refused(
        stack,
        [oid],
        "QualityVerificationReadingBeforeShipment",
        orderId=oid,
        timestamp=start - 1,
        shippedAt=start,
    ):
        prove(oid, early, by=a.stranger, gas=GAS)


def test_shock_over_the_limit_records_a_breach(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders, max_shock_milli_g=3_000)
    at_limit = sign(stack, reading(oid, 4, start + 10, shock_milli_g=3_000), device=2)
    with refused(
        stack,
        [oid],
        "QualityVerificationShockWithinLimit",
        orderId=oid,
        shockMilliG=3_000,
        limit=3_000,
    ):
        stack.qv.prove_shock(oid, at_limit, by=a.stranger, gas=GAS)
    unbound = sign(stack, reading(oid, 4, start + 10, shock_milli_g=3_001), device=5)
    early = sign(stack, reading(oid, 4, start - 1, shock_milli_g=3_001), device=2)
    _refuses_early_and_unbound(stack, stack.qv.prove_shock, oid, start, early, unbound, dev(5))
    with refused(
        stack, [oid], "QualityVerificationWrongOrder", orderId=oid, readingOrderId=oid + 1
    ):
        stack.qv.prove_shock(
            oid, sign(stack, reading(oid + 1, 4, start, shock_milli_g=9_999)), by=a.stranger
        )

    over = sign(stack, reading(oid, 5, start + 20, shock_milli_g=3_001), device=2)
    result = stack.qv.prove_shock(oid, over, by=a.supplier)
    assert events(result) == [
        (
            "ShockProven",
            {
                "orderId": oid,
                "device": dev(2),
                "seq": 5,
                "shockMilliG": 3_001,
                "submitter": a.supplier.address,
            },
        ),
        ("BreachRecorded", {"orderId": oid}),
    ]
    again = sign(stack, reading(oid, 6, start + 30, shock_milli_g=50_000), device=1)
    with refused(stack, [oid], "QualityVerificationAlreadyBreached", orderId=oid):
        stack.qv.prove_shock(oid, again, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "QualityVerificationAlreadyBreached", orderId=oid):
        stack.qv.prove_excursion(oid, _excursion(stack, oid, start), by=a.stranger, gas=GAS)


def test_shock_is_not_checked_when_the_limit_is_zero(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders)  # max_shock_milli_g = 0
    huge = sign(stack, reading(oid, 1, start, shock_milli_g=2**32 - 1))
    with refused(
        stack,
        [oid],
        "QualityVerificationShockWithinLimit",
        orderId=oid,
        shockMilliG=2**32 - 1,
        limit=0,
    ):
        stack.qv.prove_shock(oid, huge, by=a.stranger, gas=GAS)


# ---- arrival ----------------------------------------------------------------------------

SANTOS = (-23_960_000, -46_330_000)  # a destination with negative coordinates


@pytest.mark.parametrize(
    ("dlat", "dlon", "inside"),
    [
        (0, 0, True),
        (50_000, 0, True),
        (-50_000, 50_000, True),
        (-50_000, -50_000, True),
        (50_001, 0, False),
        (-50_001, 0, False),
        (0, 50_001, False),
        (0, -50_001, False),
        (40_000, -60_000, False),
    ],
)
def test_arrival_inside_or_outside_the_geofence(
    stack: Stack, orders: Orders, dlat: int, dlon: int, inside: bool
) -> None:
    a = stack.accounts
    lat0, lon0 = SANTOS
    oid, start = _in_transit(
        orders, dest_lat_e6=lat0, dest_lon_e6=lon0, geofence_e6=50_000, price=1_000
    )
    stack.chain.time_travel(start + 600)
    r = reading(oid, 3, start + 300, lat=lat0 + dlat, lon=lon0 + dlon)
    signed = sign(stack, r, device=2)
    if not inside:
        with refused(
            stack,
            [oid],
            "QualityVerificationOutsideGeofence",
            orderId=oid,
            latitudeE6=r.latitude_e6,
            longitudeE6=r.longitude_e6,
        ):
            stack.qv.prove_arrival(oid, signed, by=a.stranger, gas=GAS)
        return
    result = stack.qv.prove_arrival(oid, signed, by=a.stranger)
    assert events(result, "QualityVerification") == [
        (
            "ArrivalProven",
            {
                "orderId": oid,
                "device": dev(2),
                "seq": 3,
                "timestamp": start + 300,
                "submitter": a.stranger.address,
            },
        )
    ]
    assert result.event("OrderDelivered").args == {
        "orderId": oid,
        "deliveredAt": start + 300,
        "lateSeconds": 0,
        "confirmedBy": a.stranger.address,
    }
    order = stack.po.get_order(oid)
    assert (order.state, order.delivered_at) == (OrderState.SETTLED, start + 300)


def test_arrival_refusals(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders, dispute_window_secs=DAY)
    stack.chain.time_travel(start + 100)
    future = sign(stack, reading(oid, 1, start + 3_700))
    with refused(
        stack, [oid], "PurchaseOrdersInvalidDeliveryTime", orderId=oid, deliveredAt=start + 3_700
    ):
        stack.qv.prove_arrival(oid, future, by=a.stranger, gas=GAS)
    early = sign(stack, reading(oid, 1, start - 1))
    unbound = sign(stack, reading(oid, 1, start), device=3)
    _refuses_early_and_unbound(stack, stack.qv.prove_arrival, oid, start, early, unbound, dev(3))
    with refused(
        stack, [oid], "QualityVerificationWrongOrder", orderId=oid, readingOrderId=oid + 1
    ):
        stack.qv.prove_arrival(oid, sign(stack, reading(oid + 1, 1, start)), by=a.stranger, gas=GAS)
    unknown = oid + 50
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=unknown):
        stack.qv.prove_arrival(
            unknown, sign(stack, reading(unknown, 1, start)), by=a.stranger, gas=GAS
        )

    # at the shipment second is fine; with a dispute window the order waits in Delivered
    result = stack.qv.prove_arrival(oid, sign(stack, reading(oid, 1, start)), by=a.buyer)
    assert [name for name, _ in events(result)] == ["ArrivalProven", "OrderDelivered"]
    assert orders.state(oid) is OrderState.DELIVERED
    # a second arrival proof is refused: the order is no longer in transit
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        stack.qv.prove_arrival(oid, sign(stack, reading(oid, 2, start + 1)), by=a.buyer, gas=GAS)
