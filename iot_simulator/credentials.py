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

Ownership: the broker drops privileges to its own user (``mosquitto``, uid 1883
in the eclipse-mosquitto image) before it reads its files, so a file written by
root is unreadable to it. ``--owner UID[:GID]`` hands what this module writes to
that user: the file (mode 0600) and the directory it is written to (mode 0700,
so that the broker may also replace the file, as the dynamic-security plugin
does with its config: it writes ``<file>.new`` and renames it over ``<file>``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from backend.telemetry import Domain
from iot_simulator.fleet import build_fleet
from iot_simulator.scenario import ScenarioError, load_scenario

ORACLE_USER = "oracle"
_ANY_DOMAIN = Domain(1, "0x" + "00" * 20)  # keys do not depend on the chain


class CredentialsError(ScenarioError):
    """Raised when the password file cannot be written."""


@dataclass(frozen=True)
class Owner:
    """The broker's user and group, to whom the files written here are handed."""

    uid: int
    gid: int

    @classmethod
    def parse(cls, text: str) -> Owner:
        """``UID`` or ``UID:GID`` (numeric: the broker's user need not exist here)."""
        uid, sep, gid = text.partition(":")
        try:
            owner = cls(int(uid), int(gid if sep else uid))
        except ValueError:
            raise CredentialsError(f"owner {text!r}: expected UID or UID:GID (numbers)") from None
        if owner.uid < 0 or owner.gid < 0:
            raise CredentialsError(f"owner {text!r}: ids cannot be negative")
        return owner


def hand_over_directory(directory: Path, owner: Owner | None) -> None:
    """Create ``directory``; with an ``owner``, make it theirs alone (0700)."""
    directory.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        try:
            os.chown(directory, owner.uid, owner.gid)
        except OSError as exc:
            raise CredentialsError(
                f"cannot hand {directory} to {owner.uid}:{owner.gid}: {exc.strerror or exc} "
                "(changing owners needs root)"
            ) from None
        os.chmod(directory, 0o700)


def install_private_file(tmp: Path, out: Path, owner: Owner | None) -> None:
    """Move the finished ``tmp`` over ``out`` atomically: mode 0600, owned by ``owner``.

    Every file this module writes for the broker goes through here, so the broker
    (which reads it as its own user, not as root) can always read it.
    """
    os.chmod(tmp, 0o600)
    if owner is not None:
        os.chown(tmp, owner.uid, owner.gid)
    os.replace(tmp, out)


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


def write_password_file(out: Path, users: dict[str, str], owner: Owner | None = None) -> None:
    """Write ``users`` (name → password) as a mosquitto password file at ``out``.

    With ``owner`` the file and its directory are handed to the broker's user
    (:func:`hand_over_directory`, :func:`install_private_file`).
    """
    for name, pw in users.items():
        if not name or ":" in name or "\n" in name or "\n" in pw:
            raise CredentialsError(
                f"user {name!r}: names cannot be empty or contain ':' or newlines"
            )
    hand_over_directory(out.parent, owner)
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
        install_private_file(Path(tmp), out, owner)
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
    parser.add_argument(
        "--owner",
        metavar="UID[:GID]",
        help="the broker's user: the file (0600) and its directory (0700) are handed to it "
        "(docker-compose.yml: the eclipse-mosquitto image's 1883:1883)",
    )
    parser.add_argument("--include-spoofers", action="store_true")
    args = parser.parse_args(argv)
    if not args.oracle_password:
        parser.error("--oracle-password (or ORACLE_MQTT_PASSWORD) is required")
    try:
        owner = Owner.parse(args.owner) if args.owner else None
        users = {args.oracle_user: args.oracle_password}
        users.update(device_credentials(scenario_files(args.scenarios), args.include_spoofers))
        write_password_file(args.out, users, owner)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    whose = f", owned by {owner.uid}:{owner.gid}" if owner else ""
    print(f"wrote {len(users)} user(s) to {args.out}{whose}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
