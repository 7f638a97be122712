"""Write the broker's password file for the oracle and a scenario catalogue's devices.

    python -m iot_simulator.credentials --out deploy/passwords \\
        --oracle-password "$ORACLE_MQTT_PASSWORD" scenarios/ [more.yaml ...]

Usernames are ``oracle`` and each device's checksummed address (what the ACL's
``%u`` patterns expect); a device's password is the one the simulator derives
from its key (:func:`iot_simulator.keys.mqtt_password`). ``--include-spoofers``
also admits the spoofing keys of the scenarios (an attacker with a stolen broker
login: the ACL still confines it to its own topics).

Hashing is mosquitto's own: the users are written in plain text to a private
temp file beside ``--out``, hashed in place with ``mosquitto_passwd -U`` (one
process for the whole fleet instead of one ``mosquitto_passwd -b`` per user),
and moved over ``--out`` atomically. Nothing in plain text is left behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from backend.telemetry import Domain
from iot_simulator.fleet import build_fleet
from iot_simulator.scenario import ScenarioError, load_scenario

ORACLE_USER = "oracle"
_ANY_DOMAIN = Domain(1, "0x" + "00" * 20)  # keys do not depend on the chain


class CredentialsError(ScenarioError):
    """Raised when the password file cannot be written."""


def scenario_files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")))
        else:
            out.append(p)
    return out


def device_credentials(files: Iterable[Path], include_spoofers: bool = False) -> dict[str, str]:
    """``{address: password}`` for every device of the given scenarios."""
    creds: dict[str, str] = {}
    for f in files:
        fleet = build_fleet(load_scenario(f), _ANY_DOMAIN, None, 0)
        for dev in fleet.all_devices if include_spoofers else fleet.devices:
            creds[dev.address] = dev.mqtt_password
    return creds


def mosquitto_passwd() -> str:
    found = os.environ.get("MOSQUITTO_PASSWD") or shutil.which("mosquitto_passwd")
    if not found:
        raise CredentialsError(
            "mosquitto_passwd not found: install mosquitto (apt-get install mosquitto) or set "
            "MOSQUITTO_PASSWD"
        )
    return found


def write_password_file(out: Path, users: dict[str, str]) -> None:
    """Write ``users`` (name → password) as a mosquitto password file at ``out``."""
    for name, pw in users.items():
        if not name or ":" in name or "\n" in name or "\n" in pw:
            raise CredentialsError(
                f"user {name!r}: names cannot be empty or contain ':' or newlines"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".passwords-", dir=out.parent)
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp: mode 0600
            fh.writelines(f"{name}:{pw}\n" for name, pw in users.items())
        tool = mosquitto_passwd()
        try:
            proc = subprocess.run([tool, "-U", tmp], capture_output=True, text=True, check=False)
        except OSError as exc:
            raise CredentialsError(f"cannot run {tool}: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            raise CredentialsError(
                f"mosquitto_passwd -U failed: {proc.stderr.strip() or proc.stdout}"
            )
        os.chmod(tmp, 0o640)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iot_simulator.credentials", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("scenarios", nargs="*", type=Path, help="scenario files or directories")
    parser.add_argument("--out", type=Path, required=True, help="password file to write")
    parser.add_argument(
        "--oracle-password",
        default=os.environ.get("ORACLE_MQTT_PASSWORD"),
        help="the oracle's password (default: ORACLE_MQTT_PASSWORD)",
    )
    parser.add_argument("--oracle-user", default=ORACLE_USER)
    parser.add_argument("--include-spoofers", action="store_true")
    args = parser.parse_args(argv)
    if not args.oracle_password:
        parser.error("--oracle-password (or ORACLE_MQTT_PASSWORD) is required")
    try:
        users = {args.oracle_user: args.oracle_password}
        users.update(device_credentials(scenario_files(args.scenarios), args.include_spoofers))
        write_password_file(args.out, users)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(users)} user(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
