"""Storage receipts: the oracle tells a device which of its readings are stored.

mosquitto acknowledges a publish (PUBACK) before it has written the message to
disk, and writes its queues only every ``autosave_interval`` seconds: a broker
crash loses what it had queued since. So a device does not forget a reading when
the broker acknowledges it, but when the oracle says it is stored. The oracle
publishes, after the database commit of a batch, one receipt per device and order
(QoS 1, not retained) on the device's own receipt topic::

    trustship/v1/receipts/{deviceAddress}

    {"v": 1, "orderId": 7, "device": "0x…", "stored": [[1, 40], [42, 57]]}

``stored`` lists the device's seqs on that order that are stored now, as inclusive
ranges, ascending and disjoint (a reading the oracle already had counts: a resent
reading is a duplicate, and it is stored). A receipt names seqs, not a watermark:
"stored up to N" would also confirm a reading that never arrived before the first
one stored, and would stall behind a reading the oracle refused. The broker lets only
an oracle publish receipts and a device read only its own
(:mod:`backend.telemetry.access`). Receipts are advice to the device's memory, never
evidence: a lost or forged receipt can at worst make a device forget a reading early
(the oracle's seq-gap check then reports it) or resend one (a duplicate, dropped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from backend.core.errors import WireError
from backend.telemetry.reading import MAX_PAYLOAD_BYTES, checksummed

RECEIPT_VERSION = 1
#: Every device's receipts (what an oracle publishes to; a shared simulator connection
#: on an open broker subscribes to it).
RECEIPT_FILTER = "trustship/v1/receipts/+"
BAD_RECEIPT = "bad_receipt"
#: Ranges per receipt message; more are split over several messages.
MAX_RANGES = 40
_MAX_SEQ = 2**32 - 1
_TOPIC_RE = re.compile(r"^trustship/v1/receipts/(?P<device>0x[0-9a-fA-F]{40})\Z")

SeqRange = tuple[int, int]


def receipt_topic(device: str) -> str:
    """The topic on which ``device`` (checksummed address) receives its receipts."""
    return f"trustship/v1/receipts/{device}"


def seq_ranges(seqs: Iterable[int]) -> list[SeqRange]:
    """Sorted, merged inclusive ranges covering ``seqs`` (duplicates allowed)."""
    out: list[SeqRange] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


@dataclass(frozen=True, slots=True)
class Receipt:
    """Seqs of one device on one order that the oracle has stored."""

    order_id: int
    device: str
    stored: tuple[SeqRange, ...]

    @property
    def topic(self) -> str:
        return receipt_topic(self.device)

    def covers(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.stored)

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": RECEIPT_VERSION,
            "orderId": self.order_id,
            "device": self.device,
            "stored": [[a, b] for a, b in self.stored],
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def split(cls, order_id: int, device: str, seqs: Iterable[int]) -> list[Receipt]:
        """The receipts for ``seqs``: one message per :data:`MAX_RANGES` ranges."""
        ranges = seq_ranges(seqs)
        return [
            cls(order_id, device, tuple(ranges[i : i + MAX_RANGES]))
            for i in range(0, len(ranges), MAX_RANGES)
        ]


def _bad(message: str) -> WireError:
    return WireError(BAD_RECEIPT, message)


def decode_receipt(payload: bytes, topic: str) -> Receipt:
    """Parse and validate a receipt; raises :class:`WireError` (``bad_receipt``)."""
    m = _TOPIC_RE.match(topic)
    if m is None:
        raise WireError("bad_topic", f"topic {topic!r} is not a receipt topic")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _bad(f"receipt of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"receipt is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != {"v", "orderId", "device", "stored"}:
        raise _bad("a receipt is an object with exactly v, orderId, device and stored")
    if type(body["v"]) is not int or body["v"] != RECEIPT_VERSION:
        raise _bad(f"unsupported receipt version {body['v']!r}")
    order_id = body["orderId"]
    if type(order_id) is not int or order_id < 0:
        raise _bad(f"orderId={order_id!r} is not a non-negative integer")
    device = body["device"]
    if not isinstance(device, str) or device.lower() != m["device"].lower():
        raise _bad(f"receipt names device {device!r}, its topic {m['device']}")
    stored = body["stored"]
    if not isinstance(stored, list) or len(stored) > MAX_RANGES:
        raise _bad(f"stored must be a list of at most {MAX_RANGES} ranges")
    ranges: list[SeqRange] = []
    for r in stored:
        if (
            not isinstance(r, list)
            or len(r) != 2
            or any(type(x) is not int or not 0 <= x <= _MAX_SEQ for x in r)
            or r[0] > r[1]
            or (ranges and r[0] <= ranges[-1][1])
        ):
            raise _bad(f"range {r!r}: [first, last] seqs, ascending and disjoint")
        ranges.append((r[0], r[1]))
    return Receipt(order_id, checksummed(m["device"]), tuple(ranges))
