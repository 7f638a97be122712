"""``trustship simulate`` and ``python -m iot_simulator`` (docs/simulator.md)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from backend.telemetry import AddressError, Domain, TrustShipError, parse_address
from iot_simulator.fleet import Fleet, build_fleet
from iot_simulator.scenario import ScenarioError, load_scenario, resolve_scenario_path

log = logging.getLogger(__name__)

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_DEPLOYMENT = Path("var/deployment.json")
#: Signing domain when no deployment manifest exists (anvil's chain id, no contract):
#: readings verify against their devices but not against any deployed contract.
FALLBACK_DOMAIN = Domain(31337, "0x" + "00" * 20)


def _env(name: str) -> str | None:
    """An environment setting, also read from ``./.env`` like the backend's Settings."""
    value = os.environ.get(name)
    if value:
        return value
    env_file = Path(".env")
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, sep, val = line.strip().partition("=")
            if sep and key.strip() == name and not key.startswith("#"):
                return val.strip().strip("'\"") or None
    return None


def load_domain(deployment: Path | None) -> tuple[Domain, str]:
    """The EIP-712 domain from a deployment manifest, tolerant about its shape.

    Reads ``chain_id`` (or ``chainId``) and the QualityVerification address from
    ``addresses`` or ``contracts`` (a string, or an object with ``address``).
    Returns the domain and where it came from.
    """
    explicit = deployment is not None or _env("DEPLOYMENT_FILE") is not None
    path = deployment or Path(_env("DEPLOYMENT_FILE") or DEFAULT_DEPLOYMENT)
    if not path.is_file():
        if explicit:
            raise ScenarioError(
                f"deployment manifest {path} does not exist (run `trustship deploy`)"
            )
        return FALLBACK_DOMAIN, f"no manifest at {path}: placeholder domain"
    try:
        body = json.loads(path.read_text())
        chain_id = int(body.get("chain_id", body.get("chainId")))
        contracts = body.get("addresses") or body.get("contracts") or {}
        qv = contracts["QualityVerification"]
        if isinstance(qv, dict):
            qv = qv["address"]
        return Domain(chain_id, parse_address(qv, "addresses.QualityVerification")), str(path)
    except AddressError as exc:  # a mistyped address: say which and why
        raise ScenarioError(f"deployment manifest {path}: {exc}") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ScenarioError(
            f"deployment manifest {path}: needs chain_id and"
            f" addresses.QualityVerification ({exc!r})"
        ) from None


def parse_order_ids(pairs: list[str]) -> dict[str, int] | None:
    """``["main=3", "b=4"]`` → ``{"main": 3, "b": 4}``; empty → None (ids 1, 2, ...)."""
    if not pairs:
        return None
    out: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value.strip().isdigit():
            raise ScenarioError(f"--order-id {pair!r}: expected NAME=ID with a decimal id")
        if name in out:
            raise ScenarioError(f"--order-id: order {name!r} given twice")
        out[name] = int(value)
    return out


def _fmt_offset(s: int) -> str:
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    return f"{d}d{h:02d}:{m:02d}:{sec:02d}" if d else f"{h:02d}:{m:02d}:{sec:02d}"


def print_dry_run(fleet: Fleet, console: Console) -> bool:
    """Print the scenario's timeline; True when every order meets its expectation."""
    from iot_simulator.timeline import summarize

    sc = fleet.scenario
    console.print(f"[bold]{sc.name}[/bold]: {sc.description}", highlight=False)
    console.print(
        f"t0 {fleet.t0}, speed x{sc.speed:g} (whole run {sc.end_offset_s / sc.speed:.1f} s wall),"
        f" chain {fleet.domain.chain_id}, QualityVerification {fleet.domain.verifying_contract}",
        highlight=False,
    )
    timelines = summarize(fleet)
    all_ok = all(tl.matches_expectation for tl in timelines)
    for tl in timelines:
        o = tl.order
        ok = tl.matches_expectation
        if len(timelines) > 10 and ok and not (tl.excursions or tl.shocks or tl.warnings):
            continue  # big fleets: only the orders with something to say
        route = " -> ".join(w if isinstance(w, str) else (w.name or "waypoint") for w in o.route)
        lines = [
            f"\n[bold]{o.name}[/bold] (order id {fleet.order_ids[o.name]}): {route},"
            f" {tl.route_km:.0f} km at {tl.speed_kmh:.1f} km/h",
            f"  readings: {tl.readings_per_device} per device x {len(tl.devices)},"
            f" every {tl.interval_s}s (offsets {tl.interval_s} .. {sc.duration_for(o)})",
        ]
        if tl.delivered_offset_s is None:
            lines.append("  arrival reading: [red]never[/red]")
        else:
            at = tl.delivered_offset_s
            lines.append(
                f"  arrival: arrive_after_s {o.arrive_after_s} -> first reading in the geofence"
                f" at {_fmt_offset(at)} (tick {at // tl.interval_s}, ts {fleet.t0 + at});"
                f" deadline {_fmt_offset(tl.deadline_offset_s)}"
            )
        for ex in tl.excursions:
            verdict = "BREACH" if ex.span_s > o.terms.tolerated_excursion_s else "tolerated"
            lines.append(
                f"  out of range: {ex.device[:10]}.. seq {ex.first_seq}-{ex.last_seq}"
                f" {_fmt_offset(ex.start_offset_s)} -> {_fmt_offset(ex.end_offset_s)},"
                f" span {ex.span_s}s vs {o.terms.tolerated_excursion_s}s,"
                f" temp {ex.low}..{ex.high}: {verdict}"
            )
        for sh in tl.shocks:
            lines.append(
                f"  shock: {sh.milli_g} mg > {o.terms.max_shock_milli_g} at"
                f" {_fmt_offset(sh.offset_s)} ({sh.device[:10]}.. seq {sh.seq}): BREACH"
            )
        for a, b, dev in tl.gaps:
            who = "all devices" if dev is None else f"device {dev}"
            lines.append(
                f"  offline: {_fmt_offset(a)} -> {_fmt_offset(b)} ({who}), flushed on reconnect"
            )
        if tl.spoofed_readings:
            lines.append(f"  spoofed: {tl.spoofed_readings} reading(s) from unregistered keys")
        lines.extend(f"  [yellow]warning[/yellow]: {w}" for w in tl.warnings)
        p, e = tl.predicted, o.expected
        if p is not None:
            lines.append(
                f"  predicted: {p.state}, buyer {p.buyer}, supplier {p.supplier},"
                f" breach {p.breach}, late {_late(p.late_s)}"
            )
        lines.append(
            "  [green]matches the expectation[/green]"
            if ok
            else f"  [red]EXPECTED[/red]: {e.state}, buyer {e.buyer}, supplier {e.supplier},"
            f" breach {e.breach}, late {_late(e.late_s)}"
        )
        console.print("\n".join(lines), highlight=False)
    good = sum(tl.matches_expectation for tl in timelines)
    console.print(f"\n{good}/{len(timelines)} order(s) match their expectation", highlight=False)
    return all_ok


