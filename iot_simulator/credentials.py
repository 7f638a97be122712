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

Passwords are written hashed (PBKDF2-SHA512); the file is mode 0600 and, with
``--owner``, owned by the broker's user, which must be able to rewrite it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from backend.core.errors import TrustShipError
from backend.telemetry import Domain
from backend.telemetry.access import DEFAULT_SHARE_GROUP, AccessError, BrokerAccess
from iot_simulator.fleet import build_fleet
from iot_simulator.scenario import ScenarioError, load_scenario

ORACLE_USER = "oracle"
_ANY_DOMAIN = Domain(1, "0x" + "00" * 20)  # keys do not depend on the chain


class CredentialsError(ScenarioError):
    """Raised when the broker's access file cannot be written."""


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
    uid, _, gid = spec.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--owner {spec!r}: expected UID[:GID]") from None


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
        access.write(args.out, uid=uid, gid=gid)
    except TrustShipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(access.usernames)} broker user(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
