"""Storage receipts against a broker that stops taking them (a real mosquitto,
SIGSTOPped): the oracle's outgoing queue stays bounded, what does not fit is dropped
and counted, and receipts flow again once the broker is back.

Before the bound, paho queued every receipt the broker had not acknowledged yet
(default: 20 in flight, no queue limit); a soak under tracemalloc found tens of
thousands of them held in the oracle, a few kB each.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from backend.oracle.metrics import Metrics
from backend.oracle.receipts import ReceiptPublisher
from backend.oracle.subscriber import SubscriberConfig, TelemetrySubscriber
from testkit.readings import DEVICES
from testkit.servers import Server, start_mosquitto

pytestmark = pytest.mark.integration

QUEUE = 50


@pytest.fixture
def broker() -> Iterator[Server]:
    server = start_mosquitto("allow_anonymous true\n")
    yield server
    server.proc.send_signal(signal.SIGCONT)
    server.stop()


def outgoing(sub: TelemetrySubscriber) -> int:
    return len(sub.client._out_messages)


def test_receipts_to_a_stalled_broker_are_dropped_past_the_bound(broker: Server) -> None:
    cfg = SubscriberConfig(
        url=broker.extra["url"],
        client_id="receipt-queue",
        publish_inflight=5,
        publish_queue=QUEUE,
    )
    sub = TelemetrySubscriber(cfg, lambda m: None)
    metrics = Metrics()
    receipts = ReceiptPublisher(sub.publish, metrics)
    sub.start()
    try:
        assert sub.wait_subscribed(), broker.log_tail()
        receipts.add({(1, DEVICES[0]): [1, 2, 3]})
        assert receipts.flush() == 1
        deadline = time.monotonic() + 10
        while outgoing(sub) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert outgoing(sub) == 0, "the broker acknowledged the first receipt"

        broker.proc.send_signal(signal.SIGSTOP)  # takes nothing, acknowledges nothing
        receipts.add(
            {(1, d): [1] for d in DEVICES[:4]} | {(o, DEVICES[0]): [1] for o in range(2, 200)}
        )
        sent = receipts.flush()
        assert sent == QUEUE, "as many as the queue holds are handed over"
        assert metrics.get("trustship_receipts_dropped_total") == 4 + 198 - QUEUE
        assert outgoing(sub) == QUEUE
        receipts.add({(500, DEVICES[1]): [7]})
        assert receipts.flush() == 0 and outgoing(sub) == QUEUE, "still full: dropped"

        broker.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 20
        while outgoing(sub) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outgoing(sub) == 0, "the queued receipts went out once the broker was back"
        receipts.add({(501, DEVICES[1]): [8]})
        assert receipts.flush() == 1
    finally:
        sub.stop()
