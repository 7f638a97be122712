"""Every scenario's stated settlement agrees with what its readings imply.

The rules of DESIGN.md §4 are implemented here again, independently of the
simulator's own predictor (iot_simulator.timeline): the test decodes the wire
messages, keeps readings whose signature recovers to a device bound to the
order, finds the delivery reading and the breaches, and settles.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest

from backend.telemetry import decode_message, recover_device
from iot_simulator import build_fleet, load_scenario
from iot_simulator.geo import PLACES
from iot_simulator.scenario import Order, Scenario
from tests.iot_simulator.helpers import DOMAIN, SCENARIOS, T0

REQUIRED = {
    "on_time_clean",
    "cold_chain_breach",
    "brief_excursion",
    "late_within_cap",
    "late_past_cap",
    "rough_handling",
    "connectivity_gap",
    "spoofed_device",
    "fleet_50",
}
FILES = sorted(SCENARIOS.glob("*.yaml"))


def test_catalogue_has_every_required_scenario() -> None:
    assert {p.stem for p in FILES} >= REQUIRED
    fleet = load_scenario(SCENARIOS / "fleet_50.yaml")
    assert len(fleet.orders) == 50


def _destination(order: Order) -> tuple[int, int]:
    last = order.route[-1]
    if isinstance(last, str):
        lat, lon = PLACES[last].lat, PLACES[last].lon
    else:
        lat, lon = last.lat, last.lon
    return round(lat * 1_000_000), round(lon * 1_000_000)


def _independent_settlement(
    sc: Scenario, order: Order, readings: dict[str, list], deadline: int
) -> tuple[str, int, int, bool, int | None]:
    """(final state, buyer, supplier, breach, seconds late or None if never delivered)."""
    t = order.terms
    if order.actions.cancel is not None:  # nothing ships: a full refund, no evidence
        return "Cancelled", t.price, 0, False, None
    dlat, dlon = _destination(order)
    g = t.geofence_e6
    arrivals = [
        r.timestamp
        for rs in readings.values()
        for r in rs
        if abs(r.latitude_e6 - dlat) <= g and abs(r.longitude_e6 - dlon) <= g
    ]
    if order.actions.expire:
        assert not arrivals, f"{sc.name}/{order.name}: an order that expires arrives"
    else:
        assert arrivals, f"{sc.name}/{order.name}: no reading inside the geofence"
    delivered = min(arrivals) if arrivals else 2**64
    breach = False
    for rs in readings.values():
        rs = sorted({r.seq: r for r in rs}.values(), key=lambda r: r.seq)
        run_start = None
        prev_seq = None
        for r in rs:
            if r.timestamp >= delivered:
                break
            if t.max_shock_milli_g and r.shock_milli_g > t.max_shock_milli_g:
                breach = True
            bad = not (t.min_temp_centi_c <= r.temperature_centi_c <= t.max_temp_centi_c) or (
                t.max_humidity_permille != 0 and r.humidity_permille > t.max_humidity_permille
            )
            if bad and run_start is not None and prev_seq == r.seq - 1:
                if r.timestamp - run_start.timestamp > t.tolerated_excursion_s:
                    breach = True
            elif bad:
                run_start = r
            else:
                run_start = None
            prev_seq = r.seq
    if order.actions.expire:  # never delivered: the buyer reclaims the whole deposit
        return "Expired", t.price, 0, breach, None
    late = max(0, delivered - deadline)
    if order.actions.ruling_buyer is not None:  # the arbiter's split, not the terms'
        ruling = order.actions.ruling_buyer
        return "Resolved", ruling, t.price - ruling, breach, late
    late_bps = min(t.late_penalty_cap_bps, math.ceil(late / 3600) * t.late_penalty_bps_per_hour)
    refund = min(10_000, late_bps + (t.breach_refund_bps if breach else 0))
    buyer = t.price * refund // 10_000
    return "Settled", buyer, t.price - buyer, breach, late


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_stated_expectation_matches_the_readings(path: Path) -> None:
    sc = load_scenario(path)
    ids = {o.name: 100 + i for i, o in enumerate(sc.orders)}
    fleet = build_fleet(sc, DOMAIN, ids, T0)
    by_order: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    bound = {ids[o.name]: set(fleet.devices_of(o.name)) for o in sc.orders}
    rejected = 0
    for time_, topic, payload in fleet.messages():
        if topic.endswith("/status"):
            continue
        signed = decode_message(payload, topic)
        signer = recover_device(signed.reading, DOMAIN, signed.signature)
        oid = signed.reading.order_id
        if signer != signed.device or signer not in bound[oid]:
            rejected += 1
            continue
        assert time_ >= signed.reading.timestamp  # sent at or after it was measured
        by_order[oid][signer].append(signed.reading)
    assert rejected == sum(sp.count for o in sc.orders for sp in o.spoofers)
    for o in sc.orders:
        got = _independent_settlement(sc, o, by_order[ids[o.name]], T0 + o.terms.deadline_s)
        e = o.expected
        assert got == (e.state, e.buyer, e.supplier, e.breach, e.late_s), f"{sc.name}/{o.name}"


def test_the_checker_can_disagree() -> None:
    """Guard against a checker that agrees with anything: a tampered expectation fails."""
    sc = load_scenario(SCENARIOS / "cold_chain_breach.yaml")
    fleet = build_fleet(sc, DOMAIN, None, T0)
    order = sc.orders[0]
    readings: dict[str, list] = defaultdict(list)
    for _, topic, payload in fleet.messages():
        if topic.endswith("/telemetry"):
            s = decode_message(payload, topic)
            readings[s.device].append(s.reading)
    got = _independent_settlement(sc, order, readings, T0 + order.terms.deadline_s)
    assert got[3] is True  # the breach scenario breaches
    relaxed = order.model_copy(
        update={"terms": order.terms.model_copy(update={"tolerated_excursion_s": 10**6})}
    )
    assert _independent_settlement(sc, relaxed, readings, T0 + order.terms.deadline_s)[3] is False
