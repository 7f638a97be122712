"""Loading refuses bad scenarios with an error that names the field and says why."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_simulator.scenario import ScenarioError, load_scenario, parse_scenario
from tests.iot_simulator.helpers import minimal_scenario


def _fails(data: Any) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, source="test.yaml")
    return str(info.value)


def test_minimal_scenario_is_valid() -> None:
    sc = parse_scenario(minimal_scenario())
    assert sc.orders[0].name == "box"
    assert sc.arrival_offset(sc.orders[0]) == 10800


def _patched(path: str, value: Any) -> dict[str, Any]:
    data = minimal_scenario()
    node: Any = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()

CASES = [
    # (path to patch, new value, text the error must contain)
    ("orders.0.terms.colour", "blue", "orders[box].terms.colour: Extra inputs are not permitted"),
    ("orders.0.terms.price", _DELETE, "orders[box].terms.price: Field required"),
    ("orders.0.terms.price", -5, "orders[box].terms.price: Input should be greater than 0"),
    ("orders.0.terms.price", 1.5, "orders[box].terms.price"),
    ("orders.0.terms.token", "DOGE", "orders[box].terms.token: 'DOGE' is neither ETH nor TUSD"),
    (  # a real address with its last characters mistyped: the checksum catches it
        "orders.0.terms.token",
        "0x05B1f6fCF6B7c1a62dE3140e1F3efc98BCC34c7A",
        "terms.token: token 0x05B1f6fCF6B7c1a62dE3140e1F3efc98BCC34c7A has a wrong EIP-55",
    ),
    ("orders.0.expected.state", "Resolved", "expected.state: Resolved needs actions.dispute"),
    ("orders.0.expected.state", "Vanished", "orders[box].expected.state: Input should be"),
    ("orders.0.actions", {"expire": True}, "expected.state: Settled needs no actions"),
    ("orders.0.actions", {"cancel": "arbiter"}, "orders[box].actions.cancel: Input should be"),
    ("orders.0.expected.late_s", _DELETE, "expected.late_s: a Settled order was delivered"),
    ("orders.0.terms.breach_refund_bps", 12000, "orders[box].terms.breach_refund_bps"),
    (
        "orders.0.terms.max_temp_centi_c",
        100,
        "min_temp_centi_c (200) must be below max_temp_centi_c",
    ),
    ("orders.0.route.1", "atlantis", "route[1]: unknown place 'atlantis'"),
    ("orders.0.route", ["rotterdam"], "orders[box].route: List should have at least 2 items"),
    (
        "orders.0.expected.buyer",
        5,
        "expected: buyer + supplier = 1000005 but terms.price = 1000000",
    ),
    ("orders.0.arrive_after_s", 60, "orders[box].arrive_after_s: 60s for"),
    ("orders.0.duration_s", 600, "orders[box].duration_s: 600 ends before the arrival reading"),
    ("orders.0.sensors.set_point_centi_c", 790, "orders[box].sensors.set_point_centi_c"),
    ("orders.0.sensors.vibration_milli_g", [10, 9000], "orders[box].sensors.vibration_milli_g"),
    ("orders.0.timeline", [{"event": "meteor", "at_s": 5}], "orders[box].timeline[0]"),
    (
        "orders.0.timeline",
        [{"event": "shock", "at_s": 5, "milli_g": 9000, "device": 2}],
        "timeline[0].device: 2 but the order has 2 device(s)",
    ),
    (
        "orders.0.timeline",
        [{"event": "door_open", "at_s": 50, "duration_s": -1}],
        "orders[box].timeline[0].duration_s: Input should be greater than 0",
    ),
    (
        "orders.0.timeline",
        [{"event": "shock", "at_s": 999999, "milli_g": 9000}],
        "orders[box].timeline[0].at_s: 999999 is after the last reading",
    ),
    ("orders.0.name", "has space", "orders[has space].name: String should match pattern"),
    ("orders.0.devices", 0, "orders[box].devices: Input should be greater than or equal to 1"),
    ("speed", 0, "speed: Input should be greater than 0"),
    ("parties.buyer", _DELETE, "parties.buyer: Field required"),
    ("colour", "blue", "colour: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), CASES, ids=[c[0] + ":" + c[2][:30] for c in CASES]
)
def test_bad_field_is_named(path: str, value: Any, message: str) -> None:
    assert message in _fails(_patched(path, value))


def test_route_starting_inside_the_geofence() -> None:
    data = minimal_scenario(route=["rotterdam", {"name": "next door", "lat": 51.95, "lon": 4.06}])
    assert "orders[box].route: the route starts inside the destination geofence" in _fails(data)


def test_duplicate_order_names() -> None:
    data = minimal_scenario()
    data["orders"].append(copy.deepcopy(data["orders"][0]))
    assert "order name 'box' appears twice" in _fails(data)


def test_extension_keys_are_ignored() -> None:
    data = minimal_scenario()
    data["x-anchors"] = {"anything": 1}
    assert parse_scenario(data).orders[0].name == "box"


def test_not_a_mapping() -> None:
    assert "a scenario is a YAML mapping" in _fails([1, 2])


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text(yaml.safe_dump(minimal_scenario()) + "seed: 43\n")
    with pytest.raises(ScenarioError, match="duplicate key 'seed'"):
        load_scenario(dup)


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    f = tmp_path / "my_run.yaml"
    f.write_text(yaml.safe_dump(minimal_scenario()))
    assert load_scenario(f).name == "my_run"


def test_terms_map_to_the_contract_struct() -> None:
    sc = parse_scenario(minimal_scenario())
    o = sc.orders[0]
    terms = o.terms.to_contract(
        t0=1000, destination_e6=o.destination_e6, token_address="0x" + "00" * 20, arbiter="0xA"
    )
    assert list(terms) == [
        "buyer", "supplier", "token", "price", "deliveryDeadline", "expiryGraceSecs",
        "destLatE6", "destLonE6",
        "geofenceE6", "minTempCentiC", "maxTempCentiC", "maxHumidityPermille", "maxShockMilliG",
        "toleratedExcursionSecs", "latePenaltyBpsPerHour", "latePenaltyCapBps", "breachRefundBps",
        "disputeWindowSecs", "arbiter", "deviceIssuer", "secondDeviceIssuer", "arrivalQuorum",
    ]  # fmt: skip
    assert terms["deliveryDeadline"] == 1000 + 14400
    assert (terms["destLatE6"], terms["destLonE6"]) == (51434400, 6762300)  # Duisburg


def test_every_final_state_can_be_stated() -> None:
    price = minimal_scenario()["orders"][0]["terms"]["price"]
    full_refund = {"buyer": price, "supplier": 0}
    cases = {
        "Cancelled": ({"cancel": "supplier"}, {"state": "Cancelled", **full_refund}, {}),
        "Expired": ({"expire": True}, {"state": "Expired", **full_refund}, {"duration_s": 3600}),
        "Resolved": (
            {"dispute": "buyer", "ruling_buyer": 250_000},
            {"state": "Resolved", "buyer": 250_000, "supplier": price - 250_000, "late_s": 0},
            {},
        ),
    }
    for state, (actions, expected, extra) in cases.items():
        data = minimal_scenario(actions=actions, expected=expected, **extra)
        if state == "Resolved":
            data["orders"][0]["terms"]["dispute_window_s"] = 3600
        sc = parse_scenario(data)
        assert sc.orders[0].expected.state == state


def test_the_actions_must_lead_to_the_stated_outcome() -> None:
    price = minimal_scenario()["orders"][0]["terms"]["price"]
    problems = {
        # a ruling without a dispute window: the split was final at delivery
        "terms.dispute_window_s is 0": minimal_scenario(
            actions={"dispute": "buyer", "ruling_buyer": 1},
            expected={"state": "Resolved", "buyer": 1, "supplier": price - 1, "late_s": 0},
        ),
        "the ruling gives the buyer 7": minimal_scenario(
            actions={"dispute": "buyer", "ruling_buyer": 7},
            expected={"state": "Resolved", "buyer": 1, "supplier": price - 1, "late_s": 0},
        ),
        "refunds the buyer in full": minimal_scenario(
            actions={"cancel": "buyer"},
            expected={"state": "Cancelled", "buyer": 1, "supplier": price - 1},
        ),  # fmt: skip
        "must never arrive": minimal_scenario(
            actions={"expire": True}, expected={"state": "Expired", "buyer": price, "supplier": 0}
        ),
        "cannot both happen": minimal_scenario(
            actions={"expire": True, "cancel": "buyer"},
            expected={"state": "Expired", "buyer": price, "supplier": 0},
        ),
    }
    for message, data in problems.items():
        assert message in _fails(data), message


def test_a_lower_case_token_address_is_accepted_and_checksummed() -> None:
    data = minimal_scenario()
    data["orders"][0]["terms"]["token"] = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    sc = parse_scenario(data)
    assert sc.orders[0].terms.token == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
