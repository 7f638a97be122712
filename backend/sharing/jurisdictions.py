"""Jurisdictions: where a party's data lives (ISO 3166-1 alpha-2, or ``EU``).

Each party has one, set with its API key (``API_KEYS`` entry ``"jurisdiction"``;
``DEFAULT_JURISDICTION`` for an entry without one and for order parties that are not
configured parties). Two parties are in the same jurisdiction when the codes are
equal; ``EU`` is one jurisdiction of its own (a party configured as ``DE`` is not in
``EU``: configure EU parties as ``EU``).
"""

from __future__ import annotations

import re

_CODE = re.compile(r"^[A-Z]{2}$")

#: Codes that are not countries but are accepted as jurisdictions.
REGIONAL = frozenset({"EU"})


def is_jurisdiction(code: str) -> bool:
    """Two upper-case letters (ISO 3166-1 alpha-2 form) or a regional code (``EU``)."""
    return code in REGIONAL or bool(_CODE.fullmatch(code))
