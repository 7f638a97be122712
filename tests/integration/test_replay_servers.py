"""The scenario catalogue on real servers: anvil, mosquitto and PostgreSQL.

`trustship replay` runs with RPC_URL, MQTT_URL and DATABASE_URL set, so the oracle
runs in the replay's process against those servers: telemetry crosses a real broker,
evidence and settlements are real transactions on anvil, the oracle's state lives in
PostgreSQL. Every scenario must settle by itself exactly as it states.
(scripts/compose_smoke.sh replays it once more through the REST API of the
docker-compose stack, with the broker's auth and ACL: docs/compose.md.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.databases import fresh_postgres_database
from testkit.servers import Server, start_anvil, start_mosquitto
from tests.trustship.test_replay import CATALOGUE, describe, embedded_env, replay

pytestmark = pytest.mark.integration


@pytest.fixture
def anvil() -> Iterator[Server]:
    server = start_anvil("--gas-limit", "100000000")
    yield server
    server.stop()


@pytest.fixture
def mosquitto() -> Iterator[Server]:
    server = start_mosquitto("allow_anonymous true\nmax_queued_messages 200000\n")
    yield server
    server.stop()


def test_the_catalogue_settles_as_expected_on_anvil_mosquitto_postgresql(
    tmp_path: Path, anvil: Server, mosquitto: Server
) -> None:
    with fresh_postgres_database() as database_url:
        env = embedded_env(tmp_path)
        env.update(
            RPC_URL=anvil.extra["url"],
            MQTT_URL=mosquitto.extra["url"],
            DATABASE_URL=database_url,
            ORACLE_SHARE_GROUP="replay-test",
        )
        code, summary = replay(CATALOGUE, env)
    assert code == 0, describe(summary) + "\n" + mosquitto.log_tail()
    assert summary["passed"] is True
    assert {sc["name"] for sc in summary["scenarios"]} == {p.stem for p in CATALOGUE}
    assert sum(len(sc["orders"]) for sc in summary["scenarios"]) >= 58
    assert Path(env["DEPLOYMENT_FILE"]).is_file()  # a real chain keeps its manifest
