"""The reading's MQTT wire format (DESIGN.md §2, §3).

A reading is nine integers, defined once in :mod:`backend.domain.reading` and
re-exported here (the simulator imports only ``backend.telemetry``). On the wire it
is UTF-8 JSON (no byte order mark, no repeated keys) with exactly those fields
(camelCase, as in the EIP-712 type) plus ``device`` (checksummed address),
``signature`` (0x-hex, 65 bytes) and ``v: 1``. Anything else is refused with a
:class:`~backend.core.errors.WireError` whose ``reason`` is a stable code.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from typing import Any

from eth_utils import is_checksum_address, to_checksum_address

from backend.core.errors import WireError
from backend.domain.reading import (
    EIP712_TYPES,
    FIELD_RANGES,
    FLAG_DOOR_OPEN,
    FLAG_SENSOR_FAULT,
    FLAG_TAMPER,
    READING_FIELDS,
    Reading,
    SignedReading,
)

WIRE_VERSION = 1
MAX_PAYLOAD_BYTES = 1024  # a real message is ~330 bytes

_ENVELOPE = {"device", "signature", "v"}
_ALL_KEYS = set(READING_FIELDS) | _ENVELOPE

# eth_utils' address checks cost ~25 µs each; devices are few and repeat, so the
# oracle's hot path caches them (bounded, so hostile input cannot grow it).
_is_checksum = lru_cache(maxsize=65_536)(is_checksum_address)
_to_checksum = lru_cache(maxsize=65_536)(to_checksum_address)


def checksummed(address: str) -> str:
    """The EIP-55 form of a 0x-hex address (cached: devices repeat)."""
    return str(_to_checksum(address))


_TOPIC_RE = re.compile(
    r"^trustship/v1/orders/(?P<order>[0-9]{1,78})/devices/(?P<device>0x[0-9a-fA-F]{40})/"
    r"(?P<kind>telemetry|status)\Z"  # \Z, not $: "$" would also match before a final newline
)
_SIG_RE = re.compile(r"^0x[0-9a-fA-F]{130}\Z")


__all__ = [
    "EIP712_TYPES",
    "FIELD_RANGES",
    "FLAG_DOOR_OPEN",
    "FLAG_SENSOR_FAULT",
    "FLAG_TAMPER",
    "MAX_PAYLOAD_BYTES",
    "READING_FIELDS",
    "WIRE_VERSION",
    "Reading",
    "SignedReading",
    "checksummed",
    "decode_message",
    "encode_message",
    "parse_topic",
    "status_topic",
    "telemetry_topic",
]


def telemetry_topic(order_id: int, device: str) -> str:
    return f"trustship/v1/orders/{order_id}/devices/{device}/telemetry"


def status_topic(order_id: int, device: str) -> str:
    return f"trustship/v1/orders/{order_id}/devices/{device}/status"


def parse_topic(topic: str) -> tuple[int, str, str]:
    """Split a TrustShip topic into (order id, device address, kind)."""
    m = _TOPIC_RE.match(topic)
    if m is None:
        raise WireError("bad_topic", f"topic {topic!r} is not a TrustShip device topic")
    return int(m["order"]), m["device"], m["kind"]


def encode_message(signed: SignedReading) -> bytes:
    """The MQTT payload for a signed reading (compact UTF-8 JSON)."""
    body: dict[str, Any] = {"v": WIRE_VERSION, **signed.reading.to_wire()}
    body["device"] = signed.device
    body["signature"] = "0x" + signed.signature.hex()
    return json.dumps(body, separators=(",", ":")).encode()


def _reject_constant(name: str) -> Any:
    raise WireError("malformed_json", f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (json.loads keeps the last of a repeated
    key silently: a payload could show one value to us and another to another reader)."""
    body = dict(pairs)
    if len(body) != len(pairs):
        repeated = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise WireError("duplicate_field", f"field(s) given more than once: {', '.join(repeated)}")
    return body


_UTF8_BOM = b"\xef\xbb\xbf"
# Built once: json.loads(..., **kwargs) would build a decoder per message.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def decode_message(payload: bytes, topic: str | None = None) -> SignedReading:
    """Parse and validate an MQTT payload. The signature is *not* checked here.

    The payload must be UTF-8 JSON (DESIGN.md §3): UTF-16/UTF-32 (``not_utf8``), a
    byte order mark (``utf8_bom``) and a repeated key (``duplicate_field``) are
    refused, although Python's ``json.loads`` would take them all. When ``topic`` is
    given, its order id and device must agree with the payload. Raises
    :class:`WireError` with a stable ``reason`` on any deviation.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("oversized", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if payload.startswith(_UTF8_BOM):
        raise WireError("utf8_bom", "payload starts with a byte order mark: send UTF-8 without one")
    if b"\x00" in payload:  # JSON never holds a NUL byte; UTF-16 and UTF-32 text always does
        raise WireError("not_utf8", "payload holds NUL bytes (UTF-16 or UTF-32?): send UTF-8")
    try:
        text = payload.decode()
    except UnicodeDecodeError as exc:
        raise WireError(
            "not_utf8", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        body = _DECODER.decode(text)
    except WireError:
        raise
    except ValueError as exc:
        raise WireError("malformed_json", f"payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WireError("malformed_json", "payload must be a JSON object")
    keys = set(body)
    if missing := _ALL_KEYS - keys:
        raise WireError("missing_field", f"missing field(s): {', '.join(sorted(missing))}")
    if extra := keys - _ALL_KEYS:
        raise WireError("extra_field", f"unexpected field(s): {', '.join(sorted(extra))}")
    if body["v"] != WIRE_VERSION or type(body["v"]) is not int:
        raise WireError("bad_version", f"unsupported wire version {body['v']!r}")
    for wire in READING_FIELDS:
        if type(body[wire]) is not int:
            raise WireError(
                "bad_type", f"{wire} must be an integer, got {type(body[wire]).__name__}"
            )
    reading = Reading.from_wire(body)
    device = body["device"]
    if not isinstance(device, str) or not _is_checksum(device):
        raise WireError("bad_device", f"device {device!r} is not a checksummed address")
    sig = body["signature"]
    if not isinstance(sig, str) or _SIG_RE.match(sig) is None:
        raise WireError("bad_signature_format", "signature must be 0x-hex of 65 bytes")
    if topic is not None:
        order_id, topic_device, kind = parse_topic(topic)
        if kind != "telemetry":
            raise WireError("bad_topic", f"readings belong on a telemetry topic, not {kind}")
        if order_id != reading.order_id or _to_checksum(topic_device) != device:
            raise WireError(
                "topic_mismatch",
                f"topic names order {order_id} / {topic_device} but payload says "
                f"order {reading.order_id} / {device}",
            )
    return SignedReading(reading=reading, device=device, signature=bytes.fromhex(sig[2:]))
