"""Write the broker's access file for the oracles and a scenario catalogue's devices.

    python -m iot_simulator.credentials --out /mosquitto/auth/dynamic-security.json \\
        --oracle "oracle:$ORACLE_MQTT_PASSWORD" --monitor "healthcheck:$PW" \\
        [--owner 1883:1883] scenarios/ [more.yaml ...]

The file is mosquitto's dynamic-security plugin config (``backend.telemetry.access``
defines the roles): each oracle user may join the oracles' shared subscription, each
device (username = its checksummed address, password derived from its key by
:func:`iot_simulator.keys.mqtt_password`) may publish only under its own address, a
monitor user reads ``$SYS`` for health checks, an optional admin manages the plugin
at run time. ``--include-spoofers`` also admits the spoofing keys of the scenarios (an
attacker with a stolen broker login: the broker still confines it to its own topics).

Passwords are written hashed (PBKDF2-SHA512). Ownership: the broker drops privileges to
its own user (``mosquitto``, uid 1883 in the eclipse-mosquitto image) before it reads
its files, so a file written by root is unreadable to it. ``--owner UID[:GID]`` hands
what this module writes to that user: the file (mode 0600) and the directory it is
written to (mode 0700), since the plugin replaces its config when it changes it at run
time (it writes ``<file>.new`` and renames it over ``<file>``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from backend.telemetry import Domain, TrustShipError
from backend.telemetry.access import DEFAULT_SHARE_GROUP, AccessError, BrokerAccess
from iot_simulator.fleet import build_fleet
from iot_simulator.scenario import ScenarioError, load_scenario

ORACLE_USER = "oracle"
_ANY_DOMAIN = Domain(1, "0x" + "00" * 20)  # keys do not depend on the chain


class CredentialsError(ScenarioError):
    """Raised when the broker's access file cannot be written."""


def hand_over_directory(directory: Path, owner: tuple[int, int] | None) -> None:
    """Create ``directory``; with an ``owner`` (uid, gid), make it theirs alone (0700)."""
    directory.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        try:
            os.chown(directory, *owner)
        except OSError as exc:
            raise CredentialsError(
                f"cannot hand {directory} to {owner[0]}:{owner[1]}: {exc.strerror or exc} "
                "(changing owners needs root)"
            ) from None
        os.chmod(directory, 0o700)


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


def broker_access(
    *,
    oracles: dict[str, str],
    devices: dict[str, str],
    monitors: dict[str, str] | None = None,
    admins: dict[str, str] | None = None,
    share_group: str = DEFAULT_SHARE_GROUP,
) -> BrokerAccess:
    """The broker's users: oracles, devices, health-check monitors and admins."""
    access = BrokerAccess(share_group=share_group)
    try:
        for user, pw in oracles.items():
            access.add_oracle(user, pw)
        for user, pw in (monitors or {}).items():
            access.add_monitor(user, pw)
        for user, pw in (admins or {}).items():
            access.add_admin(user, pw)
        access.add_devices(devices)
    except AccessError as exc:
        raise CredentialsError(str(exc)) from None
    return access


def _user(spec: str) -> tuple[str, str]:
    """``USER:PASSWORD`` (the password may itself contain ':')."""
    user, sep, password = spec.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError(f"{spec.split(':', 1)[0]!r}: expected USER:PASSWORD")
    return user, password


def _owner(spec: str) -> tuple[int, int]:
    """``UID`` or ``UID:GID``, numeric (the broker's user need not exist here)."""
    uid, sep, gid = spec.partition(":")
    try:
        owner = int(uid), int(gid if sep else uid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--owner {spec!r}: expected UID[:GID]") from None
    if min(owner) < 0:
        raise argparse.ArgumentTypeError(f"--owner {spec!r}: ids cannot be negative")
    return owner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iot_simulator.credentials", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("scenarios", nargs="*", type=Path, help="scenario files or directories")
    parser.add_argument("--out", type=Path, required=True, help="access file to write")
    parser.add_argument(
        "--oracle",
        action="append",
        type=_user,
        default=[],
        metavar="USER:PASSWORD",
        help="an oracle login (repeat for several oracle processes: one user each)",
    )
    parser.add_argument(
        "--oracle-password",
        default=os.environ.get("ORACLE_MQTT_PASSWORD"),
        help=f"shorthand for --oracle {ORACLE_USER}:PASSWORD (default: ORACLE_MQTT_PASSWORD)",
    )
    for flag, what in (
        ("--monitor", "a health-check login ($SYS only)"),
        ("--admin", "a dynamic-security administrator"),
    ):
        parser.add_argument(
            flag, action="append", type=_user, default=[], metavar="USER:PASSWORD", help=what
        )
    parser.add_argument(
        "--share-group", default=DEFAULT_SHARE_GROUP, help="the oracles' shared-subscription group"
    )
    parser.add_argument(
        "--owner",
        type=_owner,
        default=None,
        metavar="UID[:GID]",
        help="chown the file to the broker's user (1883 in the eclipse-mosquitto image)",
    )
    parser.add_argument("--include-spoofers", action="store_true")
    args = parser.parse_args(argv)
    oracles = dict(args.oracle)
    if args.oracle_password:
        oracles.setdefault(ORACLE_USER, args.oracle_password)
    if not oracles:
        parser.error("give --oracle USER:PASSWORD (or --oracle-password / ORACLE_MQTT_PASSWORD)")
    try:
        access = broker_access(
            oracles=oracles,
            devices=device_credentials(scenario_files(args.scenarios), args.include_spoofers),
            monitors=dict(args.monitor),
            admins=dict(args.admin),
            share_group=args.share_group,
        )
        uid, gid = args.owner if args.owner is not None else (None, None)
        hand_over_directory(args.out.parent, args.owner)
        access.write(args.out, uid=uid, gid=gid)
    except TrustShipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    owned = f", owned by {args.owner[0]}:{args.owner[1]}" if args.owner is not None else ""
    print(f"wrote {len(access.usernames)} broker user(s) to {args.out}{owned}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
