"""Ingest over a real mosquitto: persistent sessions, acknowledgement only after storing,
redelivery of a batch that failed to store, shared subscriptions across oracle processes."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from backend.oracle.ingest import Inbound, Ingestor, IngestWorker
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesEngine
from backend.oracle.service import Oracle, OracleConfig
from backend.oracle.subscriber import SubscriberConfig, TelemetrySubscriber
from backend.store.db import upgrade_to_head
from backend.store.models import ReadingRow
from testkit.readings import DOMAIN, KEYS, T0, msg, seed
from testkit.servers import Server, start_mosquitto
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

BROKER_CONF = "allow_anonymous true\nmax_queued_messages 100000\nmax_inflight_messages 1000\n"


@pytest.fixture
def broker() -> Iterator[Server]:
    server = start_mosquitto(BROKER_CONF)
    yield server
    server.stop()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = upgrade_to_head(f"sqlite:///{tmp_path / 'oracle.db'}")
    seed(eng, {1: [0, 1]})
    yield eng
    eng.dispose()


def publish(server: Server, messages: list[Inbound]) -> None:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(500)
    pub.connect("127.0.0.1", server.port)
    pub.loop_start()
    infos = [pub.publish(m.topic, m.payload, qos=1) for m in messages]
    for info in infos:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()


def stored(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(ReadingRow)) or 0)


def start_ingest(
    server: Server, engine: Engine, client_id: str, metrics: Metrics
) -> tuple[TelemetrySubscriber, IngestWorker]:
    inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    sub = TelemetrySubscriber(
        SubscriberConfig(url=server.extra["url"], client_id=client_id), inbox.put
    )
    worker = IngestWorker(
        Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=metrics),
        sub.ack,
        inbox=inbox,
        batch_size=20,
    )
    worker.start()
    sub.start()
    assert sub.wait_subscribed(), server.log_tail()
    return sub, worker


def make_session(server: Server, client_id: str) -> None:
    """Connect once so the broker holds a persistent session that queues for us."""
    sub = TelemetrySubscriber(
        SubscriberConfig(url=server.extra["url"], client_id=client_id), lambda m: None
    )
    sub.start()
    assert sub.wait_subscribed(), server.log_tail()
    sub.stop()


class FailingInserts:
    """Makes every INSERT INTO readings fail while ``on`` (a database outage mid-batch)."""

    def __init__(self, engine: Engine) -> None:
        self.on = True
        self.attempts = 0
        event.listen(engine, "before_cursor_execute", self._hook)

    def _hook(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.on and statement.lstrip().upper().startswith("INSERT INTO READINGS"):
            self.attempts += 1
            raise RuntimeError("disk I/O error (injected)")


def test_a_batch_that_fails_to_store_is_not_acked_and_comes_back(
    broker: Server, engine: Engine
) -> None:
    make_session(broker, "oracle-a")
    messages = [msg(KEYS[0], 1, s, timestamp=T0 + s) for s in range(1, 41)]
    publish(broker, messages)

    fault = FailingInserts(engine)
    metrics = Metrics()
    sub, worker = start_ingest(broker, engine, "oracle-a", metrics)
    assert wait_for(lambda: fault.attempts >= 3 and sub.received == 40), (
        fault.attempts,
        sub.received,
    )
    sub.stop()  # the oracle goes away: nothing was acknowledged
    worker.stop()
    assert stored(engine) == 0 and metrics.get("trustship_ingest_accepted_total") == 0
    assert metrics.get("trustship_ingest_batch_failures_total") >= 3

    fault.on = False
    metrics2 = Metrics()
    sub2, worker2 = start_ingest(broker, engine, "oracle-a", metrics2)
    try:
        assert sub2.session_present
        assert wait_for(lambda: stored(engine) == 40), stored(engine)
    finally:
        sub2.stop()
        worker2.stop()
    assert metrics2.get("trustship_ingest_accepted_total") == 40


def test_in_process_retry_stores_then_acks_so_nothing_comes_back(
    broker: Server, engine: Engine
) -> None:
    make_session(broker, "oracle-b")
    publish(broker, [msg(KEYS[0], 1, s, timestamp=T0 + s) for s in range(1, 31)])
    fault = FailingInserts(engine)
    metrics = Metrics()
    sub, worker = start_ingest(broker, engine, "oracle-b", metrics)
    try:
        assert wait_for(lambda: fault.attempts >= 2)
        fault.on = False  # the database comes back
        assert wait_for(lambda: stored(engine) == 30)
        assert wait_for(lambda: worker.processed == 30)
        time.sleep(0.3)  # let the acks leave
    finally:
        sub.stop()
        worker.stop()
    # Reconnect: everything was acknowledged, so the broker has nothing to redeliver.
    metrics2 = Metrics()
    sub2, worker2 = start_ingest(broker, engine, "oracle-b", metrics2)
    try:
        time.sleep(1.0)
        assert sub2.received == 0
    finally:
        sub2.stop()
        worker2.stop()
    assert stored(engine) == 30


def test_oracle_service_counts_everything_and_two_processes_share_the_load(
    broker: Server, engine: Engine
) -> None:
    metrics = [Metrics(), Metrics()]
    oracles = [
        Oracle(
            engine,
            DOMAIN,
            OracleConfig(
                subscriber=SubscriberConfig(url=broker.extra["url"], client_id=f"svc-{i}")
            ),
            metrics=metrics[i],
        )
        for i in range(2)
    ]
    for o in oracles:
        o.start()
    try:
        for o in oracles:
            assert o.subscriber is not None and o.subscriber.wait_subscribed()
        good = [msg(KEYS[i % 2], 1, s, timestamp=T0 + s) for i in range(2) for s in range(1, 201)]
        bad = [Inbound(good[0].topic, b"not json"), msg(KEYS[5], 1, 1)]
        publish(broker, good + bad + good[:10])
        total = len(good) + len(bad) + 10

        def received() -> float:
            return sum(m.get("trustship_ingest_received_total") for m in metrics)

        assert wait_for(lambda: received() == total), received()
    finally:
        for o in oracles:
            o.stop()
    accepted = [m.get("trustship_ingest_accepted_total") for m in metrics]
    assert sum(accepted) == 400 == stored(engine)
    assert all(a > 0 for a in accepted), accepted  # the shared subscription split the load
    assert sum(m.get("trustship_ingest_duplicates_total") for m in metrics) == 10
    rejected: dict[str, float] = {}
    for m in metrics:
        for reason, n in m.by_label("trustship_ingest_rejected_total", "reason").items():
            rejected[reason] = rejected.get(reason, 0) + n
    assert rejected == {"malformed_json": 1, "unknown_device": 1}
