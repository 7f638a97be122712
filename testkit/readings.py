"""Signed readings, orders and bindings for oracle tests and benchmarks: readings
signed by deterministic device keys, as a device publishes them (topic and payload)
or as ingest receives them (:class:`~backend.oracle.ingest.Inbound`), and order rows
with their device bindings written straight to the store."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.oracle.ingest import Inbound
from backend.store import repositories as repo
from backend.telemetry import (
    Domain,
    Reading,
    SignedReading,
    device_address,
    encode_message,
    sign_reading,
    telemetry_topic,
)

DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
KEYS = [bytes([i + 1]) * 32 for i in range(8)]
DEVICES = [device_address(k) for k in KEYS]
ZERO = "0x" + "00" * 20
#: The issuer that certifies the test devices.
ISSUER = "0x" + "15" * 20
T0 = int(time.time()) - 10_000  # readings in the recent past

# Destination box around (1.29°N, 103.85°E), ±0.02°.
DEST = (1_290_000, 103_850_000, 20_000)
ORIGIN = (51_900_000, 4_400_000)


#: A fixed reading that tells its fields apart (a negative temperature, flags set), in
#: struct order: order 7, seq 3, 1_700_000_000 s, -4.25 °C, 55.1 %, 1.2 g, near
#: Rotterdam, door open and sensor fault.
SAMPLE = Reading(7, 3, 1_700_000_000, -425, 551, 1200, 51_950_000, 4_050_000, 5)


def make_reading(order_id: int, seq: int, **kw: int) -> Reading:
    base: dict[str, int] = dict(
        order_id=order_id,
        seq=seq,
        timestamp=T0 + seq * 60,
        temperature_centi_c=500,
        humidity_permille=500,
        shock_milli_g=100,
        latitude_e6=ORIGIN[0],
        longitude_e6=ORIGIN[1],
        flags=0,
    )
    base.update(kw)
    return Reading(**base)


def signed(key: bytes | str, reading: Reading, domain: Domain = DOMAIN) -> SignedReading:
    return SignedReading(reading, device_address(key), sign_reading(reading, domain, key))


def wire_message(key: bytes | str, reading: Reading, domain: Domain = DOMAIN) -> tuple[str, bytes]:
    """``(topic, payload)`` of ``reading`` signed with ``key``, as the device publishes it."""
    s = signed(key, reading, domain)
    return telemetry_topic(reading.order_id, s.device), encode_message(s)


def inbound(s: SignedReading, *, topic: str | None = None, payload: bytes | None = None) -> Inbound:
    return Inbound(
        topic=topic or telemetry_topic(s.reading.order_id, s.device),
        payload=payload if payload is not None else encode_message(s),
    )


def msg(key: bytes, order_id: int, seq: int, **kw: int) -> Inbound:
    return inbound(signed(key, make_reading(order_id, seq, **kw)))


def order_values(order_id: int, **kw: Any) -> dict[str, Any]:
    v: dict[str, Any] = dict(
        id=order_id,
        buyer=DEVICES[6],
        supplier=DEVICES[7],
        state="Shipped",
        token=ZERO,
        price=10**18,
        delivery_deadline=T0 + 86_400,
        expiry_grace_secs=86_400,
        dest_lat_e6=DEST[0],
        dest_lon_e6=DEST[1],
        geofence_e6=DEST[2],
        min_temp_centi_c=200,
        max_temp_centi_c=800,
        max_humidity_permille=900,
        max_shock_milli_g=5_000,
        tolerated_excursion_secs=600,
        late_penalty_bps_per_hour=50,
        late_penalty_cap_bps=2_000,
        breach_refund_bps=3_000,
        dispute_window_secs=0,
        arbiter=ZERO,
        device_issuer=ISSUER,
        second_device_issuer=ZERO,
        arrival_quorum=1,
        funded=True,
        breached=False,
        shipped_at=T0,
        updated_block=1,
    )
    v.update(kw)
    return v


def seed(engine: Engine, orders: dict[int, list[int]], **terms: Any) -> None:
    """Create orders (state Shipped) and bind DEVICES[i] for each i listed."""
    with Session(engine) as s, s.begin():
        for order_id, device_idx in orders.items():
            repo.upsert_order(s, order_values(order_id, **terms))
            repo.bind_devices(
                s,
                [
                    dict(
                        order_id=order_id,
                        device=DEVICES[i],
                        bound_block=1,
                        bound_at=T0,
                        issuer=ISSUER,
                    )
                    for i in device_idx
                ],
            )
