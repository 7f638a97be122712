"""Storage receipts on the wire (backend/telemetry/receipts.py)."""

from __future__ import annotations

import json

import pytest

from backend.core.errors import WireError
from backend.telemetry.receipts import (
    MAX_RANGES,
    Receipt,
    decode_receipt,
    receipt_topic,
    seq_ranges,
)
from testkit.readings import DEVICES

DEVICE = DEVICES[0]  # checksummed
TOPIC = receipt_topic(DEVICE)


def test_seq_ranges_merge_sort_and_drop_repeats() -> None:
    assert seq_ranges([]) == []
    assert seq_ranges([5, 1, 2, 3, 3, 7, 6, 10]) == [(1, 3), (5, 7), (10, 10)]


def test_round_trip_and_cover() -> None:
    r = Receipt(7, DEVICE, ((1, 40), (42, 42)))
    assert r.topic == "trustship/v1/receipts/" + DEVICE
    assert json.loads(r.encode()) == {
        "v": 1,
        "orderId": 7,
        "device": DEVICE,
        "stored": [[1, 40], [42, 42]],
    }
    assert decode_receipt(r.encode(), TOPIC) == r
    assert decode_receipt(r.encode(), TOPIC.lower()) == r  # any spelling: checksummed
    assert r.covers(40) and r.covers(42) and not r.covers(41) and not r.covers(0)


def test_split_keeps_each_message_bounded() -> None:
    seqs = range(1, 4 * MAX_RANGES + 3, 2)  # every other seq: one range each
    parts = Receipt.split(3, DEVICE, seqs)
    assert [len(p.stored) for p in parts] == [MAX_RANGES, MAX_RANGES, 1]
    assert [s for p in parts for a, b in p.stored for s in range(a, b + 1)] == list(seqs)
    assert all(decode_receipt(p.encode(), TOPIC) == p for p in parts)


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        ("trustship/v1/receipts/nope", {}, "bad_topic"),
        (TOPIC, {"v": 2, "orderId": 1, "device": DEVICE, "stored": []}, "bad_receipt"),
        (TOPIC, {"v": 1, "orderId": -1, "device": DEVICE, "stored": []}, "bad_receipt"),
        (TOPIC, {"v": 1, "orderId": 1, "device": "0x" + "1" * 40, "stored": []}, "bad_receipt"),
        (TOPIC, {"v": 1, "orderId": 1, "device": DEVICE, "stored": [[3, 2]]}, "bad_receipt"),
        (
            TOPIC,
            {"v": 1, "orderId": 1, "device": DEVICE, "stored": [[1, 5], [5, 6]]},
            "bad_receipt",
        ),
        (TOPIC, {"v": 1, "orderId": 1, "device": DEVICE, "stored": [[1.0, 2]]}, "bad_receipt"),
        (TOPIC, {"v": 1, "orderId": 1, "device": DEVICE, "stored": [[1, 2**32]]}, "bad_receipt"),
        (TOPIC, {"v": 1, "orderId": 1, "device": DEVICE, "stored": [], "x": 1}, "bad_receipt"),
        (TOPIC, [1], "bad_receipt"),
    ],
)
def test_malformed_receipts_are_refused(topic: str, body: object, reason: str) -> None:
    with pytest.raises(WireError) as exc:
        decode_receipt(json.dumps(body).encode(), topic)
    assert exc.value.reason == reason


def test_too_many_ranges_or_bytes_are_refused() -> None:
    body = {"v": 1, "orderId": 1, "device": DEVICE, "stored": [[i, i] for i in range(0, 90, 2)]}
    with pytest.raises(WireError, match="at most"):
        decode_receipt(json.dumps(body).encode(), TOPIC)
    with pytest.raises(WireError, match="exceeds"):
        decode_receipt(b" " * 2000, TOPIC)
