"""The oracle against the real contracts (eth-tester): indexer → ingest/rules → batcher →
outbox → chain, and the "already done" reverts that make re-execution safe."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.chain.contracts import OrderState
from backend.chain.testing import Stack, device_key
from backend.domain.actions import FLEET, decode_action
from backend.domain.reading import signed_reading
from backend.indexer import ChainIndexer
from backend.indexer.metrics import IndexerMetrics
from backend.oracle.batcher import CommitmentBatcher
from backend.oracle.chain_actions import ChainExecutor
from backend.oracle.ingest import Inbound, Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.outbox import ActionAlreadyDone, OutboxWorker
from backend.oracle.rules import RulesEngine
from backend.store import repositories as repo
from backend.telemetry import Reading, device_address
from backend.telemetry.fleet import FleetBatch, FleetLog
from testkit.readings import wire_message

GAS = 3_000_000


def shipped_order(stack: Stack, devices: list[str], **terms: Any) -> int:
    """An order in transit with ``devices`` certified by issuer 1 (and, with a second
    issuer in the terms, every other device by issuer 2)."""
    a = stack.accounts
    t = stack.make_terms(**terms)
    oid = int(stack.po.create_and_fund_order(t, by=a.buyer, gas=GAS).value)
    stack.po.accept_order(oid, by=a.supplier, gas=GAS)
    two = int(t.second_device_issuer, 16) != 0
    certs = [
        stack.certificates(oid, [d], issuer_n=2 if two and i % 2 else 1)[0]
        for i, d in enumerate(devices)
    ]
    stack.po.ship_order(oid, certs, by=a.supplier, gas=GAS)
    return oid


def reading_msg(stack: Stack, key: str, oid: int, seq: int, ts: int, **kw: int) -> Inbound:
    lat, lon = kw.pop("lat", 40_000_000), kw.pop("lon", 0)
    r = Reading(
        order_id=oid,
        seq=seq,
        timestamp=ts,
        temperature_centi_c=kw.pop("temp", 500),
        humidity_permille=500,
        shock_milli_g=kw.pop("shock", 0),
        latitude_e6=lat,
        longitude_e6=lon,
        flags=0,
    )
    return Inbound(*wire_message(key, r, stack.domain))


def make_indexer(deployment: Stack, engine: Engine, metrics: Metrics) -> ChainIndexer:
    return ChainIndexer(
        engine,
        deployment.chain,
        deployment.contracts,
        start_block=deployment.deployment.block_number,
        metrics=IndexerMetrics(metrics.registry),
    )


def make_ingestor(
    deployment: Stack, engine: Engine, indexer: ChainIndexer, metrics: Metrics, **kw: Any
) -> Ingestor:
    """An ingestor whose chain clock is the indexer's (``kw``: follower, wall_clock)."""
    return Ingestor(
        engine,
        deployment.domain,
        rules=RulesEngine(),
        metrics=metrics,
        chain_time=lambda: indexer.chain_time,
        **kw,
    )


@pytest.fixture
def oracle_parts(
    deployment: Stack, sqlite_engine: Engine
) -> tuple[ChainIndexer, Ingestor, Metrics]:
    metrics = Metrics()
    indexer = make_indexer(deployment, sqlite_engine, metrics)
    return indexer, make_ingestor(deployment, sqlite_engine, indexer, metrics), metrics


def drain(outbox: OutboxWorker, passes: int = 6) -> None:
    for _ in range(passes):
        if not outbox.run_once(now=time.time() + 3600):
            return


