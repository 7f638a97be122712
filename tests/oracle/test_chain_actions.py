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
from backend.domain.actions import decode_action
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
from backend.telemetry import MerkleTree, Reading, device_address
from testkit.readings import wire_message

GAS = 3_000_000


def shipped_order(stack: Stack, devices: list[str], **terms: int) -> int:
    a = stack.accounts
    t = stack.make_terms(**terms)
    oid = int(stack.po.create_and_fund_order(t, by=a.buyer, gas=GAS).value)
    stack.po.accept_order(oid, by=a.supplier, gas=GAS)
    stack.po.ship_order(oid, devices, by=a.supplier, gas=GAS)
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

    dest_lat, dest_lon = (
        deployment.po.get_order(oid).terms.dest_lat_e6,
        deployment.po.get_order(oid).terms.dest_lon_e6,
    )
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
            "commit_batch": "done",
            "prove_excursion": "done",
            "prove_arrival": "done",
        }
        (commitment,) = repo.commitments_for(s, oid)
        assert commitment.status == "done" and commitment.tx_hash
        rows = repo.readings_by_ids(s, commitment.reading_ids)
    assert deployment.qv.last_batch_seq(oid) == 1
    assert deployment.qv.batch_root(oid, 1) == commitment.root
    tree = MerkleTree.from_digests([bytes(r.digest) for r in rows])
    assert deployment.qv.verify_committed_reading(oid, 1, signed_reading(rows[7]), tree.proof(7))

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
        assert row.buyer_amount + row.supplier_amount == order.terms.price
        names = [e.event for e in repo.events_for(s, oid)]
    for name in ("OrderCreated", "OrderShipped", "DeviceBound", "ReadingsCommitted",
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
    terms = deployment.po.get_order(oid).terms
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
