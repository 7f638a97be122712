"""The one check of an Ethereum address that a person or a file gives us.

EIP-55 puts a checksum in the letter case of an address, so that a mistyped
character is caught before money goes to an address nobody controls. Wallets
accept an address in one of three spellings, and so does :func:`parse_address`:

* mixed case: the checksum must be right (else :class:`AddressError`);
* all lower case or all upper case: carries no checksum, accepted as it is.

It answers the checksummed spelling. The API (request bodies and query
parameters), ``API_KEYS``, deployment manifests and the command line all call it;
the wire format is stricter (a reading's ``device`` must be checksummed,
:func:`backend.telemetry.decode_message`).
"""

from __future__ import annotations

import re
from functools import lru_cache

from eth_utils import to_checksum_address

from backend.core.errors import AddressError

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

# Checksumming costs ~25 µs (a keccak in Python's eth_utils); the addresses a process
# sees repeat, and the cache is bounded so hostile input cannot grow it.
_checksum = lru_cache(maxsize=4096)(to_checksum_address)


def parse_address(value: object, what: str = "address") -> str:
    """``value`` as a checksummed address; ``what`` names it in the error.

    Raises :class:`~backend.core.errors.AddressError` when it is not ``0x`` + 40 hex
    digits, or when it is mixed case and its EIP-55 checksum is wrong.
    """
    if not isinstance(value, str) or _HEX_ADDRESS.fullmatch(value) is None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise AddressError(f"{what} {shown} is not an Ethereum address (0x and 40 hex digits)")
    checksummed: str = _checksum(value)
    digits = value[2:]
    if checksummed != value and digits != digits.lower() and digits != digits.upper():
        raise AddressError(
            f"{what} {value} has a wrong EIP-55 checksum: a character is probably mistyped "
            "(a mixed-case address must carry its checksum; all lower case has none)"
        )
    return checksummed
