"""The watcher's checks and decisions on the in-process chain (no broker: messages are
handed to :meth:`Watcher.handle` as the subscriber would). The same on real servers:
tests/integration/test_watcher.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.chain.testing import Stack, device, device_key, signed
from backend.domain.actions import ProveExcursion
from backend.oracle.rules import OrderTerms, excursion_evidence
from backend.telemetry import Reading, encode_message, telemetry_topic
from backend.watcher import ChainView, Watcher, WatcherConfig, WatcherStore
from backend.watcher.run import contracts_of
from backend.watcher.service import ALREADY_DONE, MISSED, PROVEN, PROVEN_BY_ANOTHER

GAS = 3_000_000
IN_RANGE, WARM = 500, 1200  # centi-°C; the terms allow 2–8 °C for 1800 s


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def order(deployment: Stack) -> int:
    """A shipped order with device 1 bound (certified by issuer 1)."""
    s, a = deployment, deployment.accounts
    oid = int(s.po.create_and_fund_order(s.make_terms(), by=a.buyer, gas=GAS).value)
    s.po.accept_order(oid, by=a.supplier, gas=GAS)
    s.po.ship_order(oid, [s.certify(oid, 1)], by=a.supplier, gas=GAS)
    return oid


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_watcher(deployment: Stack, order: int, clock: Clock, tmp_path: Path) -> Iterator[object]:
    made: list[WatcherStore] = []

    def make(grace: float = 60.0) -> Watcher:
        store = WatcherStore(tmp_path / "watch.sqlite")
        made.append(store)
        w = Watcher(
            ChainView(deployment.chain, deployment.contracts, deployment.deployment.block_number),
            deployment.contracts,
            deployment.accounts.buyer,
            store,
            WatcherConfig((order,), grace_secs=grace, refresh_secs=0.0),
            clock=clock,
        )
        w.start()
        return w

    yield make
    for store in made:
        store.close()


def message(
    s: Stack, order_id: int, seq: int, t: int, temp: int = IN_RANGE, n: int = 1
) -> tuple[str, bytes]:
    """Device ``n``'s reading ``seq`` at ``t`` (Rotterdam is far: never arriving)."""
    r = Reading(order_id, seq, t, temp, 500, 100, 10_000_000, 10_000_000, 0)
    sr = signed(r, s.domain, device_key(n))
    return telemetry_topic(order_id, sr.device), encode_message(sr)


def test_a_reading_is_stored_only_when_signed_by_a_device_bound_to_the_order(
    deployment: Stack, order: int, make_watcher: object
) -> None:
    w = make_watcher()  # type: ignore[operator]
    t = deployment.chain.now() + 10
    assert w.handle(*message(deployment, order, 1, t)) == "stored"
    assert w.handle(*message(deployment, order, 1, t)) == "duplicate"
    # the same seq signed again with other values: the first one stays
    assert w.handle(*message(deployment, order, 1, t, temp=600)) == "conflicting_seq"
    # device 2 signs properly but is not bound to the order
    assert w.handle(*message(deployment, order, 1, t, n=2)) == "unbound_device"
    # device 1's topic and address, someone else's signature
    topic, payload = message(deployment, order, 2, t + 60, n=2)
    body = json.loads(payload)
    body["device"] = device(1)
    forged = json.dumps(body).encode()
    assert w.handle(telemetry_topic(order, device(1)), forged) == "bad_signature"
    # a reading for an order this watcher does not watch, malformed and oversized ones
    assert w.handle(*message(deployment, order + 1, 1, t)) == "not_watched"
    assert w.handle(telemetry_topic(order, device(1)), b"{not json") == "malformed_json"
    assert w.handle(telemetry_topic(order, device(1)), b" " * 5000) == "oversized"
    assert w.refusals(order) == {
        "conflicting_seq": 1,
        "unbound_device": 1,
        "bad_signature": 1,
        "malformed_json": 1,
        "oversized": 1,
    }
    held = w.store.device_readings(order)
    assert [(r.seq, r.temperature_centi_c) for r in held[device(1)]] == [(1, IN_RANGE)]


def test_seq_gaps_are_reported_and_filled_by_late_readings(
    deployment: Stack, order: int, make_watcher: object
) -> None:
    w = make_watcher()  # type: ignore[operator]
    t = deployment.chain.now() + 10
    for seq in (1, 2, 5, 9):
        w.handle(*message(deployment, order, seq, t + 60 * seq))
    assert w.gaps(order) == {device(1): [(3, 4), (6, 8)]}
    w.handle(*message(deployment, order, 4, t + 240))
    assert w.gaps(order) == {device(1): [(3, 3), (6, 8)]}
    assert w.gaps_seen[(order, device(1))] == [(3, 4), (6, 8)]


