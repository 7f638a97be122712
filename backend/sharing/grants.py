"""Grants: a party elsewhere asks an order's data owner for one class of the order's
data; the owner approves (with an expiry) or denies (with a reason), and may revoke.

requested → approved | denied; approved → revoked; approved past ``expires_at`` reads
as expired. Only ``medium`` is grantable (``high`` never leaves its jurisdiction).
Who may decide is the API's check (an owner of the order's data); this module keeps
the states and their moves.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from backend.core.errors import TrustShipError
from backend.domain.sensitivity import MEDIUM, Sensitivity
from backend.domain.sharing import Grant, GrantState
from backend.sharing.policy import Viewer
from backend.store.models import GrantRow

#: The longest an approval may run (a year); the owner picks the expiry within it.
MAX_GRANT_SECS = 366 * 86_400


class GrantError(TrustShipError):
    """Raised when a grant cannot move as asked (``code`` says why, for the API)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def of_row(row: GrantRow) -> Grant:
    return Grant(**{name: getattr(row, name) for name in Grant.__dataclass_fields__})


def request(
    session: Session, viewer: Viewer, order_id: int, sensitivity: Sensitivity, reason: str, now: int
) -> Grant:
    if sensitivity is not MEDIUM:
        raise GrantError(
            "not_grantable",
            f"{sensitivity.value} data is not grantable: only medium data crosses a border "
            "under a grant (low needs none, high never leaves its jurisdiction)",
        )
    row = GrantRow(
        order_id=order_id,
        sensitivity=sensitivity.value,
        grantee=viewer.name,
        grantee_address=viewer.address,
        grantee_jurisdiction=viewer.jurisdiction,
        reason=reason,
        state=GrantState.REQUESTED.value,
        requested_at=now,
    )
    session.add(row)
    session.flush()
    return of_row(row)


def get(session: Session, grant_id: int) -> Grant | None:
    row = session.get(GrantRow, grant_id)
    return None if row is None else of_row(row)


def _move(
    session: Session, grant_id: int, allowed_from: GrantState, now: int, **changes: object
) -> Grant:
    row = session.get(GrantRow, grant_id, with_for_update=True)
    if row is None:
        raise GrantError("not_found", f"grant {grant_id} not found")
    state = of_row(row).state_at(now)
    if state is not allowed_from:
        raise GrantError(
            "grant_state",
            f"grant {grant_id} is {state.value}; only a {allowed_from.value} grant can be "
            f"{changes['state']}",
        )
    for k, v in changes.items():
        setattr(row, k, v)
    session.flush()
    return of_row(row)


def _decide(
    session: Session,
    grant_id: int,
    state: GrantState,
    by: str,
    as_role: str,
    now: int,
    **extra: object,
) -> Grant:
    """The owner's decision on a requested grant: the new state, who decided, in which
    role, and when (and what goes with the decision)."""
    return _move(
        session,
        grant_id,
        GrantState.REQUESTED,
        now,
        state=state.value,
        decided_by=by,
        decided_as=as_role,
        decided_at=now,
        **extra,
    )


def approve(
    session: Session, grant_id: int, by: str, as_role: str, expires_at: int, now: int
) -> Grant:
    if not now < expires_at <= now + MAX_GRANT_SECS:
        raise GrantError(
            "bad_expiry", f"expires_at must be after now ({now}) and within {MAX_GRANT_SECS} s"
        )
    return _decide(session, grant_id, GrantState.APPROVED, by, as_role, now, expires_at=expires_at)


def deny(session: Session, grant_id: int, by: str, as_role: str, reason: str, now: int) -> Grant:
    return _decide(session, grant_id, GrantState.DENIED, by, as_role, now, decision_reason=reason)


def revoke(session: Session, grant_id: int, now: int) -> Grant:
    return _move(
        session, grant_id, GrantState.APPROVED, now, state=GrantState.REVOKED.value, revoked_at=now
    )


def of_viewer(session: Session, viewer_address: str, order_id: int) -> list[Grant]:
    """The grants ``viewer_address`` holds or asked for on ``order_id``."""
    return of_viewer_many(session, viewer_address, [order_id]).get(order_id, [])


def of_viewer_many(
    session: Session, viewer_address: str, order_ids: Collection[int]
) -> dict[int, list[Grant]]:
    """The grants ``viewer_address`` holds or asked for on each of ``order_ids`` (orders
    without any are left out), in one query."""
    out: dict[int, list[Grant]] = {}
    rows = session.scalars(
        select(GrantRow)
        .where(GrantRow.order_id.in_(list(order_ids)), GrantRow.grantee_address == viewer_address)
        .order_by(GrantRow.id)
    )
    for r in rows:
        out.setdefault(r.order_id, []).append(of_row(r))
    return out


def listing(
    session: Session, address: str, owned_orders: Sequence[int] | None, *, limit: int, offset: int
) -> tuple[list[Grant], int]:
    """Grants the caller asked for, and grants on the orders in ``owned_orders``
    (``None``: every grant, for auditors and admins), newest first; and how many."""
    stmt = select(GrantRow)
    if owned_orders is not None:
        stmt = stmt.where(
            or_(GrantRow.grantee_address == address, GrantRow.order_id.in_(list(owned_orders)))
        )
    count = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(GrantRow.id.desc()).limit(limit).offset(offset))
    return [of_row(r) for r in rows], count
