"""A device's status message (DESIGN.md §3: retained, the Last Will sets it offline).

UTF-8 JSON on ``trustship/v1/orders/{orderId}/devices/{device}/status``::

    {"v": 1, "status": "online" | "offline", "device": "0x…", "orderId": 7,
     "reason": "boot" | "periodic" | "reconnected" | "shutdown" | "connection_lost",
     "timestamp": 1700000000, "batteryPermille": 950, "firstSeq": 1, "lastSeq": 42}

``reason`` and the last four fields are optional (a Last Will, set when the device
connects, knows none of them). ``firstSeq``/``lastSeq`` are the first seq the device
used on this order and the newest it has sent: the oracle compares them with what it
stored to see readings that never arrived. The message is not signed — the broker
lets only the device itself publish under its address — so it never stands as
evidence; it can only make the oracle look harder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from backend.core.errors import WireError
from backend.telemetry.reading import MAX_PAYLOAD_BYTES, checksummed, parse_topic

STATUS_VERSION = 1
STATES = ("online", "offline")
BAD_STATUS = "bad_status"

_REQUIRED = {"v", "status", "device", "orderId"}
_OPTIONAL = {"reason", "timestamp", "batteryPermille", "firstSeq", "lastSeq"}
_INT_RANGES = {
    "timestamp": (0, 2**64 - 1),
    "batteryPermille": (0, 1000),
    "firstSeq": (0, 2**32 - 1),
    "lastSeq": (0, 2**32 - 1),
}


@dataclass(frozen=True, slots=True)
class StatusMessage:
    order_id: int
    device: str
    status: str
    reason: str | None = None
    timestamp: int | None = None
    battery_permille: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": STATUS_VERSION,
            "status": self.status,
            "device": self.device,
            "orderId": self.order_id,
        }
        for key, value in (
            ("reason", self.reason),
            ("timestamp", self.timestamp),
            ("batteryPermille", self.battery_permille),
            ("firstSeq", self.first_seq),
            ("lastSeq", self.last_seq),
        ):
            if value is not None:
                body[key] = value
        return body

    def encode(self) -> bytes:
        return json.dumps(self.to_wire(), separators=(",", ":")).encode()


def _bad(message: str) -> WireError:
    return WireError(BAD_STATUS, message)


def decode_status(payload: bytes, topic: str) -> StatusMessage:
    """Parse and validate a status message; raises :class:`WireError` (``bad_status``)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _bad(f"status of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    order_id, topic_device, kind = parse_topic(topic)
    if kind != "status":
        raise WireError("bad_topic", f"a status belongs on a status topic, not {kind}")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"status is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad("status must be a JSON object")
    if missing := _REQUIRED - set(body):
        raise _bad(f"status lacks {', '.join(sorted(missing))}")
    if extra := set(body) - _REQUIRED - _OPTIONAL:
        raise _bad(f"status has unexpected field(s) {', '.join(sorted(extra))}")
    if body["v"] != STATUS_VERSION or type(body["v"]) is not int:
        raise _bad(f"unsupported status version {body['v']!r}")
    if body["status"] not in STATES:
        raise _bad(f"status {body['status']!r} is not one of {', '.join(STATES)}")
    if body["orderId"] != order_id or type(body["orderId"]) is not int:
        raise _bad(f"status names order {body['orderId']!r}, its topic order {order_id}")
    if not isinstance(body["device"], str) or body["device"].lower() != topic_device.lower():
        raise _bad(f"status names device {body['device']!r}, its topic {topic_device}")
    for key, (lo, hi) in _INT_RANGES.items():
        value = body.get(key)
        if value is not None and (type(value) is not int or not lo <= value <= hi):
            raise _bad(f"{key}={value!r} is not an integer in [{lo}, {hi}]")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 64):
        raise _bad("reason must be a short string")
    return StatusMessage(
        order_id=order_id,
        device=checksummed(topic_device),
        status=body["status"],
        reason=reason,
        timestamp=body.get("timestamp"),
        battery_permille=body.get("batteryPermille"),
        first_seq=body.get("firstSeq"),
        last_seq=body.get("lastSeq"),
    )