def test_breach_then_arrival_settles_the_order_on_chain(
    deployment: Stack, sqlite_engine: Engine, oracle_parts: tuple[ChainIndexer, Ingestor, Metrics]
) -> None:
    indexer, ingestor, metrics = oracle_parts
    keys = [device_key(901), device_key(902)]
    oid = shipped_order(deployment, [device_address(k) for k in keys], tolerated_excursion_secs=600)
    indexer.run_once()
    with Session(sqlite_engine) as s:
        row = repo.get_order(s, oid)
        assert row is not None and row.state == "Shipped" and row.shipped_at
        assert set(repo.devices_of_order(s, oid)) == {device_address(k) for k in keys}
        shipped_at = row.shipped_at
    deployment.chain.advance_time(4 * 3600)
    indexer.run_once()  # the chain clock moved: readings up to then are not "future"

    terms = deployment.po.terms_of(oid)
    dest_lat, dest_lon = terms.dest_lat_e6, terms.dest_lon_e6
    msgs = [reading_msg(deployment, keys[0], oid, s, shipped_at + 60 * s) for s in range(1, 5)]
    msgs += [
        reading_msg(deployment, keys[0], oid, s, shipped_at + 60 * s, temp=1200)
        for s in range(5, 17)
    ]
    msgs += [
        reading_msg(deployment, keys[1], oid, 1, shipped_at + 3000, lat=dest_lat, lon=dest_lon)
    ]
    result = ingestor.ingest(msgs)
    assert result.stored == len(msgs)
    batcher = CommitmentBatcher(sqlite_engine, metrics=metrics)
    assert batcher.tick(flush=True) == 1

    executor = ChainExecutor(deployment.contracts, deployment.accounts.oracle)
    outbox = OutboxWorker(sqlite_engine, executor, metrics=metrics)
    drain(outbox)

    order = deployment.po.get_order(oid)
    assert order.breached and order.state == OrderState.SETTLED
    assert order.delivered_at == shipped_at + 3000
    with Session(sqlite_engine) as s:
        entries = {o.kind: o for o in repo.outbox_for(s, oid)}
        assert {k: e.status for k, e in entries.items()} == {
            "prove_excursion": "done",
            "prove_arrival": "done",
        }
        (commit,) = [o for o in repo.outbox_for(s, FLEET) if o.kind == "commit_batch"]
        entries["commit_batch"] = commit
        (commitment,) = repo.commitments_for(s, oid)
        assert commitment.status == "done" and commitment.tx_hash
        rows = repo.readings_by_ids(s, commitment.reading_ids)
    oracle = deployment.accounts.oracle.address
    assert deployment.qv.fleet_log(oracle) == (1, 1)
    batch = FleetBatch([signed_reading(r) for r in rows], deployment.domain)
    assert batch.root == commitment.root
    log = FleetLog()
    log.append(1, batch.root, len(batch))
    proof = log.fleet_proof(0, batch, 7)
    cert = deployment.certificates(oid, [rows[7].device])[0]
    assert deployment.qv.verify_fleet_reading(oracle, terms, signed_reading(rows[7]), cert, proof)

    # Running the same actions again meets the contracts' "already done" errors.
    with Session(sqlite_engine) as s:
        for kind in ("commit_batch", "prove_excursion", "prove_arrival"):
            e = entries[kind]
            with pytest.raises(ActionAlreadyDone):
                executor.execute(decode_action(e.kind, oid, dict(e.payload)), s)

    indexer.run_once()
    with Session(sqlite_engine) as s:
        row = repo.get_order(s, oid)
        assert row is not None and row.state == "Settled" and row.breached
        assert row.buyer_amount is not None and row.supplier_amount is not None
        assert row.buyer_amount + row.supplier_amount == terms.price
        names = [e.event for e in repo.events_for(s, oid)]
    for name in ("OrderCreated", "OrderShipped", "DeviceBound",
                 "ExcursionProven", "BreachRecorded", "ArrivalProven", "OrderDelivered",
                 "OrderSettled"):  # fmt: skip
        assert name in names
    assert metrics.get("trustship_outbox_results_total", kind="prove_excursion", result="done") == 1