def _late(seconds: int | None) -> str:
    return "— (never delivered)" if seconds is None else f"{seconds}s"


def simulate(
    scenario: Path,
    deployment: Path | None,
    order_ids: list[str],
    speed: float | None,
    dry_run: bool = False,
    t0: int | None = None,
    mqtt_url: str | None = None,
    connection: str = "auto",
    keep_until_stored: bool = False,
) -> int:
    """Publish a scenario's fleet over MQTT (``trustship simulate``).

    Returns the process exit code: 0 done, 1 a dry run whose predicted
    settlement differs from the scenario's expectation or a publish failure
    (with ``keep_until_stored``: also readings the oracle never confirmed stored),
    2 bad input (scenario, manifest, order ids).
    """
    from iot_simulator.publisher import Retention, publish

    console = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        sc = load_scenario(resolve_scenario_path(scenario))
        domain, source = load_domain(deployment)
        ids = parse_order_ids(order_ids)
        fleet = build_fleet(sc, domain, ids, t0 if t0 is not None else int(time.time()))
    except TrustShipError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    if dry_run:
        return 0 if print_dry_run(fleet, console) else 1
    url = mqtt_url or _env("MQTT_URL") or DEFAULT_MQTT_URL
    if speed is not None and not (speed > 0):
        err.print(f"[red]error:[/red] --speed must be positive, got {speed}")
        return 2
    console.print(
        f"{sc.name}: {len(fleet.devices)} device(s) in {len(sc.orders)} order(s), signing for chain"
        f" {domain.chain_id} / QualityVerification {domain.verifying_contract} ({source})"
    )
    try:
        stats = publish(
            fleet,
            url,
            speed=speed,
            progress=True,
            connection=connection,  # type: ignore[arg-type]
            retention=Retention() if keep_until_stored else None,
        )
    except TrustShipError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    console.print(
        f"published {stats.messages} message(s) ({stats.telemetry} readings, {stats.status} status)"
        f" in {stats.wall_s:.1f} s; acked {stats.acked}, refused {stats.refused},"
        f" skipped {stats.skipped}, reconnects {stats.reconnects}"
    )
    if keep_until_stored:
        console.print(
            f"receipts {stats.receipts}, resent {stats.resent}, held at most {stats.held_peak}"
            f" reading(s) ({stats.held_peak_bytes} bytes), dropped from a full buffer"
            f" {stats.retention_dropped}, never confirmed stored {stats.unconfirmed}"
        )
        if stats.unconfirmed or stats.retention_dropped:
            return 1
    return 0 if stats.acked + stats.refused >= stats.messages else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iot_simulator", description="Publish or dry-run a TrustShip scenario."
    )
    parser.add_argument("scenario", type=Path, help="scenario YAML (or a name in scenarios/)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the timeline, publish nothing"
    )
    parser.add_argument("--deployment", type=Path, default=None)
    parser.add_argument("--order-id", action="append", default=[], metavar="NAME=ID")
    parser.add_argument("--speed", type=float, default=None, help="time compression (inf: unpaced)")
    parser.add_argument(
        "--t0", type=int, default=None, help="scenario start, unix seconds (default now)"
    )
    parser.add_argument("--mqtt-url", default=None, help="default: MQTT_URL or " + DEFAULT_MQTT_URL)
    parser.add_argument("--connection", choices=["auto", "device", "shared"], default="auto")
    parser.add_argument(
        "--keep-until-stored",
        action="store_true",
        help="keep readings until the oracle's receipts confirm them stored, resend the rest",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.speed is not None and math.isnan(args.speed):
        parser.error("--speed must be a number")
    return simulate(
        args.scenario,
        args.deployment,
        args.order_id,
        args.speed,
        dry_run=args.dry_run,
        t0=args.t0,
        mqtt_url=args.mqtt_url,
        connection=args.connection,
        keep_until_stored=args.keep_until_stored,
    )
