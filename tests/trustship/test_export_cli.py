"""`trustship export ORDER --format epcis` over a database (docs/epcis.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.api.parties import PartyRegistry
from backend.core.settings import Settings
from backend.sharing.schema import load_schema
from backend.store import repositories as repo
from backend.store import session_factory
from testkit.api_seed import seed
from testkit.databases import migrated_engine
from tests.api.test_epcis import DEPLOYMENT
from trustship.cli import app


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings = Settings(DEV_MODE=True, API_KEYS=None, _env_file=None)  # type: ignore[call-arg]
    with migrated_engine("sqlite", tmp_path) as engine:
        factory = session_factory(engine)
        seed(factory, PartyRegistry.from_settings(settings), readings=10, committed=4)
        with factory.begin() as s:
            repo.set_cursor(s, "chain", 10, deployment=DEPLOYMENT)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'trustship.db'}")
    monkeypatch.delenv("TRUSTSHIP_API_URL", raising=False)
    return tmp_path


def test_export_writes_a_valid_document(database: Path) -> None:
    out = database / "order-1.json"
    r = CliRunner().invoke(app, ["export", "1", "--format", "epcis", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "order 1: EPCIS 2.0 document with 2 event(s)" in r.output
    doc = json.loads(out.read_text())
    assert load_schema(Settings(_env_file=None).EPCIS_SCHEMA_DIR).violations(doc) == []  # type: ignore[call-arg]
    stdout = CliRunner().invoke(app, ["export", "1"])  # epcis is the default format
    assert stdout.exit_code == 0 and json.loads(stdout.stdout) == doc
    # the database's operator reads every order, the stranger's too
    assert CliRunner().invoke(app, ["export", "2"]).exit_code == 0


def test_an_unknown_order_or_format_is_refused(database: Path) -> None:
    r = CliRunner().invoke(app, ["export", "99"])
    assert r.exit_code == 1 and "order 99 not found" in r.output
    r = CliRunner().invoke(app, ["export", "1", "--format", "xml"])
    assert r.exit_code == 2 and "unknown format 'xml'" in r.output


def test_a_missing_schema_directory_is_named(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPCIS_SCHEMA_DIR", str(database / "none"))
    r = CliRunner().invoke(app, ["export", "1"])
    assert r.exit_code == 2 and "EPCIS_SCHEMA_DIR" in r.output