def test_shock_proof_and_a_dispute_window_settlement(
    deployment: Stack, sqlite_engine: Engine, oracle_parts: tuple[ChainIndexer, Ingestor, Metrics]
) -> None:
    indexer, ingestor, metrics = oracle_parts
    key = device_key(903)
    oid = shipped_order(
        deployment, [device_address(key)], max_shock_milli_g=4000, dispute_window_secs=3600
    )
    indexer.run_once()
    with Session(sqlite_engine) as s:
        shipped_at = repo.get_order(s, oid).shipped_at  # type: ignore[union-attr]
    deployment.chain.advance_time(300)  # the window (3600 s from delivery) is still open
    indexer.run_once()
    terms = deployment.po.terms_of(oid)
    ingestor.ingest(
        [
            reading_msg(deployment, key, oid, 1, shipped_at + 60, shock=9000),
            reading_msg(
                deployment,
                key,
                oid,
                2,
                shipped_at + 120,
                lat=terms.dest_lat_e6,
                lon=terms.dest_lon_e6,
            ),
        ]
    )
    executor = ChainExecutor(deployment.contracts, deployment.accounts.oracle)
    outbox = OutboxWorker(sqlite_engine, executor, metrics=metrics)
    drain(outbox)
    order = deployment.po.get_order(oid)
    assert order.breached and order.state == OrderState.DELIVERED
    indexer.run_once()  # sees OrderDelivered with a dispute window: queues settle
    with Session(sqlite_engine) as s:
        settle = repo.outbox_entry(s, f"settle:{oid}")
        assert settle is not None and settle.status == "pending"
    drain(outbox)  # window still open on chain: retried later, not failed
    with Session(sqlite_engine) as s:
        settle = repo.outbox_entry(s, f"settle:{oid}")
        assert settle is not None and settle.status == "pending" and settle.attempts >= 1
        assert "PurchaseOrdersDisputeWindow" in (settle.last_error or "")
    deployment.chain.advance_time(3700)
    drain(outbox)
    assert deployment.po.get_order(oid).state == OrderState.SETTLED


def test_ingest_catches_up_with_the_chain_before_refusing(
    deployment: Stack, sqlite_engine: Engine
) -> None:
    """A device that publishes the moment its shipment is mined, on a chain whose clock
    just moved, is not refused as unknown_device or future_timestamp: ingest runs the
    indexer once before refusing. Without the catch-up both readings are refused."""
    metrics = Metrics()
    indexer = make_indexer(deployment, sqlite_engine, metrics)
    indexer.run_once()

    def ingestor(catch_up: bool) -> Ingestor:
        return make_ingestor(
            deployment,
            sqlite_engine,
            indexer,
            metrics,
            wall_clock=lambda: 0.0,  # only the chain's clock counts here
            follower=indexer if catch_up else None,
        )

    lagging, catching_up = ingestor(False), ingestor(True)
    keys = [device_key(911), device_key(912)]
    oid = shipped_order(deployment, [device_address(k) for k in keys])
    later = deployment.chain.advance_time(2 * 3600)  # the indexer has seen neither

    seen = indexer.chain_time
    assert seen is not None and seen < later
    msgs = [
        reading_msg(deployment, keys[0], oid, 1, seen),  # unknown device, as far as it knows
        reading_msg(deployment, keys[1], oid, 1, later),  # two hours in its future
    ]
    stale = lagging.ingest(msgs)
    assert stale.stored == 0
    assert stale.rejected == {"unknown_device": 1, "future_timestamp": 1}
    result = catching_up.ingest(msgs)
    assert result.stored == 2 and not result.rejected
    assert indexer.chain_time == later


def test_a_binding_mined_just_after_a_catch_up_is_still_seen(
    deployment: Stack, sqlite_engine: Engine
) -> None:
    """Catch-ups are rate limited; a reading from a device bound a moment after the last
    one waits for the next rather than being refused (and lost)."""
    metrics = Metrics()
    indexer = make_indexer(deployment, sqlite_engine, metrics)
    ingestor = make_ingestor(deployment, sqlite_engine, indexer, metrics, follower=indexer)
    first, second = device_key(921), device_key(922)
    oid1 = shipped_order(deployment, [device_address(first)])
    now = deployment.chain.now()
    assert ingestor.ingest([reading_msg(deployment, first, oid1, 1, now)]).stored == 1
    oid2 = shipped_order(deployment, [device_address(second)])  # right after that catch-up
    result = ingestor.ingest([reading_msg(deployment, second, oid2, 1, deployment.chain.now())])
    assert result.stored == 1 and not result.rejected


