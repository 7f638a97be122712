"""The hot read queries (statements built once per shape, values as bind parameters)
against a plain Python reading of what they should return, for every shape of query."""

from __future__ import annotations

import itertools
import random

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.api import queries
from backend.api.parties import PartyRegistry
from backend.store.models import OrderRow, ReadingRow
from testkit.api_seed import T0, order_values
from tests.conftest import BACKENDS

STATES = ("Created", "Shipped", "Settled")
PARTIES = ("buyer", "supplier", "arbiter", "stranger", "auditor")


@pytest.fixture
def orders(factory: sessionmaker[Session], parties: PartyRegistry) -> list[dict]:
    rng = random.Random(3)
    people = [parties.by_name(n).address for n in ("buyer", "supplier", "arbiter", "stranger")]
    rows = []
    for i in range(1, 41):
        buyer, supplier, arbiter = rng.sample(people, 3)
        rows.append(order_values(i, buyer, supplier, arbiter, state=rng.choice(STATES)))
    with factory.begin() as s:
        s.add_all(OrderRow(**v) for v in rows)
    return rows


def expected_orders(
    rows: list[dict], me: str, reads_all: bool, **f: object
) -> tuple[list[int], int]:
    mine = [
        r
        for r in rows
        if (reads_all or me in (r["buyer"], r["supplier"], r["arbiter"]))
        and (not f["states"] or r["state"] in f["states"])  # type: ignore[operator]
        and (f["role"] is None or r[f["role"]] == me)  # type: ignore[index]
        and (f["buyer"] is None or r["buyer"] == f["buyer"])
        and (f["supplier"] is None or r["supplier"] == f["supplier"])
    ]
    matching = sorted((r["id"] for r in mine), reverse=True)
    page = [i for i in matching if f["before"] is None or i < f["before"]]  # type: ignore[operator]
    offset, limit = f["offset"], f["limit"]
    return page[offset : offset + limit], len(matching)  # type: ignore[misc,operator]


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_order_pages_match_their_definition_in_every_shape(
    factory: sessionmaker[Session], parties: PartyRegistry, orders: list[dict]
) -> None:
    rng = random.Random(5)
    supplier = parties.by_name("supplier").address
    buyer = parties.by_name("buyer").address
    shapes = itertools.product(
        PARTIES,
        [(), ("Shipped",), ("Created", "Settled")],
        [None, "buyer", "supplier", "arbiter"],
        [None, buyer],
        [None, supplier],
        [None, 25],
    )
    with factory() as session:
        for who, states, role, by, sup, before in shapes:
            party = parties.by_name(who)
            f = {
                "states": states,
                "role": role,
                "buyer": by,
                "supplier": sup,
                "before": before,
                "offset": rng.choice([0, 0, 3]),
                "limit": rng.choice([1, 4, 50]),
            }
            rows, count = queries.list_orders(session, party, **f)  # type: ignore[arg-type]
            want_ids, want_count = expected_orders(orders, party.address, party.reads_all, **f)
            assert [r.id for r in rows] == want_ids, (who, f)
            if f["offset"] == 0 and before is None and len(rows) < f["limit"]:
                assert count == len(rows) == want_count  # a short first page is all
            else:
                assert count == want_count, (who, f)


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_get_order_sees_only_the_callers_orders(
    factory: sessionmaker[Session], parties: PartyRegistry, orders: list[dict]
) -> None:
    with factory() as session:
        for who in PARTIES:
            party = parties.by_name(who)
            for r in orders[:10]:
                seen = queries.get_order(session, party, r["id"])
                owners = queries.order_owners(session, party, r["id"])
                named = party.address in (r["buyer"], r["supplier"], r["arbiter"])
                assert (seen is not None) == (party.reads_all or named)
                assert seen is None or seen.id == r["id"]
                assert (owners is not None) == (seen is not None)
                assert owners is None or tuple(owners) == (r["id"], r["buyer"], r["supplier"])
        for missing in (queries.get_order, queries.order_owners):
            assert missing(session, parties.by_name("auditor"), 999) is None


@pytest.mark.parametrize("db", BACKENDS, indirect=True)
def test_reading_pages_match_their_definition_in_every_shape(
    factory: sessionmaker[Session], parties: PartyRegistry, orders: list[dict]
) -> None:
    rng = random.Random(9)
    devices = ["0x" + "ab" * 20, "0x" + "cd" * 20]
    made = []
    with factory.begin() as s:
        for n in range(60):
            order_id = 1 + n % 2
            v = {
                "order_id": order_id,
                "device": devices[n % 3 % 2],
                "seq": n,
                "timestamp": T0 + rng.randrange(0, 20) * 60,  # ties, broken by id
                "temperature_centi_c": 500,
                "humidity_permille": 400,
                "shock_milli_g": 0,
                "latitude_e6": 0,
                "longitude_e6": 0,
                "flags": 0,
                "signature": bytes(65),
                "digest": n.to_bytes(32, "big"),
                "received_at": 1.0,
            }
            row = ReadingRow(**v)
            s.add(row)
            s.flush()
            made.append({**v, "id": row.id})
    shapes = itertools.product(
        [1, 2], [None, devices[1]], [None, T0 + 300], [None, T0 + 900], [False, True]
    )
    with factory() as session:
        for order_id, device, since, until, keyset in shapes:
            match = sorted(
                (
                    (r["timestamp"], r["id"])
                    for r in made
                    if r["order_id"] == order_id
                    and (device is None or r["device"] == device)
                    and (since is None or r["timestamp"] >= since)
                    and (until is None or r["timestamp"] < until)
                ),
            )
            after = match[2] if keyset and len(match) > 2 else None
            offset, limit = rng.choice([0, 0, 2]), rng.choice([1, 3, 100])
            rows, count = queries.readings(
                session,
                order_id,
                device=device,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
                after=after,
            )
            page = [m for m in match if after is None or m > after][offset : offset + limit]
            assert [(r.timestamp, r.id) for r in rows] == page
            assert count == len(match)
