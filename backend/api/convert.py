"""Rows of the store → public models."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

from backend.api import schemas as s
from backend.domain.order import TERMS_BODY_ATTRS
from backend.domain.reading import READING_ATTRS
from backend.scorecard import Backtest, Figures, Scorecard
from backend.store.models import DeviceRow

#: A reading row's columns that :class:`ReadingPublic` shows as they are (the reading's
#: fields, backend.domain.reading); signature and digest become 0x-hex.
_READING_PLAIN = ("device", *READING_ATTRS, "batch_seq", "received_at")

# Orders and readings become plain dicts of the response model's shape
# (backend.api.lean): each row's values are picked by position, with one getter per
# kind of row, into one dict per row.

#: An order's columns that :class:`OrderPublic` shows at its top level as they are
#: stored (funded and breached become bools), in its order; the settlement, terms and
#: block are built from the columns after them.
_ORDER_BUILT = ("settlement", "terms", "updated_block")
_ORDER_TOP = tuple(name for name in s.OrderPublic.model_fields if name not in _ORDER_BUILT)
#: Every column an order's data is made of: the top level, then the settlement's
#: split, the block, and the terms (their price a decimal string).
_ORDER_COLUMNS = (
    *_ORDER_TOP,
    "buyer_amount",
    "supplier_amount",
    "updated_block",
    *TERMS_BODY_ATTRS,
)
_TOP = len(_ORDER_TOP)
_TERMS = _TOP + 3
#: A reading's columns: those shown as they are, then signature and digest (0x-hex).
_READING_COLUMNS = (*_READING_PLAIN, "signature", "digest")
_PLAIN = len(_READING_PLAIN)


@cache
def _getter(fields: tuple[str, ...] | None, names: tuple[str, ...]) -> Callable[[Any], Any]:
    """Picks ``names``' values, in that order, from a row: a Core row with the columns
    ``fields`` by position, an ORM instance (``fields`` None) by attribute."""
    if fields is None:
        return attrgetter(*names)
    return itemgetter(*(fields.index(name) for name in names))


def _values(rows: Sequence[Any], names: tuple[str, ...]) -> Iterator[Any]:
    """Each row's values of ``names`` (rows of one kind: Core rows of one statement, or
    ORM instances); the column names read once, as ``Row._fields`` builds them anew
    on every call."""
    if not rows:
        return iter(())
    return map(_getter(getattr(rows[0], "_fields", None), names), rows)


def order(row: Any) -> dict[str, Any]:
    """An order row (ORM or Core) as :class:`OrderPublic` data."""
    return orders([row])[0]


def orders(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Order rows (ORM or Core, all of one kind) as :class:`OrderPublic` data."""
    out = []
    for v in _values(rows, _ORDER_COLUMNS):
        o = dict(zip(_ORDER_TOP, v, strict=False))  # the first columns
        o["funded"] = bool(o["funded"])
        o["breached"] = bool(o["breached"])
        ba, sa = v[_TOP], v[_TOP + 1]
        o["settlement"] = (
            None
            if ba is None or sa is None
            else {"buyer_amount": str(ba), "supplier_amount": str(sa)}
        )
        terms = dict(zip(TERMS_BODY_ATTRS, v[_TERMS:], strict=True))
        terms["price"] = str(terms["price"])
        o["terms"] = terms
        o["updated_block"] = v[_TOP + 2] or 0
        out.append(o)
    return out


def reading(row: Any) -> dict[str, Any]:
    """A reading row (ORM or Core) as :class:`ReadingPublic` data."""
    return readings([row])[0]


def readings(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Reading rows (ORM or Core, all of one kind) as :class:`ReadingPublic` data."""
    out = []
    for v in _values(rows, _READING_COLUMNS):
        r = dict(zip(_READING_PLAIN, v, strict=False))  # the first columns
        r["signature"] = "0x" + v[_PLAIN].hex()  # bytes or memoryview, by driver
        r["digest"] = "0x" + v[_PLAIN + 1].hex()
        out.append(r)
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