def _settle(
    deployment: Stack, sqlite_engine: Engine, ingestor: Ingestor, msgs: list[Inbound]
) -> OutboxWorker:
    assert ingestor.ingest(msgs).stored == len(msgs)
    executor = ChainExecutor(deployment.contracts, deployment.accounts.oracle)
    outbox = OutboxWorker(sqlite_engine, executor)
    drain(outbox)
    return outbox


def test_a_revoked_devices_later_readings_are_no_evidence(
    deployment: Stack, sqlite_engine: Engine, oracle_parts: tuple[ChainIndexer, Ingestor, Metrics]
) -> None:
    """Once its issuer revokes a device, its readings from then on prove neither a breach
    nor arrival (the contract would refuse them: QualityVerificationDeviceRevoked); what
    it signed before still counts."""
    indexer, ingestor, _ = oracle_parts
    keys = [device_key(931), device_key(932)]
    oid = shipped_order(deployment, [device_address(k) for k in keys], tolerated_excursion_secs=600)
    shipped_at = deployment.chain.now()
    deployment.chain.advance_time(600)
    revoked = deployment.qv.revoke_device(
        device_address(keys[0]), by=deployment.issuer_account(1), gas=GAS
    )
    revoked_at = int(revoked.event("DeviceRevoked")["revokedAt"])
    deployment.chain.advance_time(4 * 3600)
    indexer.run_once()
    with Session(sqlite_engine) as s:
        rows = {d.device: d for d in repo.devices_of_order_rows(s, oid)}
        assert rows[device_address(keys[0])].revoked_at == revoked_at
        assert rows[device_address(keys[1])].revoked_at is None
    terms = deployment.po.terms_of(oid)
    dest = {"lat": terms.dest_lat_e6, "lon": terms.dest_lon_e6}
    # after the revocation: a 20-minute excursion and arrival, both from the revoked device
    late = [
        reading_msg(deployment, keys[0], oid, s, revoked_at + 60 * s, temp=1500)
        for s in range(1, 22)
    ]
    late.append(reading_msg(deployment, keys[0], oid, 22, revoked_at + 1400, **dest))
    _settle(deployment, sqlite_engine, ingestor, late)
    order = deployment.po.get_order(oid)
    assert order.state == OrderState.SHIPPED and not order.breached
    with Session(sqlite_engine) as s:
        assert repo.outbox_for(s, oid) == []  # nothing to prove with them
        kinds = {a.kind for a in repo.alerts_for(s, oid)}
    assert "excursion_started" in kinds  # the readings are kept and still warn people
    # the certified, unrevoked device proves arrival
    arrived = revoked_at + 1500
    _settle(
        deployment,
        sqlite_engine,
        ingestor,
        [reading_msg(deployment, keys[1], oid, 1, arrived, **dest)],
    )
    order = deployment.po.get_order(oid)
    assert order.state == OrderState.SETTLED and order.delivered_at == arrived
    assert shipped_at < revoked_at


