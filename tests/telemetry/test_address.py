"""parse_address: the one EIP-55 check for addresses people and files give us
(issue 8, finding 3)."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address

from backend.core.errors import AddressError
from backend.telemetry import parse_address

REAL = "0x05b1f6fcF6B7c1A62de3140e1F3eFC98BCC34C7a"
#: REAL with its last characters mistyped, keeping a mixed case: the finding's address.
MISTYPED = "0x05B1f6fCF6B7c1a62dE3140e1F3efc98BCC34c7A"


def test_checksummed_lower_and_upper_case_are_accepted_and_answered_checksummed() -> None:
    assert to_checksum_address(REAL) == REAL
    for spelling in (REAL, REAL.lower(), "0x" + REAL[2:].upper()):
        assert parse_address(spelling) == REAL


@pytest.mark.parametrize(
    "mixed",
    [
        MISTYPED,
        REAL[:-1] + "A",  # one letter's case flipped
        REAL.replace("C7a", "C7b"),  # one digit mistyped, case kept
    ],
)
def test_a_mixed_case_address_with_a_wrong_checksum_is_refused(mixed: str) -> None:
    with pytest.raises(AddressError, match=r"^supplier .* wrong EIP-55 checksum"):
        parse_address(mixed, "supplier")
    assert isinstance(AddressError("x"), ValueError)  # pydantic reports it as a field error


@pytest.mark.parametrize(
    "bad",
    ["", "0x", REAL[2:], REAL + "0", REAL[:-1], "0X" + REAL[2:], REAL + "\n", " " + REAL, 42, None],
)
def test_anything_but_0x_and_40_hex_digits_is_refused(bad: object) -> None:
    with pytest.raises(AddressError, match="is not an Ethereum address"):
        parse_address(bad)


def test_the_error_never_suggests_the_checksum_of_a_mistyped_address() -> None:
    """Offering the 'right' spelling would invite pasting it: money to nobody's address."""
    with pytest.raises(AddressError) as info:
        parse_address(MISTYPED)
    assert to_checksum_address(MISTYPED) not in str(info.value)
