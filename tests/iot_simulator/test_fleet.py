"""Devices, signatures, seq numbering and the store-and-forward message order."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from backend.telemetry import Domain, decode_message, device_address, recover_device
from iot_simulator import ScenarioError, build_fleet, load_scenario
from iot_simulator.keys import derive_key
from iot_simulator.scenario import parse_scenario
from tests.iot_simulator.helpers import DOMAIN, SCENARIOS, T0, minimal_scenario


def test_signatures_recover_to_the_device_address() -> None:
    sc = load_scenario(SCENARIOS / "connectivity_gap.yaml")
    fleet = build_fleet(sc, DOMAIN, {"berries": 7}, T0)
    devices = set(fleet.devices_of("berries"))
    n = 0
    for _, topic, payload in fleet.messages():
        if topic.endswith("/telemetry"):
            s = decode_message(payload, topic)
            assert recover_device(s.reading, DOMAIN, s.signature) == s.device
            assert s.device in devices and s.reading.order_id == 7
            n += 1
    assert n == sc.reading_count(sc.orders[0]) * 2


def test_a_different_domain_recovers_someone_else() -> None:
    sc = load_scenario(SCENARIOS / "on_time_clean.yaml")
    msg = next(m for m in build_fleet(sc, DOMAIN, None, T0).messages() if m.kind == "telemetry")
    assert msg.reading is not None
    other = Domain(1, DOMAIN.verifying_contract)
    assert recover_device(msg.reading.reading, other, msg.reading.signature) != msg.device


def test_keys_are_derived_from_the_seed() -> None:
    sc = load_scenario(SCENARIOS / "on_time_clean.yaml")
    a = build_fleet(sc, DOMAIN, None, T0)
    b = build_fleet(sc, DOMAIN, None, T0 + 5)
    assert [d.address for d in a.devices] == [d.address for d in b.devices]
    assert a.devices[0].address == device_address(derive_key(sc.seed, "mangoes", 0))
    reseeded = build_fleet(sc.model_copy(update={"seed": 1}), DOMAIN, None, T0)
    assert {d.address for d in reseeded.devices}.isdisjoint(d.address for d in a.devices)
    assert len({d.address for d in a.devices}) == len(a.devices)


def test_message_stream_is_deterministic_and_time_ordered() -> None:
    sc = load_scenario(SCENARIOS / "spoofed_device.yaml")
    one = [(m.time, m.topic, m.payload) for m in build_fleet(sc, DOMAIN, None, T0).messages()]
    two = [tuple(m) for m in build_fleet(sc, DOMAIN, None, T0).messages()]
    assert one == two
    times = [t for t, _, _ in one]
    assert times == sorted(times) and times[0] == T0


def test_store_and_forward_keeps_seq_order_and_loses_nothing() -> None:
    sc = load_scenario(SCENARIOS / "connectivity_gap.yaml")
    fleet = build_fleet(sc, DOMAIN, None, T0)
    order = sc.orders[0]
    seqs: dict[str, list[int]] = defaultdict(list)
    late: dict[str, list[tuple[int, int]]] = defaultdict(list)  # (sent, measured)
    statuses: dict[str, list[str]] = defaultdict(list)
    for m in fleet.messages():
        if m.kind == "telemetry":
            assert m.reading is not None
            r = m.reading.reading
            seqs[m.device].append(r.seq)
            if m.time != r.timestamp:
                late[m.device].append((m.time - T0, r.timestamp - T0))
        else:
            body = json.loads(m.payload)
            statuses[m.device].append(body["status"] + ("/will" if m.will else ""))
    n = sc.reading_count(order)
    for dev in fleet.devices_of("berries"):
        assert seqs[dev] == list(range(1, n + 1))  # every seq, once, in order
    d0, d1 = fleet.devices_of("berries")
    # both were offline 6h→10h: readings measured at 6h..9h50 are sent at 10h
    assert late[d0] == [(36000, t) for t in range(21600, 36000, 600)]
    # device 1 was also offline 12h→14h
    assert late[d1] == [(36000, t) for t in range(21600, 36000, 600)] + [
        (50400, t) for t in range(43200, 50400, 600)
    ]
    assert statuses[d0][0] == "online" and statuses[d0][-1] == "offline"
    assert statuses[d0].count("offline/will") == 1 and statuses[d1].count("offline/will") == 2


def test_readings_carry_the_scenario_time_and_the_route() -> None:
    sc = load_scenario(SCENARIOS / "on_time_clean.yaml")
    fleet = build_fleet(sc, DOMAIN, None, T0)
    dev = fleet.devices[0]
    readings = [sr.reading for _, sr in fleet.readings(dev)]
    assert [r.timestamp for r in readings] == [T0 + 900 * k for k in range(1, len(readings) + 1)]
    first = readings[0]
    assert 18_900_000 < first.latitude_e6 < 19_100_000  # just off Nhava Sheva
    dest = fleet.trajectories["mangoes"].destination_e6
    assert (readings[-1].latitude_e6, readings[-1].longitude_e6) != (0, 0)
    assert abs(readings[-1].latitude_e6 - dest[0]) <= 20_000


def test_spoofers_are_not_bound_and_sign_with_their_own_key() -> None:
    sc = load_scenario(SCENARIOS / "spoofed_device.yaml")
    fleet = build_fleet(sc, DOMAIN, {"tapas": 3}, T0)
    bound = set(fleet.devices_of("tapas"))
    spoofed = [m for m in fleet.messages() if m.device not in bound]
    assert len(spoofed) == 9 and all(m.kind == "telemetry" for m in spoofed)
    own, imp = fleet.spoofers
    for m in spoofed:
        assert m.reading is not None
        s = decode_message(m.payload, m.topic)
        signer = recover_device(s.reading, DOMAIN, s.signature)
        assert signer == m.device and signer not in bound
        if m.device == imp.address:  # claims to be the real logger
            assert s.device == fleet.devices_of("tapas")[0] and f"/{s.device}/" in m.topic
        else:
            assert s.device == own.address


def test_order_ids_must_match_the_scenario() -> None:
    sc = parse_scenario(minimal_scenario())
    with pytest.raises(ScenarioError, match="no on-chain order id for order"):
        build_fleet(sc, DOMAIN, {}, T0)
    with pytest.raises(ScenarioError, match="unknown order"):
        build_fleet(sc, DOMAIN, {"box": 1, "crate": 2}, T0)
    with pytest.raises(ScenarioError, match="does not fit in uint256"):
        build_fleet(sc, DOMAIN, {"box": 2**256}, T0)
    assert build_fleet(sc, DOMAIN, {"box": 2**256 - 1}, T0).devices[0].order_id == 2**256 - 1


def test_fleet_exposes_what_a_driver_needs() -> None:
    sc = load_scenario(SCENARIOS / "fleet_50.yaml")
    fleet = build_fleet(sc, DOMAIN, None, T0)
    assert len(fleet.devices) == 50
    assert fleet.deadline("o01") == T0 + sc.orders[0].terms.deadline_s
    assert fleet.end_time == T0 + max(sc.duration_for(o) for o in sc.orders)
