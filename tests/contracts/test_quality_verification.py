"""QualityVerification on-chain: the EIP-712 hash against backend.telemetry, Merkle
commitments and proofs built in Python, excursion / shock / arrival evidence with
every refusal — on eth-tester and anvil."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.chain.artifacts import load_artifact
from backend.chain.contracts import ZERO_ADDRESS, OrderState
from backend.chain.testing import Stack, certify, issuer, issuer_key
from backend.telemetry import (
    FIELD_RANGES,
    Domain,
    Reading,
    SignedReading,
    reading_digest,
    recover_device,
    sign_reading,
    verify_proof,
)
from backend.telemetry.certificates import SignedCertificate
from backend.telemetry.fleet import FleetBatch, FleetLog, fleet_leaf, log_entry
from tests.contracts.helpers import (
    DAY,
    GAS,
    HOUR,
    Orders,
    cert,
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


# ---- fleet commitments -------------------------------------------------------------------


def test_commit_fleet_root_emits_and_appends_to_the_log(stack: Stack) -> None:
    a = stack.accounts
    root = b"\x11" * 32
    log = FleetLog()
    result = stack.qv.commit_fleet_root(1, root, 10, by=a.oracle)
    assert events(result) == [
        (
            "FleetRootCommitted",
            {
                "committer": a.oracle.address,
                "batchSeq": 1,
                "root": root,
                "readingCount": 10,
                "logIndex": log.append(1, root, 10),
            },
        )
    ]
    assert stack.qv.fleet_log(a.oracle.address) == (1, 1)
    assert stack.qv.fleet_log_root(a.oracle.address) == log.root()
    assert stack.qv.fleet_log_entry(1, root, 10) == log_entry(1, root, 10)
    # gaps in batchSeq are allowed; only going back is refused
    result = stack.qv.commit_fleet_root(5, b"\x22" * 32, 1, by=a.oracle, gas=GAS)
    assert result.event("FleetRootCommitted")["logIndex"] == log.append(5, b"\x22" * 32, 1)
    assert stack.qv.fleet_log(a.oracle.address) == (5, 2)
    assert stack.qv.fleet_log_root(a.oracle.address) == log.root()


#: docs/gas.md's goal for every root of a log.
ROOT_GAS_GOAL = 45_000


def test_the_deployment_opens_the_oracles_log(stack: Stack) -> None:
    """deploy_all opens each oracle's log: an empty log (no root, the empty tree's
    root), and its first and fresh-level roots cost no more than the others."""
    a = stack.accounts
    me = a.oracle.address
    log = FleetLog()
    assert stack.qv.fleet_log(me) == (0, 0)
    assert stack.qv.fleet_log_root(me) == log.root()
    gas = []
    for seq in range(1, 10):  # fresh levels of an unopened log at roots 1, 2, 4 and 8
        root = seq.to_bytes(32, "big")
        result = stack.qv.commit_fleet_root(seq, root, 3, by=a.oracle, gas=GAS)
        assert result.event("FleetRootCommitted")["logIndex"] == log.append(seq, root, 3)
        assert stack.qv.fleet_log_root(me) == log.root()
        gas.append(result.gas_used)
    assert max(gas) <= ROOT_GAS_GOAL, gas


def test_an_opened_log_keeps_the_same_roots_and_costs_less(stack: Stack) -> None:
    """The same roots into an unopened and an opened log: the same log roots and
    indexes after every root (the opening's filler never enters a hash); the opened
    log's roots all stay under the goal, the unopened one pays fresh slots."""
    a = stack.accounts
    plain, opened = a.stranger, a.buyer
    result = stack.qv.open_fleet_log(opened.address, by=a.admin, gas=2_000_000)
    assert events(result) == [("FleetLogOpened", {"committer": opened.address})]
    gas: dict[str, list[int]] = {"plain": [], "opened": []}
    for seq in range(1, 18):
        root = (seq * 7).to_bytes(32, "big")
        for name, who in (("plain", plain), ("opened", opened)):
            r = stack.qv.commit_fleet_root(seq, root, seq, by=who, gas=GAS)
            assert r.event("FleetRootCommitted")["logIndex"] == seq - 1
            gas[name].append(r.gas_used)
        assert stack.qv.fleet_log_root(opened.address) == stack.qv.fleet_log_root(plain.address)
        assert stack.qv.fleet_log(opened.address) == stack.qv.fleet_log(plain.address) == (seq, seq)
    fresh = (0, 1, 3, 7, 15)  # the roots that first write a frontier level
    for i in fresh:
        assert gas["plain"][i] - gas["opened"][i] > 15_000, (i, gas)
        assert gas["plain"][i] > ROOT_GAS_GOAL
    # On the opened log a root costs a base plus one cold read and hash per level it
    # folds (the trailing zeros of its position), the same for every root otherwise:
    base, per_level = gas["opened"][0], gas["opened"][1] - gas["opened"][0]
    for i, g in enumerate(gas["opened"]):
        folds = ((i + 1) & -(i + 1)).bit_length() - 1
        assert g == base + per_level * folds, (i, gas["opened"])
    assert base + 3 * per_level <= ROOT_GAS_GOAL < base + 4 * per_level  # 15 roots in 16


def test_a_log_in_use_cannot_be_opened(stack: Stack) -> None:
    """Opening writes the frontier: refused once the log is open or holds a root, which
    it would otherwise corrupt."""
    a = stack.accounts
    me = a.oracle.address  # opened by the deployment
    with refused(stack, [], "QualityVerificationLogInUse", committer=me, size=0):
        stack.qv.open_fleet_log(me, by=a.stranger, gas=2_000_000)
    other = a.stranger.address
    stack.qv.commit_fleet_root(1, b"\x01" * 32, 1, by=a.stranger, gas=GAS)
    root = stack.qv.fleet_log_root(other)
    with refused(stack, [], "QualityVerificationLogInUse", committer=other, size=1):
        stack.qv.open_fleet_log(other, by=a.admin, gas=2_000_000)
    assert stack.qv.fleet_log_root(other) == root


def test_stale_batches_are_refused_with_the_last_seq(stack: Stack) -> None:
    a = stack.accounts
    me = a.oracle.address
    with refused(
        stack, [], "QualityVerificationStaleBatch", committer=me, batchSeq=0, lastBatchSeq=0
    ):
        stack.qv.commit_fleet_root(0, b"\x01" * 32, 1, by=a.oracle)
    stack.qv.commit_fleet_root(3, b"\x01" * 32, 1, by=a.oracle, gas=GAS)
    root = stack.qv.fleet_log_root(me)
    for seq in (3, 2, 1):
        with refused(
            stack, [], "QualityVerificationStaleBatch", committer=me, batchSeq=seq, lastBatchSeq=3
        ):
            stack.qv.commit_fleet_root(seq, b"\x02" * 32, 1, by=a.oracle, gas=GAS)
    assert stack.qv.fleet_log(me) == (3, 1)
    assert stack.qv.fleet_log_root(me) == root


def test_empty_batches_are_refused(stack: Stack) -> None:
    a = stack.accounts
    me = a.oracle.address
    with refused(stack, [], "QualityVerificationEmptyBatch", committer=me):
        stack.qv.commit_fleet_root(1, b"\x00" * 32, 5, by=a.oracle, gas=GAS)
    with refused(stack, [], "QualityVerificationEmptyBatch", committer=me):
        stack.qv.commit_fleet_root(1, b"\x01" * 32, 0, by=a.oracle, gas=GAS)
    assert stack.qv.fleet_log(me) == (0, 0)


def test_readings_stay_provable_after_settlement(stack: Stack, orders: Orders) -> None:
    """A fleet root is not tied to an order's state (what replaced "commitments need a
    shipped order" and "commitments are accepted after settlement"): the last window,
    often holding the arrival reading, is committed after settlement and still proves it."""
    a = stack.accounts
    oid = orders.shipped()
    start = stack.po.get_order(oid).timestamp
    batch = FleetBatch(_batch(stack, oid, 4, start), stack.domain)
    stack.chain.advance_time(HOUR)
    stack.po.confirm_receipt(oid, by=a.buyer, gas=GAS)
    assert orders.state(oid) is OrderState.SETTLED
    stack.qv.commit_fleet_root(1, batch.root, len(batch), by=a.oracle)
    log = FleetLog()
    log.append(1, batch.root, len(batch))
    terms = orders.terms_of(oid)
    for i, r in enumerate(batch.readings):
        proof = log.fleet_proof(0, batch, i)
        assert stack.qv.verify_fleet_reading(a.oracle.address, terms, r, _cert_of(stack, r), proof)
    # an unknown order's reading never verifies (and the view does not revert)
    unknown = sign(stack, reading(oid + 100, 1, start))
    ubatch = FleetBatch([unknown], stack.domain)
    stack.qv.commit_fleet_root(2, ubatch.root, 1, by=a.oracle)
    log.append(2, ubatch.root, 1)
    assert not stack.qv.verify_fleet_reading(
        a.oracle.address, terms, unknown, cert(stack, oid + 100), log.fleet_proof(1, ubatch, 0)
    )


@pytest.mark.parametrize("who", ["admin", "buyer", "supplier", "stranger", "oracle"])
def test_anyone_commits_into_its_own_log_only(stack: Stack, orders: Orders, who: str) -> None:
    """What replaced the oracle role: anyone may commit, but only into its own log;
    readers trust the logs of the committers they choose (the manifest's oracles)."""
    a = stack.accounts
    caller = getattr(a, who)
    oid = orders.shipped()
    start = stack.po.get_order(oid).timestamp
    batch = FleetBatch(_batch(stack, oid, 2, start), stack.domain)
    others = [x for x in (a.admin, a.buyer, a.supplier, a.stranger, a.oracle) if x is not caller]
    before = {x.address: stack.qv.fleet_log_root(x.address) for x in others}
    stack.qv.commit_fleet_root(1, batch.root, len(batch), by=caller, gas=GAS)
    assert stack.qv.fleet_log(caller.address) == (1, 1)
    assert {x.address: stack.qv.fleet_log_root(x.address) for x in others} == before
    log = FleetLog()
    log.append(1, batch.root, len(batch))
    r, proof = batch.readings[0], log.fleet_proof(0, batch, 0)
    terms = orders.terms_of(oid)
    assert stack.qv.verify_fleet_reading(caller.address, terms, r, _cert_of(stack, r), proof)
    for x in others:
        assert not stack.qv.verify_fleet_reading(x.address, terms, r, _cert_of(stack, r), proof)


#: QualityVerification's whole external interface: no roles, no wiring
QUALITY_FUNCTIONS = {
    "bindDevices",
    "commitFleetRoot",
    "openFleetLog",
    "eip712Domain",
    "fleetLeaf",
    "fleetLog",
    "fleetLogEntry",
    "fleetLogRoot",
    "hashCertificate",
    "hashReading",
    "proveArrival",
    "proveExcursion",
    "proveShock",
    "purchaseOrders",
    "revokeDevice",
    "revokedAt",
    "verifyFleetReading",
}


def test_no_roles_no_wiring_and_binding_is_internal(stack: Stack, orders: Orders) -> None:
    """What replaced the oracle role, the admin and the set-once wiring: no function
    grants or rewires anything, PurchaseOrders is fixed at deployment, and only it binds."""
    a = stack.accounts
    abi = load_artifact("QualityVerification").abi
    assert {x["name"] for x in abi if x["type"] == "function"} == QUALITY_FUNCTIONS
    assert stack.qv.purchase_orders() == stack.po.address
    oid = orders.funded()
    for caller in (a.admin, a.supplier, a.oracle):
        with refused(stack, [oid], "QualityVerificationNotPurchaseOrders", caller=caller.address):
            stack.qv.bind_devices(oid, issuer(1), ZERO_ADDRESS, [cert(stack, oid)], by=caller)


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


#: the devices the issuer certified for the orders here (shipped with both); any other
#: device is presented with device 1's certificate, as a supplier would try
_DEVICE_N = {dev(1): 1, dev(2): 2}


def _cert_of(stack: Stack, signed: SignedReading) -> Any:
    """The certificate of the device that claims ``signed`` for its order (device 1's
    for a device the issuer never certified)."""
    return cert(stack, signed.reading.order_id, _DEVICE_N.get(signed.device, 1))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_every_leaf_of_a_committed_tree_verifies_on_chain(
    stack: Stack, orders: Orders, size: int
) -> None:
    a = stack.accounts
    oid = orders.shipped(devices=(1, 2))
    terms = orders.terms_of(oid)
    start = stack.po.get_order(oid).timestamp
    batch = FleetBatch(_batch(stack, oid, size, start), stack.domain)
    stack.qv.commit_fleet_root(1, batch.root, size, by=a.oracle, gas=GAS)
    log = FleetLog()
    log.append(1, batch.root, size)
    assert stack.qv.fleet_log_root(a.oracle.address) == log.root()
    me = a.oracle.address
    for i, signed in enumerate(batch.readings):
        proof = log.fleet_proof(0, batch, i)
        leaf = fleet_leaf(oid, signed.device, reading_digest(signed.reading, stack.domain), i)
        assert leaf == stack.qv.fleet_leaf(
            oid, signed.device, reading_digest(signed.reading, stack.domain), i
        )
        assert verify_proof(proof.reading_proof, batch.root, leaf)
        c = _cert_of(stack, signed)
        assert stack.qv.verify_fleet_reading(me, terms, signed, c, proof), f"leaf {i} of {size}"
    # and not under another batch number, another count or another log position
    proof0, c0 = log.fleet_proof(0, batch, 0), _cert_of(stack, batch.readings[0])
    for changed in (
        replace(proof0, batch_seq=2),
        replace(proof0, count=size + 1),
        replace(proof0, log_index=1),
    ):
        assert not stack.qv.verify_fleet_reading(me, terms, batch.readings[0], c0, changed)
    if size > 1:
        # a proof of leaf i does not prove leaf j (reordered)
        for i in range(min(size, 10)):
            j = (i + 1) % size
            signed = batch.readings[j]
            proof = log.fleet_proof(0, batch, i)
            assert not stack.qv.verify_fleet_reading(
                me, terms, signed, _cert_of(stack, signed), proof
            ), (i, j)


def test_forged_altered_and_wrong_order_readings_are_refused(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    me = a.oracle.address
    oid = orders.shipped(devices=(1, 2))
    # another price: distinct terms even when blocks share a timestamp (anvil)
    other = orders.shipped(devices=(1,), price=10**18 + 1)
    terms, other_terms = orders.terms_of(oid), orders.terms_of(other)
    assert terms != other_terms
    start = stack.po.get_order(oid).timestamp
    good = _batch(stack, oid, 6, start)
    # a forged reading, signed by an uncertified key, is *in* the committed tree: the
    # proof is valid, the signer is not certified
    forged = sign(stack, reading(oid, 99, start + 5), device=9)
    # a reading that names another order, signed by a device certified there too
    foreign = sign(stack, reading(other, 1, start + 5), device=1)
    batch = FleetBatch([*good, forged, foreign], stack.domain)
    stack.qv.commit_fleet_root(1, batch.root, len(batch), by=a.oracle, gas=GAS)
    log = FleetLog()
    log.append(1, batch.root, len(batch))

    def proves(signed: SignedReading, index: int, t: Any = terms, c: Any = None) -> bool:
        c = c if c is not None else _cert_of(stack, signed)
        return stack.qv.verify_fleet_reading(me, t, signed, c, log.fleet_proof(0, batch, index))

    assert proves(good[0], 0)
    # the forged reading: with device 1's certificate the signer does not match; with a
    # certificate for device 9 from someone the terms do not name, it is not certified
    assert not proves(forged, 6)
    assert not proves(forged, 6, c=certify(stack.domain, oid, dev(9), issuer_key(5)))
    # the foreign reading proves only for its own order: leaves are bound to the order
    assert proves(foreign, 7, t=other_terms)
    assert not proves(foreign, 7, t=terms)
    assert not proves(foreign, 7, t=other_terms, c=cert(stack, oid, 1))
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
        assert not proves(altered, 2), change
    # a valid reading with a malformed signature: false, not a revert
    short = SignedReading(good[1].reading, good[1].device, good[1].signature[:64])
    assert not proves(short, 1)
    # a reading of this order whose signature recovers to a certified device but proof of a sibling
    assert not proves(good[1], 0)


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
    return oid, orders.stack.po.get_order(oid).timestamp


def _excursion_tx(
    stack: Stack,
    oid: int,
    evidence: list[SignedReading],
    *,
    by: Any,
    gas: int | None = None,
    certificate: SignedCertificate | None = None,
) -> Any:
    """proveExcursion with the order's terms and the certificate of the device that claims
    the first reading (a test device's, for this order)."""
    if certificate is None:
        certificate = cert(stack, oid, _DEVICE_N.get(evidence[0].device, 1) if evidence else 1)
    terms = stack.po.terms_of(oid)
    return stack.qv.prove_excursion(oid, terms, evidence, certificate, by=by, gas=gas)


def _shock_tx(
    stack: Stack, oid: int, signed: SignedReading, *, by: Any, gas: int | None = None
) -> Any:
    c = cert(stack, oid, _DEVICE_N.get(signed.device, 1))
    return stack.qv.prove_shock(oid, stack.po.terms_of(oid), signed, c, by=by, gas=gas)


def _arrival_tx(
    stack: Stack,
    oid: int,
    signed: SignedReading,
    *,
    by: Any,
    gas: int | None = None,
    terms: Any = None,
) -> Any:
    c = cert(stack, oid, _DEVICE_N.get(signed.device, 1))
    terms = terms if terms is not None else stack.po.terms_of(oid)
    return stack.qv.prove_arrival(oid, terms, [signed], [c], by=by, gas=gas)


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
    result = _excursion_tx(stack, oid, evidence, by=a.stranger)
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
    result = _excursion_tx(stack, oid, evidence, by=a.buyer)
    assert result.event("ExcursionProven")["submitter"] == a.buyer.address

    oid, start = _in_transit(orders)  # max humidity 0 = not checked
    evidence = _excursion(stack, oid, start, temperature_centi_c=500, humidity_permille=1_000)
    with refused(stack, [oid], "QualityVerificationReadingInRange", orderId=oid, seq=10):
        _excursion_tx(stack, oid, evidence, by=a.buyer, gas=GAS)


def test_excursion_must_last_longer_than_tolerated(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders)

    def too_short(evidence: list[SignedReading], duration: int) -> None:
        with refused(
            stack,
            [oid],
            "QualityVerificationExcursionTooShort",
            orderId=oid,
            duration=duration,
            tolerated=1800,
        ):
            _excursion_tx(stack, oid, evidence, by=a.stranger, gas=GAS)

    too_short(_excursion(stack, oid, start, n=3, step=TOLERATED // 2), 1800)  # exactly 1800 s
    too_short(_excursion(stack, oid, start, n=1), 0)
    just_over = [
        *_excursion(stack, oid, start, n=2, step=900),
        *_excursion(stack, oid, start + 1801, n=1, seq0=12),
    ]
    _excursion_tx(stack, oid, just_over, by=a.stranger, gas=GAS)
    assert stack.po.get_order(oid).breached


def test_excursion_refusals(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders)
    ev = _excursion(stack, oid, start, n=4)

    def refuse(evidence: list[SignedReading], name: str, **args: object) -> None:
        with refused(stack, [oid], name, **args):
            _excursion_tx(stack, oid, evidence, by=a.stranger, gas=GAS)

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
            (
                oid,
                stack.po.terms_of(oid).as_tuple(),
                [s.reading.as_tuple() for s in ev],
                [s.signature for s in ev[:3]],
                cert(stack, oid).as_tuple(),
            ),
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
    _excursion_tx(stack, oid, ev, by=a.stranger, gas=GAS)
    refuse(ev, "QualityVerificationAlreadyBreached", orderId=oid)


@pytest.mark.parametrize("state", ["funded", "settled", "delivered"])
def test_evidence_needs_an_order_in_transit(stack: Stack, orders: Orders, state: str) -> None:
    a = stack.accounts
    if state == "funded":
        oid = orders.funded()
        start = stack.chain.now()
    else:
        oid = orders.delivered(dispute_window_secs=DAY if state == "delivered" else 0)
        start = stack.po.get_order(oid).timestamp  # the delivery time, after shipment
    ev = _excursion(stack, oid, start)
    shock = sign(stack, reading(oid, 1, start, shock_milli_g=10**6))
    arrival = sign(stack, reading(oid, 1, start))
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        _excursion_tx(stack, oid, ev, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        _shock_tx(stack, oid, shock, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        _arrival_tx(stack, oid, arrival, by=a.stranger, gas=GAS)


def _before_shipment(stack: Stack, oid: int, shipped_at: int) -> AbstractContextManager[None]:
    """The refusal of evidence with a reading taken one second before the order shipped."""
    return refused(
        stack,
        [oid],
        "QualityVerificationReadingBeforeShipment",
        orderId=oid,
        timestamp=shipped_at - 1,
        shippedAt=shipped_at,
    )


# ---- shock evidence ---------------------------------------------------------------------


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
        _shock_tx(stack, oid, at_limit, by=a.stranger, gas=GAS)
    unbound = sign(stack, reading(oid, 4, start + 10, shock_milli_g=3_001), device=5)
    with refused(stack, [oid], "QualityVerificationUnknownDevice", orderId=oid, device=dev(5)):
        _shock_tx(stack, oid, unbound, by=a.stranger, gas=GAS)
    early = sign(stack, reading(oid, 4, start - 1, shock_milli_g=3_001), device=2)
    with _before_shipment(stack, oid, start):
        _shock_tx(stack, oid, early, by=a.stranger, gas=GAS)
    with refused(
        stack, [oid], "QualityVerificationWrongOrder", orderId=oid, readingOrderId=oid + 1
    ):
        _shock_tx(
            stack, oid, sign(stack, reading(oid + 1, 4, start, shock_milli_g=9_999)), by=a.stranger
        )

    over = sign(stack, reading(oid, 5, start + 20, shock_milli_g=3_001), device=2)
    result = _shock_tx(stack, oid, over, by=a.supplier)
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
        _shock_tx(stack, oid, again, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "QualityVerificationAlreadyBreached", orderId=oid):
        _excursion_tx(stack, oid, _excursion(stack, oid, start), by=a.stranger, gas=GAS)


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
        _shock_tx(stack, oid, huge, by=a.stranger, gas=GAS)


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
            _arrival_tx(stack, oid, signed, by=a.stranger, gas=GAS)
        return
    result = _arrival_tx(stack, oid, signed, by=a.stranger)
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
    assert (order.state, order.timestamp) == (OrderState.SETTLED, start + 300)


def test_arrival_refusals(stack: Stack, orders: Orders) -> None:
    a = stack.accounts
    oid, start = _in_transit(orders, dispute_window_secs=DAY)
    stack.chain.time_travel(start + 100)
    future = sign(stack, reading(oid, 1, start + 3_700))
    with refused(
        stack, [oid], "PurchaseOrdersInvalidDeliveryTime", orderId=oid, deliveredAt=start + 3_700
    ):
        _arrival_tx(stack, oid, future, by=a.stranger, gas=GAS)
    early = sign(stack, reading(oid, 1, start - 1))
    with _before_shipment(stack, oid, start):
        _arrival_tx(stack, oid, early, by=a.stranger, gas=GAS)
    with refused(stack, [oid], "QualityVerificationUnknownDevice", orderId=oid, device=dev(3)):
        _arrival_tx(
            stack, oid, sign(stack, reading(oid, 1, start), device=3), by=a.stranger, gas=GAS
        )
    with refused(
        stack, [oid], "QualityVerificationWrongOrder", orderId=oid, readingOrderId=oid + 1
    ):
        _arrival_tx(stack, oid, sign(stack, reading(oid + 1, 1, start)), by=a.stranger, gas=GAS)
    unknown = oid + 50
    with refused(stack, [oid], "PurchaseOrdersUnknownOrder", orderId=unknown):
        _arrival_tx(
            stack,
            unknown,
            sign(stack, reading(unknown, 1, start)),
            by=a.stranger,
            gas=GAS,
            terms=orders.terms_of(oid),
        )

    # at the shipment second is fine; with a dispute window the order waits in Delivered
    result = _arrival_tx(stack, oid, sign(stack, reading(oid, 1, start)), by=a.buyer)
    assert [name for name, _ in events(result)] == ["ArrivalProven", "OrderDelivered"]
    assert orders.state(oid) is OrderState.DELIVERED
    # a second arrival proof is refused: the order is no longer in transit
    with refused(stack, [oid], "QualityVerificationOrderNotInTransit", orderId=oid):
        _arrival_tx(stack, oid, sign(stack, reading(oid, 2, start + 1)), by=a.buyer, gas=GAS)
