"""`trustship scorecard [ADDRESS] [--json]`: supplier scorecards (docs/scorecards.md).

From the API at ``TRUSTSHIP_API_URL`` when it is set (as the buyer's key,
``TRUSTSHIP_BUYER_API_KEY``: any party may read scorecards), else from the configured
database (``DATABASE_URL``, the indexed chain events) with the API's own computation.
``--json`` prints what the API answers (``ScorecardPublic`` or ``SuppliersPublic``).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from backend.core.settings import Settings
from trustship.reads import read

#: (column heading, how a figures dict shows it)
_PCT = "{:.1f}%"


def _bps(value: int | None) -> str:
    return "-" if value is None else _PCT.format(value / 100)


def _secs(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 3600:
        return f"{value // 60}m"
    return f"{value / 3600:.1f}h"


def _paid(f: dict[str, Any]) -> str:
    shares = [
        f"{_bps(t['paid_share_bps'])}" for t in f["tokens"] if t["paid_share_bps"] is not None
    ]
    return "/".join(shares) or "-"


COLUMNS: tuple[tuple[str, Any], ...] = (
    ("orders", lambda f: str(f["orders"])),
    ("delivered", lambda f: str(f["delivered"])),
    ("on time", lambda f: _bps(f["on_time_bps"])),
    ("breach", lambda f: _bps(f["breach_bps"])),
    ("exc/shock", lambda f: f"{f['excursions']}/{f['shocks']}"),
    ("late mean", lambda f: _secs(f["mean_late_secs"])),
    ("late p95", lambda f: _secs(f["p95_late_secs"])),
    ("paid", _paid),
    ("disputes b/s/=", lambda f: (
        f"{f['disputes_opened']}: {f['rulings_for_buyer']}/{f['rulings_for_supplier']}"
        f"/{f['rulings_as_terms']}")),
    ("expired", lambda f: str(f["expired"])),
    ("score", lambda f: _bps(f["score_bps"])),
)  # fmt: skip


def table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Columns padded to their widest cell; the first ``left`` flush left, the rest right."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _figures_row(label: str, f: dict[str, Any]) -> list[str]:
    return [label, *(show(f) for _, show in COLUMNS)]


def render_list(body: dict[str, Any]) -> str:
    head = ["#", "supplier", *(h for h, _ in COLUMNS)]
    rows = [[str(d["rank"]), *_figures_row(d["supplier"], d["all_time"])] for d in body["data"]]
    out = table(head, rows, left=2) if rows else "no suppliers with orders yet"
    return out + f"\n\n{body['count']} supplier(s), all time, as of {body['as_of']} (chain time);" \
        " ranked by score = on time and unbreached per delivered or expired order"  # fmt: skip


def render_card(body: dict[str, Any]) -> str:
    head = ["", *(h for h, _ in COLUMNS)]
    rows = [
        _figures_row("all time", body["all_time"]),
        _figures_row("last 90 days", body["last_90_days"]),
    ]
    for lane in body["lanes"]:
        rows.append(_figures_row(f"→ {lane['lane']} all time", lane["all_time"]))
        rows.append(_figures_row(f"→ {lane['lane']} 90 days", lane["last_90_days"]))
    money = [
        f"  {t['token']}: value {t['value']}, late penalties {t['late_penalties']}, breach "
        f"refunds {t['breach_refunds']}, ruled {t['ruled_refunds']}, expiry refunds "
        f"{t['expiry_refunds']}"
        for t in body["all_time"]["tokens"]
    ]
    return "\n".join(
        [
            f"supplier {body['supplier']} as of {body['as_of']} "
            f"(chain time; the last 90 days from {body['since']})",
            "",
            table(head, rows),
            "",
            "money (all time, token base units):",
            *money,
        ]
    )


def _from_database(settings: Settings, address: str | None) -> tuple[int, dict[str, Any]]:
    from backend.api import convert, queries
    from backend.core.errors import AddressError
    from backend.scorecard import ranked, scorecards
    from backend.store import make_engine, session_factory
    from backend.telemetry.address import parse_address

    if address is not None:
        try:
            address = parse_address(address)
        except AddressError as exc:
            return 422, {"code": "validation_error", "message": f"address: {exc}"}
    engine = make_engine(settings.DATABASE_URL)
    try:
        with session_factory(engine)() as session:
            events, as_of = queries.scored_events(session)
    finally:
        engine.dispose()
    cards = scorecards(events, as_of)
    if address is None:
        return 200, convert.suppliers_page(ranked(cards.values()), as_of, len(cards), 0)
    if address not in cards:
        return 404, {"code": "not_found", "message": f"supplier {address} not found"}
    return 200, convert.scorecard(cards[address])


def run_scorecard(address: str | None, *, as_json: bool, settings: Settings | None = None) -> int:
    settings = settings or Settings()
    path = f"/suppliers/{address}/scorecard" if address else "/suppliers?limit=200"
    code, body = read(settings, path, lambda: _from_database(settings, address), timeout=30)
    if code:
        return code
    typer.echo(
        json.dumps(body, indent=2)
        if as_json
        else (render_card(body) if address else render_list(body))
    )
    return 0
