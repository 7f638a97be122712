"""TrustShip's IoT sensor fleet simulator (docs/simulator.md).

Library API (used by ``trustship demo`` / ``replay``)::

    scenario = load_scenario("scenarios/cold_chain_breach.yaml")
    fleet = build_fleet(scenario, Domain(chain_id, qv_address), {"main": 1}, t0=now)
    for msg in fleet.messages():          # (time, topic, payload) in send order
        ...
    publish(fleet, "mqtt://127.0.0.1:1883", speed=3600)

It imports nothing from ``backend`` but ``backend.telemetry``, which re-exports the
shared error root (``backend.telemetry.TrustShipError``); an import-linter contract
in pyproject.toml holds it to that.
"""

from iot_simulator.broker import start_embedded_broker
from iot_simulator.fleet import Device, Fleet, Message, build_fleet
from iot_simulator.publisher import PublishError, PublishStats, Retention, publish
from iot_simulator.scenario import Scenario, ScenarioError, load_scenario, resolve_scenario_path

__all__ = [
    "Device",
    "Fleet",
    "Message",
    "PublishError",
    "PublishStats",
    "Retention",
    "Scenario",
    "ScenarioError",
    "build_fleet",
    "load_scenario",
    "publish",
    "resolve_scenario_path",
    "start_embedded_broker",
]
