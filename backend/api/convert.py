"""Rows of the store → public models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from backend.api import schemas as s
from backend.domain.order import TERMS_BODY_ATTRS
from backend.domain.reading import READING_ATTRS
from backend.scorecard import Backtest, Figures, Scorecard
from backend.store.models import DeviceRow

#: A reading row's columns that :class:`ReadingPublic` shows as they are (the reading's
#: fields, backend.domain.reading); signature and digest become 0x-hex.
_READING_PLAIN = ("device", *READING_ATTRS, "batch_seq", "received_at")

# Orders and readings become plain dicts: FastAPI validates them against the
# response model and serialises them in pydantic-core (Rust), which is several
# times cheaper per row than constructing the models in Python.


class _Attributes:
    """An ORM instance's columns read by name, like a Core row's dict."""

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        self._row = row

    def __getitem__(self, name: str) -> Any:
        return getattr(self._row, name)


def _columns(rows: Sequence[Any]) -> list[Any]:
    """Each row's columns by name: a Core row's as one dict zipped from the names and
    its values (a third of the cost of ``Row._asdict()``, and of a lookup per column;
    the names read once per page, as ``Row._fields`` builds them anew on every call),
    an ORM instance's attributes."""
    if not rows:
        return []
    fields = getattr(rows[0], "_fields", None)
    if fields is None:
        return [_Attributes(row) for row in rows]
    return [dict(zip(fields, row, strict=True)) for row in rows]


def order(row: Any) -> dict[str, Any]:
    """An order row (ORM or Core) as :class:`OrderPublic` data."""
    return _order(_columns([row])[0])


def orders(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Order rows (ORM or Core, all of one kind) as :class:`OrderPublic` data."""
    return [_order(v) for v in _columns(rows)]


def _order(v: Any) -> dict[str, Any]:
    terms = {name: v[name] for name in TERMS_BODY_ATTRS}
    terms["price"] = str(terms["price"])
    ba, sa = v["buyer_amount"], v["supplier_amount"]
    return {
        "id": v["id"],
        "state": v["state"],
        "buyer": v["buyer"],
        "supplier": v["supplier"],
        "arbiter": v["arbiter"],
        "funded": bool(v["funded"]),
        "breached": bool(v["breached"]),
        "created_at": v["created_at"],
        "shipped_at": v["shipped_at"],
        "delivered_at": v["delivered_at"],
        "disputed_at": v["disputed_at"],
        "late_seconds": v["late_seconds"],
        "delivery_confirmed_by": v["delivery_confirmed_by"],
        "settlement": None
        if ba is None or sa is None
        else {"buyer_amount": str(ba), "supplier_amount": str(sa)},
        "terms": terms,
        "updated_block": v["updated_block"] or 0,
    }


def reading(row: Any) -> dict[str, Any]:
    """A reading row (ORM or Core) as :class:`ReadingPublic` data."""
    return _reading(_columns([row])[0])


def readings(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Reading rows (ORM or Core, all of one kind) as :class:`ReadingPublic` data."""
    return [_reading(v) for v in _columns(rows)]


def _reading(v: Any) -> dict[str, Any]:
    out = {name: v[name] for name in _READING_PLAIN}
    out["signature"] = "0x" + bytes(v["signature"]).hex()
    out["digest"] = "0x" + bytes(v["digest"]).hex()
    return out


def reading_cursor(row: Any) -> str:
    """The keyset cursor after a reading row: its time and its place in arrival order
    (the order the telemetry pages keep, backend.api.queries.readings); read back by
    ``schemas.reading_position``."""
    return f"{row.timestamp}-{row.id}"


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


# --- supplier scorecards ----------------------------------------------------------------


def figures(f: Figures) -> dict[str, Any]:
    """A scorecard's figures as :class:`FiguresPublic` data (amounts as decimal strings)."""
    out = asdict(f)
    out["tokens"] = [
        {k: str(v) if isinstance(v, int) and k not in ("orders", "paid_share_bps") else v
         for k, v in t.items()}
        for t in out["tokens"]
    ]  # fmt: skip
    return out


def scorecard(card: Scorecard) -> dict[str, Any]:
    """A supplier's scorecard as :class:`ScorecardPublic` data."""
    return {
        "supplier": card.supplier,
        "as_of": card.as_of,
        "since": card.since,
        "all_time": figures(card.all_time),
        "last_90_days": figures(card.recent),
        "lanes": [
            {"lane": x.lane, "all_time": figures(x.all_time), "last_90_days": figures(x.recent)}
            for x in card.lanes
        ],
    }


def suppliers_page(
    order: list[Scorecard], as_of: int | None, limit: int, offset: int
) -> dict[str, Any]:
    """Ranked scorecards (best first) as one :class:`SuppliersPublic` page."""
    return {
        "as_of": as_of,
        "data": [
            {
                "rank": offset + i + 1,
                "supplier": c.supplier,
                "all_time": figures(c.all_time),
                "last_90_days": figures(c.recent),
            }
            for i, c in enumerate(order[offset : offset + limit])
        ],
        "count": len(order),
    }


def backtest(b: Backtest) -> dict[str, Any]:
    """A backtest as :class:`BacktestPublic` data (amounts as decimal strings)."""
    out = asdict(b)
    for k in ("expected_buyer_amount", "expected_supplier_amount"):
        out[k] = str(out[k]) if out[k] is not None else None
    return out
