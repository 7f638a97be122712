"""Rows of the store → public models."""

from __future__ import annotations

from typing import Any

from backend.api import schemas as s
from backend.chain.contracts import Terms
from backend.store.models import AlertRow, ChainEventRow, CommitmentRow, DeviceRow


def _hex(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()


_TERMS = Terms.SOLIDITY_ORDER  # the order terms, named as in the chain layer

# Orders and readings become plain dicts: FastAPI validates them against the
# response model and serialises them in pydantic-core (Rust), which is several
# times cheaper per row than constructing the models in Python.


def order(row: Any) -> dict[str, Any]:
    """An order row (ORM or Core) as :class:`OrderPublic` data."""
    terms = {name: getattr(row, name) for name in _TERMS}
    terms["price"] = str(terms["price"])
    ba, sa = row.buyer_amount, row.supplier_amount
    return {
        "id": row.id,
        "state": row.state,
        "buyer": row.buyer,
        "supplier": row.supplier,
        "arbiter": row.arbiter,
        "funded": bool(row.funded),
        "breached": bool(row.breached),
        "created_at": row.created_at,
        "shipped_at": row.shipped_at,
        "delivered_at": row.delivered_at,
        "disputed_at": row.disputed_at,
        "late_seconds": row.late_seconds,
        "delivery_confirmed_by": row.delivery_confirmed_by,
        "settlement": None
        if ba is None or sa is None
        else {"buyer_amount": str(ba), "supplier_amount": str(sa)},
        "terms": terms,
        "updated_block": row.updated_block or 0,
    }


def reading(row: Any) -> dict[str, Any]:
    """A reading row (ORM or Core) as :class:`ReadingPublic` data."""
    return {
        "order_id": row.order_id,
        "device": row.device,
        "seq": row.seq,
        "timestamp": row.timestamp,
        "temperature_centi_c": row.temperature_centi_c,
        "humidity_permille": row.humidity_permille,
        "shock_milli_g": row.shock_milli_g,
        "latitude_e6": row.latitude_e6,
        "longitude_e6": row.longitude_e6,
        "flags": row.flags,
        "signature": "0x" + bytes(row.signature).hex(),
        "digest": "0x" + bytes(row.digest).hex(),
        "batch_seq": row.batch_seq,
        "received_at": row.received_at,
    }


def commitment(row: CommitmentRow) -> s.CommitmentPublic:
    return s.CommitmentPublic(
        order_id=row.order_id,
        batch_seq=row.batch_seq,
        root="0x" + row.root.hex(),
        reading_count=row.reading_count,
        first_reading_id=row.first_reading_id,
        last_reading_id=row.last_reading_id,
        status=row.status,
        tx_hash=_hex(row.tx_hash),
        created_at=row.created_at,
    )


def chain_event(row: ChainEventRow) -> s.ChainEventPublic:
    return s.ChainEventPublic(
        block_number=row.block_number,
        block_timestamp=row.block_timestamp,
        tx_hash="0x" + row.tx_hash.hex(),
        log_index=row.log_index,
        contract=row.contract,
        event=row.event,
        order_id=row.order_id,
        args=dict(row.args or {}),
    )


def alert(row: AlertRow) -> s.AlertPublic:
    return s.AlertPublic(
        id=row.id,
        order_id=row.order_id,
        device=row.device,
        kind=row.kind,
        severity=row.severity,
        message=row.message,
        at=row.at,
        data=dict(row.data or {}),
        created_at=row.created_at,
    )


def device(row: DeviceRow) -> s.DevicePublic:
    return s.DevicePublic(
        order_id=row.order_id,
        device=row.device,
        bound_block=row.bound_block,
        bound_at=row.bound_at,
        reading_count=row.reading_count or 0,
        first_seq=row.first_seq,
        last_seq=row.last_seq,
        last_timestamp=row.last_timestamp,
        missing_readings=row.missing(),
        status=row.status,
        status_at=row.status_at,
        battery_permille=row.battery_permille,
        reported_last_seq=row.reported_last_seq,
    )
