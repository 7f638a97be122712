"""GET /suppliers and /suppliers/{address}/scorecard over indexed events (docs/scorecards.md).

The events are stored as the indexer stores them (``chain_events`` rows, JSON
arguments); the figures must be what the pure computation gives for those events.
tests/integration/test_scorecards_anvil.py checks the whole path against the chain.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.indexer.chain import json_safe
from backend.scorecard import ranked, scorecards
from backend.store import repositories as repo
from tests.api.conftest import Api
from tests.scorecard.events import BUYER, DEADLINE, OTHER, SUPPLIER, T0, Chain


def store(factory: sessionmaker[Session], chain: Chain) -> None:
    rows = [
        {
            "block_number": e.block_number,
            "block_timestamp": e.timestamp,
            "tx_hash": e.block_number.to_bytes(32, "big"),
            "log_index": e.log_index,
            "contract": "PurchaseOrders",
            "event": e.name,
            "order_id": e.args.get("orderId"),
            "args": json_safe(dict(e.args)),
        }
        for e in chain.events
    ]
    with factory() as s, s.begin():
        repo.insert_events(s, rows)


@pytest.fixture
def history() -> Chain:
    c = Chain()
    good = c.create(c.terms(supplier=OTHER, price=2**70))  # beyond 2**53: JSON as a string
    c.ship(good)
    c.deliver(good)
    c.settle(good, 0, 2**70)
    late = c.create(c.terms())
    c.ship(late)
    c.breach(late, "shock")
    c.deliver(late, late=3 * 3600)
    c.settle(late, 3_300, 6_700)
    c.emit("OrderExpired", DEADLINE + 9 * 86_400, orderId=c.create(c.terms()), refunded=10_000)
    c.emit("OrderCancelled", T0, orderId=c.create(c.terms()), by=BUYER)
    return c


def test_a_scorecard_is_the_computation_over_the_stored_events(
    api: Api, factory: sessionmaker[Session], history: Chain
) -> None:
    store(factory, history)
    r = api.get(f"/suppliers/{SUPPLIER}/scorecard", who="stranger")  # any party may read
    assert r.status_code == 200, r.text
    body = r.json()
    expected = scorecards(history.events)[SUPPLIER]
    assert body["supplier"] == SUPPLIER and body["as_of"] == expected.as_of
    f = body["all_time"]
    assert (f["orders"], f["delivered"], f["late"], f["shocks"], f["expired"], f["cancelled"]) == (
        3, 1, 1, 1, 1, 1)  # fmt: skip
    assert f["mean_late_secs"] == 3 * 3600 and f["score_bps"] == 0
    [tok] = f["tokens"]
    assert (tok["late_penalties"], tok["breach_refunds"], tok["expiry_refunds"]) == (
        "300", "3000", "10000")  # fmt: skip
    assert [lane["lane"] for lane in body["lanes"]] == ["51.9,4.0"]
    assert body["last_90_days"] == f  # every order is recent
    other = api.get(f"/suppliers/{OTHER.lower()}/scorecard", who="auditor").json()
    assert other["all_time"]["tokens"][0]["value"] == str(2**70)


def test_suppliers_are_ranked(api: Api, factory: sessionmaker[Session], history: Chain) -> None:
    store(factory, history)
    body = api.get("/suppliers").json()
    assert [(d["rank"], d["supplier"]) for d in body["data"]] == [(1, OTHER), (2, SUPPLIER)]
    assert body["count"] == 2
    assert [c.supplier for c in ranked(scorecards(history.events).values())] == [OTHER, SUPPLIER]
    page = api.get("/suppliers", params={"limit": 1, "offset": 1}).json()
    assert [(d["rank"], d["supplier"]) for d in page["data"]] == [(2, SUPPLIER)]


def test_no_events_no_suppliers(api: Api) -> None:
    body = api.get("/suppliers").json()
    assert body == {"as_of": None, "data": [], "count": 0}


@pytest.mark.parametrize(
    ("path", "status", "code", "says"),
    [
        ("/suppliers/0x12/scorecard", 422, "validation_error", "address"),
        (f"/suppliers/{SUPPLIER[:-1]}X/scorecard", 422, "validation_error", "address"),
        (f"/suppliers/{SUPPLIER}/scorecard", 404, "not_found", SUPPLIER),
    ],
)
def test_errors(api: Api, path: str, status: int, code: str, says: str) -> None:
    r = api.get(path)
    assert r.status_code == status
    body: dict[str, Any] = r.json()
    assert body["code"] == code and says in body["message"], body


def test_a_key_is_needed(api: Api) -> None:
    assert api.get("/suppliers", who="none").status_code == 401
    assert api.get(f"/suppliers/{SUPPLIER}/scorecard", who="bad").status_code == 401


def test_the_public_figures_are_the_computations_fields() -> None:
    from dataclasses import fields

    from backend.api.schemas import FiguresPublic, TokenFiguresPublic
    from backend.scorecard import Figures, TokenFigures

    assert list(FiguresPublic.model_fields) == [f.name for f in fields(Figures)]
    assert list(TokenFiguresPublic.model_fields) == [f.name for f in fields(TokenFigures)]


def quote_body(**terms: Any) -> dict[str, Any]:
    from tests.scorecard.events import ARBITER, ISSUER, ROTTERDAM

    body: dict[str, Any] = {
        "price": "1000000", "delivery_deadline": DEADLINE, "dest_lat_e6": ROTTERDAM[0],
        "dest_lon_e6": ROTTERDAM[1], "geofence_e6": 50_000, "min_temp_centi_c": 200,
        "max_temp_centi_c": 800, "late_penalty_bps_per_hour": 300, "late_penalty_cap_bps": 1000,
        "breach_refund_bps": 5000, "arbiter": ARBITER, "device_issuer": ISSUER,
        "tolerated_excursion_secs": 1800, "expiry_grace_secs": 86_400,
    }  # fmt: skip
    body.update(terms)
    return body


def quote(api: Api, key: str) -> Any:
    """``POST /orders/quote`` of :func:`quote_body` for SUPPLIER with ``key``: the answer."""
    r = api.client.post(
        "/orders/quote",
        json={"supplier": SUPPLIER, "terms": quote_body()},
        headers={"X-API-Key": key},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_a_quote_prices_the_terms_on_the_history(
    api: Api, factory: sessionmaker[Session], history: Chain
) -> None:
    from backend.domain.order import Terms
    from backend.scorecard import backtests

    store(factory, history)
    body = quote(api, "dev-buyer")
    assert body["lane"] == "51.9,4.0" and body["supplier_record"]["supplier"] == SUPPLIER
    assert body["lane_record"]["all_time"]["orders"] == 4  # both suppliers' orders
    buyer = api.context.parties.lookup("dev-buyer")
    assert buyer is not None
    t = quote_body()
    terms = Terms(buyer=buyer.address, supplier=SUPPLIER, **{**t, "price": 1_000_000})
    expected = backtests(history.events, terms)
    got = {b["basis"]: b for b in body["backtests"]}
    # the supplier: 3 h late + shock → min(1000, 900) + 5000 = 5900 bps; expired 10000
    assert got["supplier"]["finished"] == 2 and got["supplier"]["mean_refund_bps"] == 7_950
    assert got["supplier"]["expected_buyer_amount"] == str(expected[0].expected_buyer_amount)
    assert got["lane"]["finished"] == 3  # OTHER's on-time delivery too: 0 bps
    assert got["lane"]["mean_refund_bps"] == (5_900 + 10_000) // 3


def test_a_quote_for_a_supplier_without_history(api: Api) -> None:
    body = quote(api, "dev-stranger")
    assert body["supplier_record"] is None and body["lane_record"] is None
    assert all(b["finished"] == 0 and b["expected_buyer_amount"] is None for b in body["backtests"])
    bad = api.client.post(
        "/orders/quote",
        json={"supplier": "0x12", "terms": quote_body()},
        headers={"X-API-Key": "dev-buyer"},
    )
    assert bad.status_code == 422 and "supplier" in bad.json()["message"]


def test_other_methods_on_the_quote_are_not_allowed(api: Api) -> None:
    r = api.get("/orders/quote")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert api.get("/orders/1").status_code == 404  # the order lookup is untouched
