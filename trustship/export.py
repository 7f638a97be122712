"""`trustship export ORDER --format epcis [--out FILE]`: an order's GS1 EPCIS 2.0 document
(docs/epcis.md), the same document ``GET /orders/{id}/epcis`` answers.

From the API at ``TRUSTSHIP_API_URL`` when it is set (as the buyer, ``TRUSTSHIP_BUYER_API_KEY``),
else from the configured database (``DATABASE_URL``) through the API's own export, as
the database's operator (who reads every order, like an auditor). Either way the
document is checked against GS1's schema (``EPCIS_SCHEMA_DIR``) before it is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from backend.core.settings import Settings
from trustship.reads import read

FORMATS = ("epcis",)


def operator() -> Any:
    """Who reads the database directly: every order, nothing written (an auditor)."""
    from backend.api.parties import Party
    from backend.domain.order import ZERO_ADDRESS

    return Party("operator", ZERO_ADDRESS, frozenset({"auditor"}))


def document_from_database(settings: Settings, order_id: int) -> tuple[int, dict[str, Any]]:
    """The order's document from the database (status, body as the API would answer)."""
    from backend.api import epcis, queries
    from backend.api.errors import ApiError
    from backend.store import make_engine, session_factory

    engine = make_engine(settings.DATABASE_URL)
    try:
        with session_factory(engine)() as session:
            viewer = operator()
            order = queries.get_order(session, viewer, order_id)
            if order is None:
                return 404, {"code": "not_found", "message": f"order {order_id} not found"}
            try:
                identity = epcis.identity_of(session)
                document = epcis.export_document(
                    session, viewer, order, identity, epcis.schema_of(settings)
                )
            except ApiError as exc:
                return exc.status, exc.body()
            return 200, document
    finally:
        engine.dispose()


def run_export(
    order_id: int, *, fmt: str, out: Path | None, settings: Settings | None = None
) -> int:
    if fmt not in FORMATS:
        typer.secho(f"error: unknown format {fmt!r} (one of: {', '.join(FORMATS)})",
                    fg=typer.colors.RED, err=True)  # fmt: skip
        return 2
    settings = settings or Settings()
    code, body = read(
        settings,
        f"/orders/{order_id}/epcis",
        lambda: document_from_database(settings, order_id),
        timeout=60,
    )
    if code:
        return code
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        events = len(body["epcisBody"]["eventList"])
        typer.echo(f"order {order_id}: EPCIS 2.0 document with {events} event(s) → {out}")
    return 0