def _excursion(s: Stack, order_id: int, w: Watcher, t: int) -> None:
    """In range, then five warm readings ten minutes apart (40 min; 30 tolerated)."""
    w.handle(*message(s, order_id, 1, t))
    for i in range(5):
        w.handle(*message(s, order_id, 2 + i, t + 600 * (i + 1), temp=WARM))


def _held_excursion(s: Stack, order_id: int, w: Watcher) -> ProveExcursion:
    """:func:`_excursion` from ten seconds past the chain's clock; the breach evidence
    the watcher then holds."""
    _excursion(s, order_id, w, s.chain.now() + 10)
    pending = w.breach[order_id].action
    assert isinstance(pending, ProveExcursion)
    return pending


def test_the_watcher_holds_a_breach_for_the_grace_then_proves_it_with_its_own_key(
    deployment: Stack, order: int, make_watcher: object, clock: Clock
) -> None:
    w = make_watcher(grace=300)  # type: ignore[operator]
    pending = _held_excursion(deployment, order, w)
    # exactly the oracle's evidence: the shortest run longer than tolerated
    view = w.orders[order]
    window = w.windows[(order, device(1))]
    last = window.by_seq[6]
    rules = OrderTerms.from_terms(order, "Shipped", False, view.shipped_at, view.terms)
    expected = excursion_evidence(window.by_seq, last, rules, lambda ts: True)
    assert expected is not None
    assert (pending.first_seq, pending.last_seq) == (expected[0].seq, expected[-1].seq) == (2, 6)
    assert w.tick() == []  # grace not over: nothing sent
    assert not deployment.po.get_order(order).breached
    clock.now += 301
    (s,) = w.tick()
    assert (s.kind, s.outcome) == ("prove_excursion", PROVEN)
    assert deployment.po.get_order(order).breached
    logs = deployment.qv.contract.events.ExcursionProven().get_logs(
        from_block=0, argument_filters={"orderId": order}
    )
    assert [log["args"]["submitter"] for log in logs] == [deployment.accounts.buyer.address]
    assert order not in w.breach and w.tick() == []


def test_a_breach_proven_by_someone_else_is_not_sent_again(
    deployment: Stack, order: int, make_watcher: object, clock: Clock
) -> None:
    w = make_watcher(grace=300)  # type: ignore[operator]
    pending = _held_excursion(deployment, order, w)
    # someone (the oracle) proves it first, with the same readings
    evidence = w.store.signed(list(pending.reading_ids))
    cert = w.orders[order].bindings[device(1)].certificate
    deployment.qv.prove_excursion(
        order, w.orders[order].terms, evidence, cert, by=deployment.accounts.supplier
    )
    forced = w.prove_breach_now(order)
    assert (forced.outcome, forced.tx_hash) == (ALREADY_DONE, None)
    assert "QualityVerificationAlreadyBreached" in forced.detail
    clock.now += 301
    (s,) = w.tick()
    assert s.outcome == PROVEN_BY_ANOTHER
    assert [x.outcome for x in w.store.submissions(order)] == [ALREADY_DONE, PROVEN_BY_ANOTHER]


def test_evidence_held_across_a_restart_and_too_late_once_delivered(
    deployment: Stack, order: int, make_watcher: object, clock: Clock
) -> None:
    w = make_watcher(grace=300)  # type: ignore[operator]
    _excursion(deployment, order, w, deployment.chain.now() + 10)
    w.store.close()
    again = make_watcher(grace=300)  # type: ignore[operator]
    assert isinstance(again.breach[order].action, ProveExcursion)  # re-evaluated from its record
    deployment.po.confirm_receipt(order, by=deployment.accounts.buyer, gas=GAS)
    clock.now += 301
    (s,) = again.tick()
    assert s.outcome == MISSED
    assert not deployment.po.get_order(order).breached


def test_the_contracts_come_from_purchase_orders_on_chain(
    deployment: Stack, tmp_path: Path
) -> None:
    a = deployment.deployment.addresses
    answer = {
        "chain_id": deployment.chain.chain_id,
        "contracts": {"PurchaseOrders": a["PurchaseOrders"]},
        "start_block": 3,
    }
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(answer))
    contracts, start = contracts_of(deployment.chain, path)
    assert (contracts.quality.address, contracts.escrow.address, start) == (
        a["QualityVerification"],
        a["Escrow"],
        3,
    )
    # a file naming another QualityVerification than PurchaseOrders uses is refused
    answer["contracts"]["QualityVerification"] = a["Escrow"]
    path.write_text(json.dumps(answer))
    with pytest.raises(Exception, match="PurchaseOrders uses"):
        contracts_of(deployment.chain, path)
