"""The broker password file: hashed by mosquitto_passwd, nothing left in plain text,
readable by the broker's own user and nobody else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from iot_simulator.credentials import (
    CredentialsError,
    Owner,
    device_credentials,
    main,
    write_password_file,
)
from tests.iot_simulator.helpers import SCENARIOS


def test_writes_hashed_users(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "auth" / "passwords"
    assert main(["--out", str(out), "--oracle-password", "s3cret", str(SCENARIOS)]) == 0
    lines = out.read_text().splitlines()
    users = [line.split(":", 1)[0] for line in lines]
    expected = device_credentials(sorted(SCENARIOS.glob("*.yaml")))
    assert users[0] == "oracle" and set(users[1:]) == set(expected)
    assert all(line.split(":", 1)[1].startswith("$7$") for line in lines)  # PBKDF2-SHA512
    assert "s3cret" not in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == ["passwords"]  # no plain-text temp file
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # private even without --owner


def test_hands_the_file_and_its_directory_to_the_broker_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # mosquitto reads its files after dropping to its own user (1883 in the
    # eclipse-mosquitto image): a root-owned file is unreadable to it (docs/compose.md).
    # As root (CI) the file goes to that uid; otherwise to our own ids, all we may give.
    uid, gid = (1883, 1883) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    out = tmp_path / "auth" / "passwords"
    argv = ["--out", str(out), "--oracle-password", "pw", "--owner", f"{uid}:{gid}"]
    assert main(argv) == 0
    assert f"owned by {uid}:{gid}" in capsys.readouterr().out
    for path, mode in ((out, 0o600), (out.parent, 0o700)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode), path
    # written again over an existing file (compose up after compose up): same result
    assert main(argv) == 0
    st = out.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o600)
    assert [p.name for p in out.parent.iterdir()] == ["passwords"]


def test_owner_is_numeric() -> None:
    assert Owner.parse("1883") == Owner(1883, 1883)
    assert Owner.parse("1883:100") == Owner(1883, 100)
    for bad in ("mosquitto", "1883:", "-1", ""):
        with pytest.raises(CredentialsError, match="owner"):
            Owner.parse(bad)


def test_spoofers_only_on_request() -> None:
    f = [SCENARIOS / "spoofed_device.yaml"]
    assert len(device_credentials(f)) == 1
    assert len(device_credentials(f, include_spoofers=True)) == 3


def test_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CredentialsError, match="cannot be empty or contain ':'"):
        write_password_file(tmp_path / "p", {"a:b": "x"})
    monkeypatch.setenv("MOSQUITTO_PASSWD", str(tmp_path / "nope"))
    with pytest.raises(CredentialsError, match="cannot run"):
        write_password_file(tmp_path / "p", {"oracle": "x"})
    assert not list(tmp_path.iterdir())
    assert main(["--out", str(tmp_path / "p"), "--oracle-password", "x", "missing.yaml"]) == 2
