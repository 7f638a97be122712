"""`trustship serve` with DEV_MODE=false refuses public keys wherever a key is configured,
as the attacker started it: against a real anvil and PostgreSQL (issue 8, finding 2).

Each case must exit with the setting named on stderr before anything listens."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.chain.connection import dev_private_key
from backend.core.keys import DEV_PSEUDONYM_KEY
from backend.core.settings import DEV_ORACLE_PRIVATE_KEY
from testkit.databases import postgres_schema, schema_url
from testkit.servers import Server, free_port, start_anvil

pytestmark = pytest.mark.integration

#: anvil's well-known accounts 0 and 3 ("test test ... junk"), as an attacker would paste them
ANVIL_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_3 = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
OWN_ORACLE = "0x" + "5a" * 32
API_KEYS = [
    {
        "name": "acme",
        "key": "k3y-" + "Zq9" * 10,
        "roles": ["buyer"],
        "private_key": "0x" + "6b" * 32,
    }
]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Server]:
    server = start_anvil()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def manifest(anvil: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Contracts deployed on the anvil (dev mode), so a serve that accepts its keys starts."""
    path = tmp_path_factory.mktemp("serve-config") / "deployment.json"
    env = {**os.environ, "RPC_URL": anvil.extra["url"], "DEPLOYMENT_FILE": str(path)}
    env["DEV_MODE"] = "true"
    subprocess.run(
        [sys.executable, "-m", "trustship.cli", "deploy"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
        cwd=path.parent,
    )
    return path


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A PostgreSQL schema of its own (dropped after), as DATABASE_URL."""
    with postgres_schema("trustship_serve_config_") as schema:
        yield schema_url(schema)


@pytest.fixture
def serve(
    tmp_path: Path, anvil: Server, manifest: Path, database: str
) -> Callable[..., tuple[int, str]]:
    return lambda **env: _serve(tmp_path, anvil, manifest, database, **env)


def _serve(
    tmp_path: Path, anvil: Server, manifest: Path, database: str, **env: str
) -> tuple[int, str]:
    """Run `trustship serve` until it exits; fail if it starts listening instead."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if k != "DEPLOYER_PRIVATE_KEY"}
    full.update(
        RPC_URL=anvil.extra["url"],
        DATABASE_URL=database,
        DEPLOYMENT_FILE=str(manifest),
        MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",  # no broker: the API starts without one
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        DEV_MODE="false",
        ORACLE_PRIVATE_KEY=OWN_ORACLE,
        API_KEYS=json.dumps(API_KEYS),
        SHARING_PSEUDONYM_KEY="own pseudonym secret, 32 chars or more",
    )
    full.update(env)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trustship.cli", "serve"],
            cwd=tmp_path,
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pytest.fail(f"serve accepted a public key and listens on {port}")
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, log.read_text(errors="replace")


def _api_keys_with(private_key: str) -> str:
    return json.dumps(
        [
            *API_KEYS,
            {**API_KEYS[0], "name": "ops", "key": "k3y-" + "Xw7" * 10, "private_key": private_key},
        ]
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ORACLE_PRIVATE_KEY": DEV_ORACLE_PRIVATE_KEY[2:]}, "ORACLE_PRIVATE_KEY"),
        (
            {"ORACLE_PRIVATE_KEY": DEV_ORACLE_PRIVATE_KEY.upper().replace("0X", "0x")},
            "ORACLE_PRIVATE_KEY",
        ),
        ({"ORACLE_PRIVATE_KEY": ANVIL_0}, "ORACLE_PRIVATE_KEY"),
        ({"DEPLOYER_PRIVATE_KEY": DEV_ORACLE_PRIVATE_KEY}, "DEPLOYER_PRIVATE_KEY"),
        ({"DEPLOYER_PRIVATE_KEY": dev_private_key("admin")}, "DEPLOYER_PRIVATE_KEY"),
        ({"API_KEYS": _api_keys_with(DEV_ORACLE_PRIVATE_KEY)}, "API_KEYS[1].private_key"),
        (
            {"API_KEYS": _api_keys_with(ANVIL_3[2:].upper())},
            "API_KEYS[1].private_key",
        ),
    ],
    ids=[
        "oracle-dev-key-without-0x",
        "oracle-dev-key-upper-case",
        "oracle-anvil-account-0",
        "deployer-dev-oracle-key",
        "deployer-dev-admin-key",
        "api-keys-dev-oracle-key",
        "api-keys-anvil-account-3",
    ],
)
def test_serve_outside_dev_mode_refuses_public_keys(
    serve: Callable[..., tuple[int, str]], env: dict[str, str], named: str
) -> None:
    code, stderr = serve(**env)
    assert code == 2, stderr[-2000:]
    assert f"error: {named}" in stderr and "publicly known private key" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr


def test_serve_outside_dev_mode_starts_with_keys_of_its_own(
    serve: Callable[..., tuple[int, str]],
) -> None:
    """The control: the same configuration with no public key gets past the checks."""
    with pytest.raises(pytest.fail.Exception, match="listens on"):
        serve(DEPLOYER_PRIVATE_KEY="0x" + "7c" * 32)


def test_serve_outside_dev_mode_refuses_the_dev_pseudonym_key(
    serve: Callable[..., tuple[int, str]],
) -> None:
    """With the public dev key anyone could tell which device a pseudonym stands for."""
    code, stderr = serve(SHARING_PSEUDONYM_KEY=DEV_PSEUDONYM_KEY)
    assert code == 2, stderr[-2000:]
    assert "error: SHARING_PSEUDONYM_KEY is the public dev key" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr
