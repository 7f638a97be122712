"""`trustship replay FILE... [--json]` — scenarios end to end, checked against their
expected settlement.

For each scenario: the driver opens its orders (create-and-fund, accept), binds
the fleet's devices at shipment, moves a dev chain's clock to the end of the
voyage, and the simulator publishes the fleet's signed telemetry over MQTT.
From then on nothing but the oracle acts: it verifies and stores the readings,
proves breaches and arrival on-chain and settles. The driver waits for every
order to reach a final state and compares buyer and supplier amounts, breach
and seconds late with what the scenario expects.

Against ``TRUSTSHIP_API_URL`` the orders are opened over the REST API of a
running `trustship serve` (whose oracle does the rest); otherwise the oracle
runs in this process on the configured chain, broker and database, or on the
embedded defaults.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from backend.core.errors import TrustShipError
from backend.core.settings import Settings, get_settings
from iot_simulator import build_fleet, load_scenario
from iot_simulator.publisher import publish
from trustship.stack import (
    DEV_API_KEYS,
    ApiDriver,
    Driver,
    Note,
    Outcome,
    ReplayError,
    format_amount,
    local_stack,
    wait_until_final,
)

#: Seconds of scenario time the chain clock is moved past the end of the voyage.
CLOCK_MARGIN_S = 60


@dataclass
class OrderReport:
    name: str
    order_id: int
    token: str
    expected_buyer: int
    expected_supplier: int
    expected_breach: bool
    expected_late_s: int
    state: str
    buyer: int | None
    supplier: int | None
    breach: bool
    late_s: int | None

    @property
    def passed(self) -> bool:
        return (
            self.state in {"Settled", "Resolved"}
            and self.buyer == self.expected_buyer
            and self.supplier == self.expected_supplier
            and self.breach == self.expected_breach
            and self.late_s == self.expected_late_s
        )

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["passed"] = self.passed
        return body


@dataclass
class ScenarioReport:
    name: str
    file: str
    orders: list[OrderReport] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    readings_published: int = 0

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.orders) and all(o.passed for o in self.orders)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "passed": self.passed,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "readings_published": self.readings_published,
            "order_ids": [o.order_id for o in self.orders],
            "orders": [o.as_json() for o in self.orders],
        }


def _move_clock(driver: Driver, target: int, note: Note) -> None:
    chain = driver.chain
    now = chain.now()
    if target > now:
        chain.time_travel(target)
        note(f"chain clock moved {target - now} s ahead, to the end of the voyage")
    driver.wait_for_oracle_clock(target, timeout=30.0)


def replay_scenario(
    driver: Driver,
    path: Path,
    *,
    speed: float | None = None,
    settle_timeout: float = 120.0,
    note: Note = lambda _m: None,
    progress: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> ScenarioReport:
    """Run one scenario against ``driver``'s stack and compare the outcome.

    ``on_start`` receives the scenario start ``t0`` (unix seconds, chain time).
    """
    started = time.monotonic()
    scenario = load_scenario(path)
    report = ScenarioReport(name=scenario.name, file=str(path))
    try:
        t0 = driver.chain.now() + 1
        if on_start is not None:
            on_start(t0)
        ids = driver.open_orders(scenario, t0, note)
        fleet = build_fleet(scenario, driver.domain, ids, t0=t0)
        driver.ship(fleet, note)
        window = max(o.terms.dispute_window_s for o in scenario.orders)
        _move_clock(driver, fleet.end_time + window + CLOCK_MARGIN_S, note)
        stats = publish(fleet, driver.mqtt_url, speed=speed, progress=progress)
        report.readings_published = stats.telemetry
        note(f"telemetry published: {report.readings_published} signed readings")
        outcomes = wait_until_final(driver, list(ids.values()), timeout=settle_timeout)
        for order in scenario.orders:
            out: Outcome = outcomes[ids[order.name]]
            exp = order.expected
            report.orders.append(
                OrderReport(
                    name=order.name,
                    order_id=out.order_id,
                    token=order.terms.token,
                    expected_buyer=exp.buyer,
                    expected_supplier=exp.supplier,
                    expected_breach=exp.breach,
                    expected_late_s=exp.late_s,
                    state=out.state,
                    buyer=out.buyer_amount,
                    supplier=out.supplier_amount,
                    breach=out.breached,
                    late_s=out.late_s,
                )
            )
    except TrustShipError as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def open_driver(settings: Settings, note: Note) -> Iterator[Driver]:
    """The configured stack: a running API (TRUSTSHIP_API_URL) or the in-process one."""
    api_url = os.environ.get("TRUSTSHIP_API_URL")
    if api_url:
        from backend.chain.connection import connect

        if not settings.MQTT_URL:
            raise ReplayError(
                "TRUSTSHIP_API_URL is set but MQTT_URL is not: where do devices publish?"
            )
        chain = connect(settings)
        keys = {
            role: os.environ.get(f"TRUSTSHIP_{role.upper()}_API_KEY", default)
            for role, default in DEV_API_KEYS.items()
        }
        yield ApiDriver(api_url, chain, settings.MQTT_URL, keys)
        return
    with local_stack(settings, note=note) as stack:
        yield stack.driver


def _pair(expected: int, got: int | None, token: str) -> str:
    return f"{format_amount(expected, token, unit=False)} / {format_amount(got, token, unit=False)}"


def print_table(reports: Sequence[ScenarioReport], console: Console) -> None:
    table = Table(title="Scenario replay", show_lines=False)
    for col in (
        "scenario",
        "order",
        "id",
        "token",
        "buyer (exp / got)",
        "supplier (exp / got)",
        "breach",
        "late s",
        "result",
    ):
        table.add_column(col, overflow="fold")
    for rep in reports:
        if rep.error or not rep.orders:
            table.add_row(rep.name, *[""] * 7, f"[red]ERROR[/red] {rep.error}")
            continue
        for o in rep.orders:
            mark = "[green]PASS[/green]" if o.passed else f"[red]FAIL[/red] ({o.state})"
            table.add_row(
                rep.name,
                o.name,
                str(o.order_id),
                o.token,
                _pair(o.expected_buyer, o.buyer, o.token),
                _pair(o.expected_supplier, o.supplier, o.token),
                f"{'yes' if o.expected_breach else 'no'} / {'yes' if o.breach else 'no'}",
                f"{o.expected_late_s:,} / {format_amount(o.late_s, '')}",
                mark,
            )
    console.print(table)


def run_replay(files: Sequence[Path], *, as_json: bool = False, speed: float | None = None) -> int:
    """The `trustship replay` command: exit 0 when every scenario settled as expected."""
    console = Console(stderr=as_json)
    settings = get_settings()

    def note(msg: str) -> None:
        console.print(f"[dim]·[/dim] {msg}")

    reports: list[ScenarioReport] = []
    with open_driver(settings, note) as driver:
        for path in files:
            console.rule(f"[bold]{path}")
            reports.append(
                replay_scenario(driver, Path(path), speed=speed, note=note, progress=not as_json)
            )
    if as_json:
        summary = {
            "passed": all(r.passed for r in reports),
            "scenarios": [r.as_json() for r in reports],
        }
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_table(reports, console)
    return 0 if reports and all(r.passed for r in reports) else 1


def parse_speed(text: str | None) -> float | None:
    """``--speed`` as given: a factor, or ``max`` for no pacing."""
    if text is None:
        return None
    if text == "max":
        return math.inf
    value = float(text)
    if not value > 0:
        raise ValueError(f"speed must be positive or 'max', got {text}")
    return value
