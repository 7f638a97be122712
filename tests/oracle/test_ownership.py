"""Which oracle process evaluates which order (backend/oracle/ownership.py), on a
real PostgreSQL: the share of each process, no slot owned twice, and a dead
process's slots taken over."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.oracle.ownership import SLOTS, Ownership, OwnershipLost, slot_of
from backend.store import repositories as repo
from testkit.readings import DEVICES, seed

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    from tests.conftest import migrated_empty_engine

    yield from migrated_empty_engine("postgresql", request, tmp_path)


@pytest.fixture(autouse=True)
def _leave(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every member made here leaves when the test ends (passed or not)."""
    made: list[Ownership] = []
    real = Ownership.__init__

    def init(self: Ownership, *a: Any, **kw: Any) -> None:
        real(self, *a, **kw)
        made.append(self)

    monkeypatch.setattr(Ownership, "__init__", init)
    yield
    for m in made:
        m.close()


def settle(members: list[Ownership], rounds: int = 3) -> None:
    for _ in range(rounds):
        for m in members:
            m.rebalance()


def test_one_process_owns_every_order(pg: Engine) -> None:
    (only,) = members = [Ownership(pg)]
    settle(members, 1)
    assert only.slots == frozenset(range(SLOTS)) and only.members == 1
    assert only.owns(1) and only.owns(2**40)
    only.close()


@pytest.mark.parametrize("n", [2, 3])
def test_processes_split_the_slots_evenly_and_never_share_one(pg: Engine, n: int) -> None:
    members = [Ownership(pg, member_id=100 + i) for i in range(n)]
    settle(members)
    shares = [m.slots for m in members]
    assert all(m.members == n for m in members)
    assert frozenset().union(*shares) == frozenset(range(SLOTS))
    assert sum(len(s) for s in shares) == SLOTS, "a slot owned by two processes"
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1
    # consecutive order ids go to different processes
    assert len({next(i for i, m in enumerate(members) if m.owns(o)) for o in range(n)}) == n
    for m in members:
        m.close()


def test_a_slot_moves_only_once_its_owner_let_it_go(pg: Engine) -> None:
    first, second = Ownership(pg, member_id=1), Ownership(pg, member_id=2)
    first.rebalance()
    assert len(first.slots) == SLOTS
    taken, _ = second.rebalance()  # its share is still held by the first
    assert taken == set() and second.slots == frozenset()
    _, released = first.rebalance()
    assert len(released) == SLOTS // 2 and not (first.slots & released)
    taken, _ = second.rebalance()
    assert taken == released and second.slots == frozenset(released)
    for m in (first, second):
        m.close()


def test_a_dead_process_slots_go_to_the_survivors(pg: Engine) -> None:
    members = [Ownership(pg, member_id=10 + i) for i in range(3)]
    settle(members)
    dead = members.pop(1)
    lost = dead.slots
    dead.close()  # its connection ends, as when the process is killed
    settle(members)
    assert all(m.members == 2 for m in members)
    assert members[0].slots | members[1].slots == frozenset(range(SLOTS))
    assert lost <= members[0].slots | members[1].slots
    for m in members:
        m.close()


def test_a_broken_connection_owns_nothing_until_it_joins_again(pg: Engine) -> None:
    m = Ownership(pg)
    m.rebalance()
    assert m._conn is not None
    m._conn.invalidate()  # the database went away under it
    with pytest.raises(OwnershipLost):  # it may not go on as if it held its slots
        m.rebalance()
    assert m.slots == frozenset() and not m.owns(1)
    m.rebalance()  # joins again
    assert len(m.slots) == SLOTS
    m.close()


def test_sqlite_has_one_process_that_owns_everything(sqlite_engine: Engine) -> None:
    m = Ownership(sqlite_engine)
    assert m.rebalance() == (set(), set())
    assert m.everything and m.owns(slot_of(12345)) and len(m.slots) == SLOTS


def test_a_reading_waiting_for_its_owner_is_not_in_the_loaded_window(pg: Engine) -> None:
    """A window loaded from the database holds evaluated readings only: the owner
    evaluates a handed-off one when it takes its row, not as part of the window."""
    from backend.oracle.ingest import Ingestor
    from testkit.readings import DOMAIN, KEYS, msg

    seed(pg, {1: [0]})
    Ingestor(pg, DOMAIN).ingest([msg(KEYS[0], 1, s) for s in (1, 2, 3)])
    key = (1, DEVICES[0])
    with Session(pg) as s, s.begin():
        ids = {r.seq: r.id for r in repo.latest_readings(s, [key], 10)[key]}
        repo.hand_off(s, [(1, DEVICES[0], ids[3])])
    with Session(pg) as s:
        assert [r.seq for r in repo.latest_readings(s, [key], 10)[key]] == [1, 2]
        assert repo.handed_orders(s) == {1}
    with Session(pg) as s, s.begin():
        rows, statuses = repo.take_handed(s, {1})
        assert [r.seq for r in rows] == [3] and statuses == []
        assert [r.seq for r in repo.latest_readings(s, [key], 10)[key]] == [1, 2, 3]
    with Session(pg) as s:
        assert repo.handed_orders(s) == set()


def test_a_taken_member_id_is_not_waited_for(pg: Engine) -> None:
    """A rejoin never blocks on its old id (the server may still hold it for a
    connection that died): it takes another one."""
    first = Ownership(pg, member_id=7)
    first.rebalance()
    second = Ownership(pg, member_id=7)
    second.rebalance()
    assert second.member_id != 7 and first.members == 1 and second.members == 2
    for m in (first, second):
        m.close()


def test_the_server_watches_the_ownership_connection(pg: Engine) -> None:
    m = Ownership(pg)
    m.rebalance()
    assert m._conn is not None
    assert m._conn.exec_driver_sql("SHOW tcp_keepalives_idle").scalar() == "5"
    m.close()


def test_deployments_in_other_schemas_are_not_members(pg: Engine) -> None:
    """Advisory locks are database-wide; a deployment in another schema of the same
    database (here ``public``) neither counts as a member nor holds our slots."""
    from backend.store.db import make_engine
    from testkit.databases import POSTGRES_URL

    other = make_engine(POSTGRES_URL)
    try:
        ours, theirs = Ownership(pg), Ownership(other)
        settle([ours, theirs])
        assert ours.members == 1 and len(ours.slots) == SLOTS
        assert len(theirs.slots) == SLOTS
    finally:
        other.dispose()
