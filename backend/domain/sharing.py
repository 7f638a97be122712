"""The records of cross-border sharing: a grant and a disclosure-log entry (docs/sharing.md).

A **grant** lets one party outside the data owner's jurisdiction read one class of one
order's data (``medium`` only: ``high`` never leaves its jurisdiction). Its state moves
requested → approved | denied; approved → revoked; an approved grant whose
``expires_at`` has passed is expired (computed when read, never stored).

A **disclosure** is one cross-border release of medium data, in an append-only log
where each entry's hash covers the previous entry's hash (backend/sharing/disclosures.py).
The store's tables (``grants``, ``disclosures``) have a column for every field here
(tests/domain/test_sharing.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class GrantState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"


#: The states stored in the ``grants`` table (``expired`` is computed when read).
STORED_GRANT_STATES: tuple[GrantState, ...] = (
    GrantState.REQUESTED,
    GrantState.APPROVED,
    GrantState.DENIED,
    GrantState.REVOKED,
)


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant of one class of one order's data to one party."""

    id: int
    order_id: int
    sensitivity: str
    #: Who may read under it: the party's name, account and jurisdiction at request time.
    grantee: str
    grantee_address: str
    grantee_jurisdiction: str
    reason: str
    state: str
    requested_at: int
    decided_by: str | None
    #: The owner role the decider held on the order (``buyer`` or ``supplier``).
    decided_as: str | None
    decided_at: int | None
    decision_reason: str | None
    expires_at: int | None
    revoked_at: int | None

    def state_at(self, now: int) -> GrantState:
        """The state at unix second ``now`` (an approved grant past its expiry is expired)."""
        state = GrantState(self.state)
        if state is GrantState.APPROVED and self.expires_at is not None and now >= self.expires_at:
            return GrantState.EXPIRED
        return state


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One cross-border release of medium data (an entry of the disclosure log)."""

    seq: int
    at: int
    viewer: str
    viewer_address: str
    viewer_jurisdiction: str
    owner_jurisdiction: str
    order_id: int
    sensitivity: str
    grant_id: int
    route: str
    prev_hash: bytes
    entry_hash: bytes


GRANT_FIELDS: tuple[str, ...] = tuple(Grant.__dataclass_fields__)
DISCLOSURE_FIELDS: tuple[str, ...] = tuple(Disclosure.__dataclass_fields__)
