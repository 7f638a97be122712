"""The oracle's storage receipts: what a committed batch confirms, and how it is sent."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import Engine

from backend.oracle.ingest import BatchResult, Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.receipts import ReceiptPublisher
from backend.oracle.service import Oracle, OracleConfig
from backend.telemetry.receipts import decode_receipt, receipt_topic
from testkit.readings import DEVICES, DOMAIN, KEYS, msg, seed


def test_stored_and_already_stored_readings_are_confirmed_refused_ones_not(
    sqlite_engine: Engine,
) -> None:
    seed(sqlite_engine, {1: [0, 1]})
    ing = Ingestor(sqlite_engine, DOMAIN, metrics=Metrics())
    first = ing.ingest([msg(KEYS[0], 1, s) for s in (1, 2, 3)] + [msg(KEYS[1], 1, 1)])
    assert first.confirmed == {(1, DEVICES[0]): [1, 2, 3], (1, DEVICES[1]): [1]}
    # a device resends 2 and 3 (no receipt came), one changed copy, a new one, and
    # a copy inside the batch: the resent ones are duplicates, stored, so confirmed
    again = ing.ingest(
        [msg(KEYS[0], 1, 2), msg(KEYS[0], 1, 3), msg(KEYS[1], 1, 1, temperature_centi_c=999)]
        + [msg(KEYS[0], 1, 4), msg(KEYS[0], 1, 4)]
    )
    assert [(v.status, v.reason) for v in again.verdicts] == [
        ("duplicate", None),
        ("duplicate", None),
        ("rejected", "seq_reused"),
        ("stored", None),
        ("duplicate", None),
    ]
    assert again.stored == 1 and again.duplicates == 3
    assert {k: sorted(v) for k, v in again.confirmed.items()} == {(1, DEVICES[0]): [2, 3, 4]}


def test_publisher_gathers_per_device_and_drops_while_disconnected() -> None:
    sent: list[tuple[str, bytes]] = []
    connected = [True]

    def publish(topic: str, payload: bytes) -> bool:
        if connected[0]:
            sent.append((topic, payload))
        return connected[0]

    metrics = Metrics()
    pub = ReceiptPublisher(publish, metrics)
    pub.add({(1, DEVICES[0]): [1, 2], (1, DEVICES[1]): [5]})
    pub.add({(1, DEVICES[0]): [3, 7]})
    assert pub.pending_devices == 2
    assert pub.flush() == 2 and pub.pending_devices == 0
    got = {decode_receipt(p, t).device: decode_receipt(p, t) for t, p in sent}
    assert got[DEVICES[0]].stored == ((1, 3), (7, 7)) and got[DEVICES[1]].stored == ((5, 5),)
    assert sent[0][0] in {receipt_topic(DEVICES[0]), receipt_topic(DEVICES[1])}
    assert pub.flush() == 0 and len(sent) == 2  # nothing new, nothing sent
    connected[0] = False
    pub.add({(2, DEVICES[0]): [1]})
    assert pub.flush() == 0 and pub.pending_devices == 0
    assert metrics.get("trustship_receipts_published_total") == 2
    assert metrics.get("trustship_receipts_dropped_total") == 1


def test_the_oracle_gathers_each_batch_for_receipts_unless_switched_off(
    sqlite_engine: Engine,
) -> None:
    on = Oracle(sqlite_engine, DOMAIN, OracleConfig(receipt_interval_secs=2.0), metrics=Metrics())
    assert on.receipts is not None and on.receipts.interval_secs == 2.0
    on._on_batch(BatchResult(verdicts=[], confirmed={(1, DEVICES[0]): [1, 2]}))
    assert on.receipts.pending_devices == 1
    off = Oracle(sqlite_engine, DOMAIN, OracleConfig(receipts=False), metrics=Metrics())
    assert off.receipts is None


def test_the_receipt_thread_publishes_every_interval_and_what_is_left_at_stop() -> None:
    sent: list[str] = []
    pub = ReceiptPublisher(lambda t, p: sent.append(t) is None, Metrics(), interval_secs=0.05)
    pub.start()
    try:
        pub.add({(1, DEVICES[0]): [1]})
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent == [receipt_topic(DEVICES[0])]
        pub.add({(1, DEVICES[1]): [1]})
    finally:
        pub.stop()
    assert sent[-1] == receipt_topic(DEVICES[1]) and len(sent) == 2


def test_dropped_receipts_are_counted_always_and_logged_at_most_every_30_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stalled broker drops receipts at every flush (twice a second): each is counted,
    and one warning per 30 s says how many went since the last."""
    now = [0.0]
    metrics = Metrics()
    pub = ReceiptPublisher(lambda t, p: False, metrics, clock=lambda: now[0])
    warnings = []
    with caplog.at_level(logging.WARNING, logger="backend.oracle.receipts"):
        for step in range(130):  # 65 s, a flush every 0.5 s, a receipt dropped at each
            now[0] = step * 0.5
            pub.add({(1, DEVICES[0]): [step + 1]})
            pub.flush()
            warnings += [(now[0], r.getMessage()) for r in caplog.records]
            caplog.clear()
    assert metrics.get("trustship_receipts_dropped_total") == 130
    assert [at for at, _ in warnings] == [0.0, 30.0, 60.0]
    assert warnings[0][1].startswith("1 receipt(s) dropped:")
    assert warnings[1][1].startswith("60 receipt(s) dropped in the last 30 s")
