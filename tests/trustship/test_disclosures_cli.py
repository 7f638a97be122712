"""``trustship disclosures verify``: the disclosure log's chain from the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from backend.sharing import disclosures
from backend.sharing.policy import DisclosureNote, Viewer
from backend.store import session_factory
from backend.store.models import DisclosureRow
from testkit.databases import migrated_engine
from trustship.cli import app

VIEWER = Viewer("v", "0x" + "a" * 40, frozenset({"auditor"}), "US")


def test_verify_prints_the_head_and_names_the_first_bad_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'trustship.db'}")
    with migrated_engine("sqlite", tmp_path) as engine:
        with session_factory(engine)() as s:
            for i in range(3):
                disclosures.append(s, VIEWER, [DisclosureNote(1, 5, "medium", "EU")], "r", i)
            head = disclosures.head(s)
        r = CliRunner().invoke(app, ["disclosures", "verify", "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert out["ok"] and out["entries"] == 3
        assert out["head"] == {"seq": 3, "hash": "0x" + head.hash.hex()}
        r = CliRunner().invoke(app, ["disclosures", "verify", "--anchor", f"2:0x{'00' * 32}"])
        assert r.exit_code == 1 and "BROKEN at entry 2" in r.output
        ok = f"3:0x{head.hash.hex()}"
        assert CliRunner().invoke(app, ["disclosures", "verify", "--anchor", ok]).exit_code == 0
        assert CliRunner().invoke(app, ["disclosures", "verify", "--anchor", "x"]).exit_code == 2
        with session_factory(engine).begin() as s:
            s.execute(update(DisclosureRow).where(DisclosureRow.seq == 2).values(grant_id=6))
        r = CliRunner().invoke(app, ["disclosures", "verify"])
        assert r.exit_code == 1 and "BROKEN at entry 2" in r.output
