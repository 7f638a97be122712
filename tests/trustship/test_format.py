"""Token amounts are shown exactly (no rounding) in token units."""

from __future__ import annotations

from trustship.stack import format_amount


def test_amounts_are_exact_in_token_units() -> None:
    assert format_amount(10**18, "ETH") == "1 ETH"
    assert format_amount(2 * 10**17, "ETH") == "0.2 ETH"
    assert format_amount(1, "ETH") == "0.000000000000000001 ETH"
    assert format_amount(19_200_000_000, "TUSD") == "19,200 TUSD"
    assert format_amount(1_000_001, "TUSD", unit=False) == "1.000001"
    assert format_amount(0, "ETH") == "0 ETH"
    assert format_amount(None, "ETH") == "—"
    assert format_amount(9_000, "") == "9,000"
