"""`trustship simulate` / `python -m iot_simulator`: dry runs, manifests, order ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from iot_simulator.cli import FALLBACK_DOMAIN, load_domain, main, parse_order_ids, simulate
from iot_simulator.scenario import ScenarioError
from tests.iot_simulator.helpers import SCENARIOS, minimal_scenario

QV = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_dry_run_prints_the_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(SCENARIOS / "cold_chain_breach.yaml"), "--dry-run", "--t0", "1700000000"])
    out = capsys.readouterr().out
    assert code == 0
    assert "first reading in the geofence at 5d00:00:00 (tick 480, ts 1700432000)" in out
    assert "BREACH" in out and "matches the expectation" in out


def test_dry_run_by_name_and_mismatch_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["on_time_clean", "--dry-run"]) == 0  # a name in scenarios/
    data = minimal_scenario()
    data["orders"][0]["expected"] = {"buyer": 1, "supplier": 999_999, "breach": False, "late_s": 0}
    f = tmp_path / "wrong.yaml"
    f.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main([str(f), "--dry-run"]) == 1
    assert "EXPECTED: Settled, buyer 1" in capsys.readouterr().out


def test_bad_scenario_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = minimal_scenario()
    data["orders"][0]["terms"]["token"] = "DOGE"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(data))
    assert simulate(f, None, [], None) == 2
    assert "orders[box].terms.token" in capsys.readouterr().err


def test_order_ids() -> None:
    assert parse_order_ids([]) is None
    assert parse_order_ids(["a=1", "b=22"]) == {"a": 1, "b": 22}
    for bad in (["a"], ["a=x"], ["=3"], ["a=1", "a=2"]):
        with pytest.raises(ScenarioError, match="--order-id"):
            parse_order_ids(bad)


def test_manifest_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEPLOYMENT_FILE", raising=False)
    assert load_domain(None)[0] == FALLBACK_DOMAIN  # nothing deployed: placeholder, said so
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"chain_id": 31337, "addresses": {"QualityVerification": QV.lower()}}))
    assert load_domain(f)[0].verifying_contract == QV
    f.write_text(json.dumps({"chainId": 5, "contracts": {"QualityVerification": {"address": QV}}}))
    assert load_domain(f)[0].chain_id == 5
    monkeypatch.setenv("DEPLOYMENT_FILE", str(f))
    assert load_domain(None)[0].chain_id == 5
    f.write_text(json.dumps({"chain_id": 1, "addresses": {}}))
    with pytest.raises(ScenarioError, match="needs chain_id and addresses.QualityVerification"):
        load_domain(f)
    with pytest.raises(ScenarioError, match="does not exist"):
        load_domain(tmp_path / "missing.json")


def test_unknown_order_name_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = simulate(SCENARIOS / "on_time_clean.yaml", None, ["apples=3"], None, dry_run=True)
    assert code == 2
    assert "order id given for unknown order(s) apples" in capsys.readouterr().err


def test_a_manifest_address_with_a_wrong_checksum_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Readings signed for a mistyped QualityVerification would verify nowhere."""
    mistyped = QV[:3] + QV[3].swapcase() + QV[4:]  # 0x5fbDB…: one letter's case flipped
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"chain_id": 31337, "addresses": {"QualityVerification": mistyped}}))
    with pytest.raises(ScenarioError, match="QualityVerification .* wrong EIP-55 checksum"):
        load_domain(f)
    code = main([str(SCENARIOS / "on_time_clean.yaml"), "--deployment", str(f), "--dry-run"])
    assert code == 2
    assert "wrong EIP-55 checksum" in capsys.readouterr().err
