"""The first `trustship demo`: runs end to end and writes its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustship.demo import eth, run_demo

pytestmark = pytest.mark.timeout(120)


def test_demo_settles_with_the_late_penalty_and_writes_html(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "nested" / "demo.html"
    assert run_demo("cold_chain_breach", report) == 0
    text = report.read_text()
    assert text.startswith("<!doctype html>")
    assert "settled as the terms say" in text
    # 10 ETH, 1 h 50 min late at 1 %/started hour → 2 % to the buyer
    assert "<td>buyer</td><td>0.2 ETH</td><td>200000000000000000</td>" in text
    assert "<td>supplier</td><td>9.8 ETH</td><td>9800000000000000000</td>" in text
    assert "cold_chain_breach" in text  # says which scenario was asked for


def test_demo_writes_plain_text_for_other_suffixes(tmp_path: Path) -> None:
    report = tmp_path / "demo.txt"
    assert run_demo("anything", report) == 0
    lines = report.read_text().splitlines()
    assert lines[0].startswith("TrustShip demo")
    assert "buyer: 0.2 ETH (200000000000000000 wei)" in lines
    assert lines[-1] == "outcome: settled as the terms say"


def test_eth_formatting() -> None:
    assert eth(10**18) == "1 ETH"
    assert eth(2 * 10**17) == "0.2 ETH"
    assert eth(1) == "0.000000000000000001 ETH"
    assert eth(123_456_789_000_000, 6) == "0.000123 ETH"
    assert eth(0) == "0 ETH"