def test_quorum_two_waits_for_a_device_of_each_issuer(
    deployment: Stack, sqlite_engine: Engine, oracle_parts: tuple[ChainIndexer, Ingestor, Metrics]
) -> None:
    """With arrival_quorum 2 one issuer's device at the destination is not enough; the
    oracle proves arrival once a device of the other issuer is there too, with both."""
    from backend.chain.testing import issuer

    indexer, ingestor, _ = oracle_parts
    keys = [device_key(941), device_key(942)]  # certified by issuer 1 and issuer 2
    oid = shipped_order(
        deployment,
        [device_address(k) for k in keys],
        second_device_issuer=issuer(2),
        arrival_quorum=2,
    )
    shipped_at = deployment.chain.now()
    deployment.chain.advance_time(4 * 3600)
    indexer.run_once()
    terms = deployment.po.terms_of(oid)
    dest = {"lat": terms.dest_lat_e6, "lon": terms.dest_lon_e6}
    _settle(
        deployment,
        sqlite_engine,
        ingestor,
        [reading_msg(deployment, keys[0], oid, 1, shipped_at + 600, **dest)],
    )
    assert deployment.po.get_order(oid).state == OrderState.SHIPPED
    with Session(sqlite_engine) as s:
        assert repo.outbox_for(s, oid) == []
    _settle(
        deployment,
        sqlite_engine,
        ingestor,
        [reading_msg(deployment, keys[1], oid, 1, shipped_at + 900, **dest)],
    )
    order = deployment.po.get_order(oid)
    assert order.state == OrderState.SETTLED
    assert order.delivered_at == shipped_at + 900  # the later of the two witnesses
    with Session(sqlite_engine) as s:
        (arrival,) = repo.outbox_for(s, oid)
    assert arrival.kind == "prove_arrival" and len(arrival.payload["reading_ids"]) == 2


def test_the_disclosure_logs_head_is_anchored_with_the_next_commitment(
    deployment: Stack, sqlite_engine: Engine, oracle_parts: tuple[ChainIndexer, Ingestor, Metrics]
) -> None:
    """docs/sharing.md, "Anchoring": the head goes on chain, from the oracle's account to
    itself, after the commitment; once per head; and the log checks against it."""
    from backend.sharing import anchor, disclosures
    from backend.sharing.policy import DisclosureNote, Viewer

    indexer, ingestor, metrics = oracle_parts
    key = device_key(903)
    oid = shipped_order(deployment, [device_address(key)])
    indexer.run_once()
    with Session(sqlite_engine) as s:
        row = repo.get_order(s, oid)
        assert row is not None and row.shipped_at
        shipped_at = row.shipped_at
    deployment.chain.advance_time(3600)
    indexer.run_once()  # readings up to then are not "future"
    viewer = Viewer("overseas", "0x" + "22" * 20, frozenset({"auditor"}), "US")
    with Session(sqlite_engine) as s:
        disclosures.append(s, viewer, [DisclosureNote(oid, 7, "medium", "EU")] * 2, "GET /x", 1)
        head = disclosures.head(s)
    assert head.seq == 2
    batcher = CommitmentBatcher(sqlite_engine, metrics=metrics)
    executor = ChainExecutor(deployment.contracts, deployment.accounts.oracle)
    outbox = OutboxWorker(sqlite_engine, executor, metrics=metrics)
    for seq in (1, 2):  # two windows, the head unchanged: anchored once
        msg = reading_msg(deployment, key, oid, seq, shipped_at + 60 * seq)
        assert ingestor.ingest([msg]).stored == 1
        assert batcher.tick(flush=True) == 1
        drain(outbox)
    with Session(sqlite_engine) as s:
        fleet = repo.outbox_for(s, FLEET)
    kinds = [(e.kind, e.status) for e in fleet]
    assert kinds == [("commit_batch", "done"), ("anchor_disclosures", "done"),
                     ("commit_batch", "done")]  # fmt: skip
    (entry,) = [e for e in fleet if e.kind == "anchor_disclosures"]
    assert entry.tx_hash is not None
    tx = deployment.chain.w3.eth.get_transaction(entry.tx_hash)
    oracle = deployment.accounts.oracle.address
    assert tx["from"] == tx["to"] == oracle and tx["value"] == 0
    anchored = anchor.parse(bytes(tx["input"]))
    assert anchored == head
    with Session(sqlite_engine) as s:
        assert anchor.check(disclosures.whole_log(s), anchored).ok
