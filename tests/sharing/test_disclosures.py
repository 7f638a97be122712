"""The disclosure log's hash chain in the store (SQLite, and PostgreSQL under the
integration mark): append, verify, and tampering — an edited, deleted or reordered
entry — named by the first bad seq."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, delete, update

from backend.sharing import disclosures
from backend.sharing.policy import DisclosureNote, Viewer
from backend.store import session_factory
from backend.store.models import DisclosureRow

VIEWER = Viewer("overseas-auditor", "0x" + "a" * 40, frozenset({"auditor"}), "US")


def fill(engine: Engine, n: int) -> None:
    with session_factory(engine)() as s:
        for i in range(n):
            note = DisclosureNote(
                order_id=1 + i % 2, grant_id=9, sensitivity="medium", owner_jurisdiction="EU"
            )
            disclosures.append(s, VIEWER, [note], "GET /orders/{order_id}/telemetry", 1000 + i)


def verify(engine: Engine) -> disclosures.Verification:
    with session_factory(engine)() as s:
        return disclosures.verify(s)


def test_append_chains_each_entry_to_the_one_before(engine: Engine) -> None:
    assert verify(engine).head == disclosures.Head(0, disclosures.GENESIS)
    fill(engine, 5)
    with session_factory(engine)() as s:
        chain, count = disclosures.entries(s)
    assert count == 5 and [e.seq for e in chain] == [1, 2, 3, 4, 5]
    assert chain[0].prev_hash == disclosures.GENESIS
    for a, b in zip(chain, chain[1:], strict=False):
        assert b.prev_hash == a.entry_hash
    v = verify(engine)
    assert v.ok and v.entries == 5 and v.head == disclosures.Head(5, chain[-1].entry_hash)
    with session_factory(engine)() as s:
        only, n = disclosures.entries(s, order_ids=[2])
    assert n == 2 and {e.order_id for e in only} == {2}


@pytest.mark.parametrize(
    ("change", "bad"),
    [
        (
            lambda s: s.execute(
                update(DisclosureRow).where(DisclosureRow.seq == 3).values(order_id=99)
            ),
            3,
        ),
        (
            lambda s: s.execute(
                update(DisclosureRow).where(DisclosureRow.seq == 2).values(viewer="x")
            ),
            2,
        ),
        (lambda s: s.execute(delete(DisclosureRow).where(DisclosureRow.seq == 3)), 3),
        (lambda s: s.execute(delete(DisclosureRow).where(DisclosureRow.seq == 1)), 1),
        # swap entries 2 and 4 (their places in the log)
        (
            lambda s: (
                s.execute(update(DisclosureRow).where(DisclosureRow.seq == 2).values(seq=-2)),
                s.execute(update(DisclosureRow).where(DisclosureRow.seq == 4).values(seq=2)),
                s.execute(update(DisclosureRow).where(DisclosureRow.seq == -2).values(seq=4)),
            ),
            2,
        ),
    ],
    ids=["edit-order", "edit-viewer", "delete-middle", "delete-first", "reorder"],
)
def test_tampering_is_named_by_the_first_bad_seq(engine: Engine, change: object, bad: int) -> None:
    fill(engine, 5)
    with session_factory(engine).begin() as s:
        change(s)  # type: ignore[operator]
    v = verify(engine)
    assert not v.ok and v.first_bad_seq == bad, v
    assert v.problem


def test_a_recomputed_hash_still_breaks_the_next_link(engine: Engine) -> None:
    """Rewriting an entry and its own hash does not help: the next entry's prev_hash
    still names the old one."""
    fill(engine, 3)
    with session_factory(engine).begin() as s:
        row = s.get(DisclosureRow, 2)
        assert row is not None
        row.order_id = 42
        row.entry_hash = disclosures.entry_hash(disclosures.of_row(row))
    v = verify(engine)
    assert not v.ok and v.first_bad_seq == 3
