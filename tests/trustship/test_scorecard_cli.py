"""`trustship scorecard [ADDRESS] [--json]` over a database of indexed events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.api import convert
from backend.scorecard import ranked, scorecards
from backend.store import session_factory
from testkit.databases import migrated_engine
from tests.api.test_suppliers import store
from tests.scorecard.events import OTHER, SUPPLIER, Chain
from trustship.cli import app


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Chain:
    c = Chain()
    good = c.create(c.terms(supplier=OTHER))
    c.ship(good)
    c.deliver(good)
    c.settle(good, 0, 10_000)
    late = c.create(c.terms())
    c.ship(late)
    c.breach(late, "excursion")
    c.deliver(late, late=2 * 3600)
    c.settle(late, 3_200, 6_800)
    with migrated_engine("sqlite", tmp_path) as engine:
        store(session_factory(engine), c)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'trustship.db'}")
    monkeypatch.delenv("TRUSTSHIP_API_URL", raising=False)
    return c


def test_the_ranked_table(history: Chain) -> None:
    r = CliRunner().invoke(app, ["scorecard"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:3] == ["#", "supplier", "orders"]
    assert lines[2].split()[:2] == ["1", OTHER] and lines[3].split()[:2] == ["2", SUPPLIER]
    assert "100.0%" in lines[2] and "2.0h" in lines[3]  # on time; 2 h late
    assert "2 supplier(s)" in r.output


def test_one_supplier_table_and_json(history: Chain) -> None:
    r = CliRunner().invoke(app, ["scorecard", SUPPLIER.lower()])
    assert r.exit_code == 0, r.output
    assert f"supplier {SUPPLIER}" in r.output
    assert "→ 51.9,4.0 all time" in r.output and "breach refunds 3000" in r.output
    r = CliRunner().invoke(app, ["scorecard", SUPPLIER, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == convert.scorecard(scorecards(history.events)[SUPPLIER])
    r = CliRunner().invoke(app, ["scorecard", "--json"])
    cards = scorecards(history.events)
    assert json.loads(r.output) == convert.suppliers_page(
        ranked(cards.values()), max(e.timestamp for e in history.events), 2, 0
    )


def test_unknown_and_bad_addresses(history: Chain) -> None:
    r = CliRunner().invoke(app, ["scorecard", "0x" + "ab" * 20])
    assert r.exit_code == 1 and "not found" in r.output
    r = CliRunner().invoke(app, ["scorecard", "0x12"])
    assert r.exit_code == 2 and "address" in r.output


def test_an_empty_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with migrated_engine("sqlite", tmp_path):
        pass
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'trustship.db'}")
    monkeypatch.delenv("TRUSTSHIP_API_URL", raising=False)
    r = CliRunner().invoke(app, ["scorecard"])
    assert r.exit_code == 0 and "no suppliers with orders yet" in r.output


def test_from_a_running_api(
    history: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With TRUSTSHIP_API_URL the command asks the API (as the buyer) and shows the same."""
    from backend.api.context import ApiContext
    from backend.api.parties import PartyRegistry
    from backend.core.settings import Settings
    from backend.store import make_engine
    from tests.api.uvicorn_thread import ServerThread

    local = CliRunner().invoke(app, ["scorecard", SUPPLIER, "--json"])
    settings = Settings(DEV_MODE=True, API_KEYS=None, RPC_URL=None, _env_file=None)  # type: ignore[call-arg]
    engine = make_engine(f"sqlite:///{tmp_path / 'trustship.db'}")
    context = ApiContext(
        settings=settings,
        session_factory=session_factory(engine),
        parties=PartyRegistry.from_settings(settings),
    )
    try:
        with ServerThread(context) as server:
            monkeypatch.setenv("TRUSTSHIP_API_URL", server.url)
            monkeypatch.setenv("DATABASE_URL", "sqlite:////nonexistent/not-read.db")
            remote = CliRunner().invoke(app, ["scorecard", SUPPLIER, "--json"])
            assert remote.exit_code == 0, remote.output
            assert json.loads(remote.output) == json.loads(local.output)
            table = CliRunner().invoke(app, ["scorecard"])
            assert table.exit_code == 0 and OTHER in table.output.splitlines()[2]
            missing = CliRunner().invoke(app, ["scorecard", "0x" + "ab" * 20])
            assert missing.exit_code == 1 and "not found" in missing.output
    finally:
        engine.dispose()
