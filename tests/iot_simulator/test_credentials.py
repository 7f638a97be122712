"""The broker password file: hashed by mosquitto_passwd, nothing left in plain text."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_simulator.credentials import (
    CredentialsError,
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
