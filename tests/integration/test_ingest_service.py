"""The whole oracle service on real servers: anvil + mosquitto + SQLite.

Devices publish over MQTT; the oracle indexes the shipment, verifies and stores
the readings, proves the excursion and the arrival on chain, commits Merkle
batches, and the order ends Settled with the breach refund — no hand-holding."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy.orm import Session

from backend.chain.connection import connect
from backend.chain.contracts import Contracts, OrderState
from backend.chain.deploy import deploy_from_settings
from backend.chain.testing import certify, default_terms, device_key, issuer_key
from backend.core.settings import Settings
from backend.oracle.metrics import Metrics
from backend.oracle.service import OracleConfig
from backend.oracle.subscriber import SubscriberConfig
from backend.runtime import build
from backend.store import repositories as repo
from backend.telemetry import Reading, device_address
from testkit import waiting
from testkit.readings import wire_message
from testkit.servers import Server, start_anvil, start_mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    anvil = start_anvil()
    broker = start_mosquitto("allow_anonymous true\nmax_inflight_messages 1000\n")
    try:
        yield anvil, broker
    finally:
        broker.stop()
        anvil.stop()


def wait_for(cond: Callable[[], object]) -> bool:
    return waiting.wait_for(cond, timeout=60.0, interval=0.2)


def test_oracle_proves_breach_and_arrival_and_the_order_settles(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    anvil, broker = servers
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        RPC_URL=anvil.extra["url"],
        MQTT_URL=broker.extra["url"],
        DATABASE_URL=f"sqlite:///{tmp_path / 'oracle.db'}",
        DEPLOYMENT_FILE=tmp_path / "deployment.json",
        DEV_MODE=True,
    )
    deploy_from_settings(settings)
    config = OracleConfig(
        subscriber=SubscriberConfig(url=broker.extra["url"], client_id="svc-test"),
        commit_max_age_secs=1.0,
        indexer_poll_secs=0.2,
        outbox_poll_secs=0.2,
    )
    metrics = Metrics()
    stack = ExitStack()
    runtime = build(settings, stack, oracle_config=config, metrics=metrics)
    oracle = runtime.oracle
    runtime.start()
    try:
        chain = connect(settings)
        from backend.chain.deploy import load_deployment

        c = Contracts.from_deployment(chain, load_deployment(settings.DEPLOYMENT_FILE, chain))
        a = chain.accounts
        keys = [device_key(1), device_key(2)]
        terms = default_terms(
            chain.now(),
            a.require("arbiter").address,
            buyer=a.require("buyer").address,
            supplier=a.require("supplier").address,
            tolerated_excursion_secs=600,
        )
        oid = int(c.po.create_and_fund_order(terms, by=a.require("buyer")).value)
        c.po.accept_order(oid, by=a.require("supplier"))
        certs = [certify(c.quality.domain(), oid, device_address(k), issuer_key(1)) for k in keys]
        c.po.ship_order(oid, certs, by=a.require("supplier"))
        shipped_at = c.po.get_order(oid).timestamp
        chain.advance_time(3 * 3600)  # the voyage happened; the readings are in the past

        def bound() -> bool:
            with Session(oracle.engine) as s:
                return len(repo.devices_of_order(s, oid)) == 2

        assert wait_for(bound), "the indexer did not store the DeviceBound events"

        domain = c.quality.domain()
        messages: list[tuple[str, bytes]] = []
        for key, n_hot, arrive in ((keys[0], 14, False), (keys[1], 0, True)):
            for seq in range(1, 31):
                hot = seq <= n_hot
                at_dest = arrive and seq == 30
                r = Reading(
                    order_id=oid,
                    seq=seq,
                    timestamp=shipped_at + 60 * seq,
                    temperature_centi_c=1200 if hot else 500,
                    humidity_permille=500,
                    shock_milli_g=100,
                    latitude_e6=terms.dest_lat_e6 if at_dest else 40_000_000,
                    longitude_e6=terms.dest_lon_e6 if at_dest else -20_000_000,
                    flags=0,
                )
                messages.append(wire_message(key, r, domain))
        pub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="devices", protocol=mqtt.MQTTv5
        )
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        for info in [pub.publish(t, p, qos=1) for t, p in messages]:
            info.wait_for_publish(30)
        pub.disconnect()
        pub.loop_stop()

        assert wait_for(lambda: c.po.get_order(oid).state == OrderState.SETTLED), [
            (e.kind, e.status, e.last_error) for e in repo.outbox_for(Session(oracle.engine), oid)
        ]
        order = c.po.get_order(oid)
        assert order.breached and order.delivered_at == shipped_at + 60 * 30
        assert wait_for(lambda: c.quality.fleet_log(a.oracle.address)[0] >= 1)

        def indexed_settled() -> bool:
            with Session(oracle.engine) as s:
                row = repo.get_order(s, oid)
                return row is not None and row.state == "Settled"

        assert wait_for(indexed_settled)
        assert metrics.get("trustship_ingest_accepted_total") == 60
    finally:
        runtime.stop()
    with Session(oracle.engine) as s:
        row = repo.get_order(s, oid)
        assert row is not None and row.breached
        assert row.buyer_amount == terms.price * 3000 // 10_000
        assert {e.kind: e.status for e in repo.outbox_for(s, oid) if e.kind != "commit_batch"} == {
            "prove_excursion": "done",
            "prove_arrival": "done",
        }
        assert all(cm.status == "done" for cm in repo.commitments_for(s, oid))
    stack.close()
