"""`trustship replay` and `trustship demo` on the embedded defaults (eth-tester, the
in-process amqtt broker, SQLite): every scenario of the catalogue settles on-chain by
itself exactly as it states, and a wrong expectation fails the run.

The same catalogue runs on real servers in tests/integration/test_replay_servers.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = sorted((REPO / "scenarios").glob("*.yaml"))


def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RPC_URL", "MQTT_URL", "DATABASE_URL", "TRUSTSHIP_API_URL"}
    }
    env["DEPLOYMENT_FILE"] = str(tmp_path / "deployment.json")
    return env


def replay(files: list[Path], env: dict[str, str], timeout: float = 600) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "trustship.cli", "replay", *map(str, files), "--json",
         "--speed", "max"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"replay printed no JSON (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        ) from None
    return proc.returncode, summary


def describe(summary: dict) -> str:
    lines = []
    for sc in summary["scenarios"]:
        bad = [o for o in sc["orders"] if not o["passed"]]
        lines.append(f"{sc['name']}: passed={sc['passed']} error={sc['error']} failing={bad[:3]}")
    return "\n".join(lines)


def test_the_catalogue_settles_as_expected_on_the_embedded_stack(tmp_path: Path) -> None:
    assert len(CATALOGUE) >= 9
    env = embedded_env(tmp_path)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'catalogue.db'}"  # kept for the exports
    code, summary = replay(CATALOGUE, env)
    assert code == 0, describe(summary)
    assert summary["passed"] is True
    names = {sc["name"] for sc in summary["scenarios"]}
    assert {p.stem for p in CATALOGUE} == names
    orders = [o for sc in summary["scenarios"] for o in sc["orders"]]
    assert len(orders) >= 58  # fleet_50 alone has 50
    for o in orders:
        assert o["state"] == o["expected_state"]
        assert (o["buyer"], o["supplier"]) == (o["expected_buyer"], o["expected_supplier"])
        assert o["breach"] == o["expected_breach"] and o["late_s"] == o["expected_late_s"]
    # every final state the contracts have is reached by some scenario
    assert {o["state"] for o in orders} == {"Settled", "Resolved", "Expired", "Cancelled"}
    by_name = {sc["name"]: sc for sc in summary["scenarios"]}
    assert by_name["spoofed_device"]["orders"][0]["breach"] is False  # forged readings ignored
    assert by_name["cold_chain_breach"]["orders"][0]["breach"] is True
    check_epcis_exports(summary, env, tmp_path)


def check_epcis_exports(summary: dict, env: dict[str, str], tmp_path: Path) -> None:
    """Every order of the catalogue exports as an EPCIS 2.0 document that GS1's schema
    accepts, with event IDs equal to GS1's reference event hash (docs/epcis.md)."""
    from epcis_event_hash_generator import hash_generator, json_to_py

    from backend.core.settings import Settings
    from backend.sharing.schema import load_schema
    from trustship.export import document_from_database

    settings = Settings(DATABASE_URL=env["DATABASE_URL"], _env_file=None)  # type: ignore[call-arg]
    schema = load_schema(settings.EPCIS_SCHEMA_DIR)
    steps: set[tuple[str, str]] = set()
    alarms = 0
    for sc in summary["scenarios"]:
        for order in sc["orders"]:
            status, doc = document_from_database(settings, order["order_id"])
            assert status == 200, (sc["name"], doc)
            # jsonschema alone, and jsonschema-rs (what the API asks first) agrees
            assert schema.violations_of(doc) == [], (sc["name"], order["order_id"])
            assert schema.is_valid(doc), (sc["name"], order["order_id"])
            events = doc["epcisBody"]["eventList"]
            reference = json_to_py.event_list_from_epcis_document_json(json.loads(json.dumps(doc)))
            assert [e["eventID"] for e in events] == hash_generator.epcis_hashes_from_events(
                reference
            ), (sc["name"], order["order_id"])
            steps |= {(e["bizStep"], e["disposition"]) for e in events}
            alarms += sum(
                1
                for e in events
                for el in e.get("sensorElementList", [])
                for r in el["sensorReport"]
                if r.get("exception") == "ALARM_CONDITION"
            )
            if order["state"] == "Cancelled":
                assert events == []
    assert {("shipping", "in_transit"), ("sensor_reporting", "in_transit"),
            ("receiving", "in_progress"), ("receiving", "non_conformant")} <= steps  # fmt: skip
    assert alarms > 0  # the breaches of the catalogue show as alarm reports
    # the CLI writes the same document
    first = summary["scenarios"][0]["orders"][0]["order_id"]
    out = tmp_path / "order.epcis.json"
    proc = subprocess.run(
        [sys.executable, "-m", "trustship.cli", "export", str(first), "--format", "epcis",
         "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == document_from_database(settings, first)[1]


def test_a_wrong_expectation_fails_the_replay(tmp_path: Path) -> None:
    scenario = yaml.safe_load((REPO / "scenarios/rough_handling.yaml").read_text())
    expected = scenario["orders"][0]["expected"]
    expected["buyer"] += 1  # one wei more than the terms give
    expected["supplier"] -= 1
    wrong = tmp_path / "rough_handling_wrong.yaml"
    wrong.write_text(yaml.safe_dump(scenario, sort_keys=False))
    code, summary = replay([wrong], embedded_env(tmp_path))
    assert code == 1
    [sc] = summary["scenarios"]
    [order] = sc["orders"]
    assert sc["passed"] is False and order["passed"] is False
    assert order["state"] == "Settled"
    assert order["buyer"] == expected["buyer"] - 1  # the chain paid what the terms say


def test_demo_tells_the_story_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "demo.html"
    proc = subprocess.run(
        [sys.executable, "-m", "trustship.cli", "demo", "--report", str(report)],
        cwd=REPO, env=embedded_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for step in (
        "created and funded",
        "shipped with 2 certified device(s)",
        "still recoverable",  # an early warning before the limit was crossed
        "BREACH PROVEN ON-CHAIN",
        "ARRIVAL PROVEN ON-CHAIN",
        "19,200",  # the buyer's 40 % refund of 48,000 TUSD
        "28,800",
        "buyer withdrew 19,200 TUSD",
        "supplier withdrew 28,800 TUSD",
        "settled by itself",
    ):
        assert step in out, f"{step!r} missing from the demo output:\n{out[-3000:]}"
    html = report.read_text()
    assert "data:image/png;base64," in html and "BREACH PROVEN ON-CHAIN" in html


def test_the_same_scenario_twice_in_one_run_settles_both(tmp_path: Path) -> None:
    """Readings are unique per (order, device, seq): the second replay's orders are new
    orders, and the same devices with the same seqs are stored for them."""
    twice = [REPO / "scenarios/on_time_clean.yaml"] * 2
    code, summary = replay(twice, embedded_env(tmp_path))
    assert code == 0, describe(summary)
    first, second = summary["scenarios"]
    assert first["passed"] and second["passed"]
    assert set(first["order_ids"]).isdisjoint(second["order_ids"])


def test_an_invalid_file_stops_the_run_before_anything_runs(tmp_path: Path) -> None:
    scenario = yaml.safe_load((REPO / "scenarios/on_time_clean.yaml").read_text())
    scenario["orders"][0]["terms"]["max_temp_centi_c"] = "warm"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(scenario, sort_keys=False))
    code, summary = replay([REPO / "scenarios/on_time_clean.yaml", bad], embedded_env(tmp_path))
    assert code == 2
    assert summary["passed"] is False and summary["scenarios"] == []  # nothing ran
    [error] = summary["errors"]
    assert error["file"] == str(bad)
    assert "orders[mangoes].terms.max_temp_centi_c" in error["error"]


def test_an_order_that_does_not_end_as_expected_says_why(tmp_path: Path) -> None:
    scenario = yaml.safe_load((REPO / "scenarios/spoofed_device.yaml").read_text())
    expected = scenario["orders"][0]["expected"]
    expected["buyer"] += 1
    expected["supplier"] -= 1
    wrong = tmp_path / "spoofed_wrong.yaml"
    wrong.write_text(yaml.safe_dump(scenario, sort_keys=False))
    code, summary = replay([wrong], embedded_env(tmp_path))
    assert code == 1
    [order] = summary["scenarios"][0]["orders"]
    why = order["why"]
    assert why.startswith("chain: Settled"), why
    assert "reading(s) stored from 1 bound device(s)" in why
    # the spoofers' readings, refused by the oracle, with the reasons and the last one's text
    assert "refused 9 (" in why and "unknown_device" in why, why


def test_a_scenario_may_name_its_token_by_address(tmp_path: Path) -> None:
    """An explicit ERC-20 address (here the deployment's own test stablecoin, named by
    address instead of ``TUSD``) settles like the symbol would."""
    from iot_simulator.scenario import parse_scenario
    from testkit.settings import dev_settings
    from trustship.replay import replay_scenario
    from trustship.stack import local_stack

    data = yaml.safe_load((REPO / "scenarios/cold_chain_breach.yaml").read_text())
    with local_stack(dev_settings()) as stack:
        token = stack.driver.contracts.token
        assert token is not None
        data["orders"][0]["terms"]["token"] = token.address.lower()  # lower case: no checksum
        scenario = parse_scenario(data, "explicit-token")
        assert scenario.orders[0].terms.token == token.address  # stored checksummed
        report = replay_scenario(stack.driver, scenario, speed=float("inf"))
    assert report.passed, report.as_json()
    [order] = report.orders
    assert order.token == token.address and order.state == "Settled" and order.breach
