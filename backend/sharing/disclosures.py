"""The disclosure log: every cross-border release of medium data, append-only and
hash-chained (docs/sharing.md, "Disclosure log").

Entry ``n`` stores ``prev_hash`` = entry ``n-1``'s ``entry_hash`` (32 zero bytes for
the first) and ``entry_hash = sha256(canonical(entry))``, where the canonical form is
the JSON object of every field but ``entry_hash`` (``prev_hash`` included, as 0x-hex),
keys sorted, no spaces. Changing, removing or reordering any entry breaks every hash
after it; :func:`verify` names the first entry that does not verify. The head (the last
entry's seq and hash) is what gets anchored (docs/sharing.md, "Anchoring").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.domain.sharing import DISCLOSURE_FIELDS, Disclosure
from backend.sharing.policy import DisclosureNote, Viewer
from backend.store.models import DisclosureRow

GENESIS = b"\x00" * 32


def canonical(entry: Disclosure) -> bytes:
    """The bytes an entry's hash covers."""
    body = {
        "seq": entry.seq,
        "at": entry.at,
        "viewer": entry.viewer,
        "viewer_address": entry.viewer_address,
        "viewer_jurisdiction": entry.viewer_jurisdiction,
        "owner_jurisdiction": entry.owner_jurisdiction,
        "order_id": entry.order_id,
        "sensitivity": entry.sensitivity,
        "grant_id": entry.grant_id,
        "route": entry.route,
        "prev_hash": "0x" + entry.prev_hash.hex(),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: Disclosure) -> bytes:
    return hashlib.sha256(canonical(entry)).digest()


def of_row(row: DisclosureRow) -> Disclosure:
    """The entry a ``disclosures`` row holds (its columns are the record's fields)."""
    entry = Disclosure(**{name: getattr(row, name) for name in DISCLOSURE_FIELDS})
    return dataclasses.replace(
        entry, prev_hash=bytes(entry.prev_hash), entry_hash=bytes(entry.entry_hash)
    )


@dataclass(frozen=True, slots=True)
class Head:
    seq: int  # 0: the log is empty
    hash: bytes


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    head: Head
    #: The first entry that does not verify (None when all do).
    first_bad_seq: int | None
    problem: str | None


def head(session: Session) -> Head:
    row = session.execute(
        select(DisclosureRow.seq, DisclosureRow.entry_hash)
        .order_by(DisclosureRow.seq.desc())
        .limit(1)
    ).first()
    return Head(0, GENESIS) if row is None else Head(int(row[0]), bytes(row[1]))


def _append_once(
    session: Session, viewer: Viewer, notes: Sequence[DisclosureNote], route: str, at: int
) -> list[Disclosure]:
    h = head(session)
    seq, prev = h.seq, h.hash
    out = []
    for n in notes:
        seq += 1
        draft = Disclosure(
            seq=seq,
            at=at,
            viewer=viewer.name,
            viewer_address=viewer.address,
            viewer_jurisdiction=viewer.jurisdiction,
            owner_jurisdiction=n.owner_jurisdiction,
            order_id=n.order_id,
            sensitivity=n.sensitivity,
            grant_id=n.grant_id,
            route=route[:200],
            prev_hash=prev,
            entry_hash=b"",
        )
        h_ = entry_hash(draft)
        entry = dataclasses.replace(draft, entry_hash=h_)
        session.add(DisclosureRow(**_fields(entry)))
        out.append(entry)
        prev = h_
    session.flush()
    return out


def _fields(d: Disclosure) -> dict[str, object]:
    return {name: getattr(d, name) for name in Disclosure.__dataclass_fields__}


def append(
    session: Session,
    viewer: Viewer,
    notes: Sequence[DisclosureNote],
    route: str,
    at: int,
    *,
    attempts: int = 5,
) -> list[Disclosure]:
    """Append one entry per note and commit. Two writers racing for the same place
    collide on ``seq`` / ``prev_hash``; the loser reads the new head and tries again."""
    if not notes:
        return []
    for attempt in range(attempts):
        try:
            with session.begin_nested():
                entries = _append_once(session, viewer, notes, route, at)
            session.commit()
            return entries
        except IntegrityError:
            session.rollback()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def entries(
    session: Session, *, order_ids: Iterable[int] | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Disclosure], int]:
    stmt = select(DisclosureRow)
    if order_ids is not None:
        stmt = stmt.where(DisclosureRow.order_id.in_(list(order_ids)))
    count = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(DisclosureRow.seq).limit(limit).offset(offset))
    return [of_row(r) for r in rows], count


def verify_chain(chain: Sequence[Disclosure]) -> Verification:
    """Check a whole log, first entry first: seq 1, 2, 3 … without gaps, each
    ``prev_hash`` the previous ``entry_hash`` and each ``entry_hash`` its entry's."""
    prev, expected_seq = GENESIS, 1
    for e in chain:
        problem = None
        if e.seq != expected_seq:
            problem = f"expected entry {expected_seq}, found {e.seq} (an entry is missing or moved)"
        elif e.prev_hash != prev:
            problem = "prev_hash is not the previous entry's hash"
        elif e.entry_hash != entry_hash(e):
            problem = "entry_hash does not match the entry (it was changed)"
        if problem is not None:
            return Verification(False, len(chain), _last(chain), expected_seq, problem)
        prev, expected_seq = e.entry_hash, expected_seq + 1
    return Verification(True, len(chain), _last(chain), None, None)


def _last(chain: Sequence[Disclosure]) -> Head:
    return Head(chain[-1].seq, chain[-1].entry_hash) if chain else Head(0, GENESIS)


def whole_log(session: Session) -> list[Disclosure]:
    """Every entry, first first."""
    rows = session.scalars(select(DisclosureRow).order_by(DisclosureRow.seq))
    return [of_row(r) for r in rows]


def verify(session: Session) -> Verification:
    """Verify the stored log from its first entry."""
    return verify_chain(whole_log(session))
