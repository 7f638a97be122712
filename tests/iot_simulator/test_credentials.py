"""The broker's access file (dynamic security): hashed passwords, one role per device,
private permissions, nothing in plain text."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from backend.telemetry.access import PBKDF2_ITERATIONS, BrokerAccess, device_role
from iot_simulator.credentials import CredentialsError, broker_access, device_credentials, main
from tests.iot_simulator.helpers import SCENARIOS


def _verify(client: dict, password: str) -> bool:
    salt = base64.b64decode(client["salt"])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, client["iterations"])
    return base64.b64encode(digest).decode() == client["password"]


def test_writes_every_user_hashed_with_its_role(tmp_path: Path) -> None:
    out = tmp_path / "auth" / "dynamic-security.json"
    assert (
        main(["--out", str(out), "--oracle-password", "s3cret", "--monitor", "health:h:pw",
              str(SCENARIOS)])
        == 0
    )  # fmt: skip
    config = json.loads(out.read_text())
    clients = {c["username"]: c for c in config["clients"]}
    expected = device_credentials(sorted(SCENARIOS.glob("*.yaml")))
    assert set(clients) == {"oracle", "health", *expected}
    assert _verify(clients["oracle"], "s3cret") and _verify(clients["health"], "h:pw")
    for address, pw in expected.items():
        assert _verify(clients[address], pw)
        assert clients[address]["roles"] == [{"rolename": device_role(address), "priority": 0}]
    assert all(c["iterations"] == PBKDF2_ITERATIONS for c in clients.values())
    assert "s3cret" not in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left behind
    # everything not granted is denied, subscriptions included
    assert set(config["defaultACLAccess"].values()) == {False, True}
    assert config["defaultACLAccess"]["subscribe"] is False


def test_a_device_may_publish_only_under_its_own_address() -> None:
    access = BrokerAccess()
    address = "0x5620A6Dc0000000000000000000000000000AbCd"
    access.add_device(address, "pw")
    (role,) = [r for r in access.config()["roles"] if r["rolename"] == device_role(address)]
    topics = {(a["acltype"], a["topic"]) for a in role["acls"]}
    assert topics == {
        ("publishClientSend", f"trustship/v1/orders/+/devices/{address}/#"),
        ("subscribePattern", f"trustship/v1/orders/+/devices/{address}/status"),
        ("publishClientReceive", f"trustship/v1/orders/+/devices/{address}/status"),
        # its own storage receipts, read only (backend/telemetry/receipts.py)
        ("subscribeLiteral", f"trustship/v1/receipts/{address}"),
        ("publishClientReceive", f"trustship/v1/receipts/{address}"),
    }


def test_only_the_oracle_role_may_publish_receipts() -> None:
    access = BrokerAccess()
    access.add_device("0x5620A6Dc0000000000000000000000000000AbCd", "pw")
    senders = {
        r["rolename"]
        for r in access.config()["roles"]
        for a in r["acls"]
        if a["acltype"] == "publishClientSend" and a["topic"].startswith("trustship/v1/receipts/")
    }
    assert senders == {"oracle"}


def test_only_the_oracle_role_may_join_the_share_group() -> None:
    access = BrokerAccess(share_group="g1")
    shares = {
        r["rolename"]
        for r in access.config()["roles"]
        for a in r["acls"]
        if a["topic"].startswith("$share/")
    }
    assert shares == {"oracle"}


def test_spoofers_only_on_request() -> None:
    f = [SCENARIOS / "spoofed_device.yaml"]
    assert len(device_credentials(f)) == 1
    assert len(device_credentials(f, include_spoofers=True)) == 3


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CredentialsError, match="1-128 characters"):
        broker_access(oracles={"a/b": "x"}, devices={})
    with pytest.raises(CredentialsError, match="defined twice"):
        broker_access(oracles={"oracle": "x"}, devices={}, monitors={"oracle": "y"})
    with pytest.raises(CredentialsError, match="cannot be empty"):
        broker_access(oracles={"oracle": ""}, devices={})
    assert main(["--out", str(tmp_path / "p"), "--oracle-password", "x", "missing.yaml"]) == 2
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "p"), "--oracle", "no-password"])
    assert "expected USER:PASSWORD" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_hands_the_file_and_its_directory_to_the_broker_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # mosquitto reads its files after dropping to its own user (1883 in the
    # eclipse-mosquitto image), and the plugin replaces its file (<file>.new, renamed):
    # the file and its directory must be that user's (docs/compose.md). As root (CI) they
    # go to that uid; otherwise to our own ids, all we may give.
    uid, gid = (1883, 1883) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    out = tmp_path / "auth" / "dynamic-security.json"
    argv = ["--out", str(out), "--oracle-password", "pw", "--owner", f"{uid}:{gid}"]
    assert main(argv) == 0
    assert f"owned by {uid}:{gid}" in capsys.readouterr().out
    for path, mode in ((out, 0o600), (out.parent, 0o700)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode), path
    assert main(argv) == 0  # written again over an existing file: same result
    st = out.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o600)
    assert [p.name for p in out.parent.iterdir()] == [out.name]


@pytest.mark.parametrize("bad", ["mosquitto", "1883:", "-1", ""])
def test_owner_is_numeric(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "f"), "--oracle-password", "pw", "--owner", bad])
    assert "--owner" in capsys.readouterr().err
