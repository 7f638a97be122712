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
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from backend.core.errors import TrustShipError
from backend.core.settings import Settings, get_settings
from iot_simulator import Scenario, build_fleet, load_scenario
from iot_simulator.publisher import publish
from trustship.stack import (
    DEV_API_KEYS,
    ApiDriver,
    Driver,
    Note,
    Outcome,
    PartyAction,
    ReplayError,
    format_amount,
    local_stack,
    wait_until_final,
)

#: Seconds of scenario time the chain clock is moved past the end of the voyage.
CLOCK_MARGIN_S = 60
#: How long a step waits for the oracle (a delivery to dispute, evidence before expiry).
STEP_TIMEOUT_S = 60.0


@dataclass
class OrderReport:
    name: str
    order_id: int
    token: str
    expected_state: str
    expected_buyer: int
    expected_supplier: int
    expected_breach: bool
    expected_late_s: int | None
    state: str
    buyer: int | None
    supplier: int | None
    breach: bool
    late_s: int | None
    #: Why it did not end as expected: the chain, the oracle's view, its refusals.
    why: str | None = None

    @property
    def passed(self) -> bool:
        return (
            self.state == self.expected_state
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


def _is_delivered(driver: Driver, order_id: int) -> bool:
    return driver.outcome(order_id).state == "Delivered"


def _wait(what: str, done: Callable[[], bool], timeout: float = STEP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise ReplayError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def replay_scenario(
    driver: Driver,
    path: Path | Scenario,
    *,
    speed: float | None = None,
    settle_timeout: float = 120.0,
    note: Note = lambda _m: None,
    progress: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> ScenarioReport:
    """Run one scenario against ``driver``'s stack and compare the outcome.

    The parties' steps beyond the telemetry happen when the scenario's ``actions``
    say: a cancellation before shipment, a dispute once delivery is proven and the
    arbiter's ruling, the buyer's reclaim of an undelivered order once its deadline
    and grace have passed (docs/scenarios.md). ``on_start`` receives the scenario
    start ``t0`` (unix seconds, chain time).
    """
    started = time.monotonic()
    scenario = path if isinstance(path, Scenario) else load_scenario(path)
    report = ScenarioReport(name=scenario.name, file=str(path if isinstance(path, Path) else ""))
    try:
        t0 = driver.chain.now() + 1
        if on_start is not None:
            on_start(t0)
        ids = driver.open_orders(scenario, t0, note)
        for o in scenario.orders:
            if o.actions.cancel is not None:
                driver.act(ids[o.name], PartyAction("cancel", o.actions.cancel), note)
        fleet = build_fleet(scenario, driver.domain, ids, t0=t0)
        shipped = [o.name for o in scenario.orders if o.actions.cancel is None]
        driver.ship(fleet, note, shipped)
        disputed = [o for o in scenario.orders if o.actions.dispute is not None]
        window = max(o.terms.dispute_window_s for o in scenario.orders)
        # a dispute must be opened inside its window: leave the windows open until then
        _move_clock(driver, fleet.end_time + (0 if disputed else window) + CLOCK_MARGIN_S, note)
        # the devices (and spoofers) of the orders that shipped: a cancelled order's stay quiet
        devices = {d.address for d in fleet.all_devices if d.order in shipped}
        messages = (m for m in fleet.messages() if m.device in devices)
        stats = publish(fleet, driver.mqtt_url, speed=speed, progress=progress, messages=messages)
        report.readings_published = stats.telemetry
        note(f"telemetry published: {report.readings_published} signed readings")
        for o in disputed:
            oid = ids[o.name]
            _wait(f"order {oid}'s delivery", partial(_is_delivered, driver, oid))
            assert o.actions.dispute is not None and o.actions.ruling_buyer is not None
            driver.act(oid, PartyAction("dispute", o.actions.dispute), note)
            driver.act(oid, PartyAction("rule", "arbiter", o.actions.ruling_buyer), note)
        if disputed:
            _move_clock(driver, fleet.end_time + window + CLOCK_MARGIN_S, note)
        expiring = [o for o in scenario.orders if o.actions.expire]
        if expiring:
            published = {
                ids[o.name]: sum(
                    1 for d in fleet.devices if d.order == o.name for _ in fleet.readings(d)
                )
                for o in expiring
            }
            for oid, n in published.items():  # the evidence first: breach proofs included
                _wait(f"order {oid}'s evidence", partial(driver.evidence_settled, oid, n))
            expires = max(t0 + o.terms.deadline_s + o.terms.expiry_grace_s for o in expiring)
            _move_clock(driver, expires + CLOCK_MARGIN_S, note)
            for o in expiring:
                driver.act(ids[o.name], PartyAction("expire", "buyer"), note)
        outcomes = wait_until_final(driver, list(ids.values()), timeout=settle_timeout)
        for order in scenario.orders:
            out: Outcome = outcomes[ids[order.name]]
            exp = order.expected
            rep = OrderReport(
                name=order.name,
                order_id=out.order_id,
                token=order.terms.token,
                expected_state=exp.state,
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
            if not rep.passed:
                rep.why = driver.diagnose(out.order_id)
            report.orders.append(rep)
    except TrustShipError as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def open_driver(settings: Settings, note: Note) -> Iterator[Driver]:
    """The configured stack: a running API (TRUSTSHIP_API_URL) or the in-process one."""
    api_url = settings.TRUSTSHIP_API_URL
    if api_url:
        from backend.chain.connection import connect

        if not settings.MQTT_URL:
            raise ReplayError(
                "TRUSTSHIP_API_URL is set but MQTT_URL is not: where do devices publish?"
            )
        chain = connect(settings)
        keys = {role: settings.api_key_of(role, default) for role, default in DEV_API_KEYS.items()}
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
        "state (exp / got)",
        "buyer (exp / got)",
        "supplier (exp / got)",
        "breach",
        "late s",
        "result",
    ):
        table.add_column(col, overflow="fold")
    failures: list[str] = []
    for rep in reports:
        if rep.error or not rep.orders:
            table.add_row(rep.name, *[""] * 8, f"[red]ERROR[/red] {rep.error}")
            continue
        for o in rep.orders:
            mark = "[green]PASS[/green]" if o.passed else "[red]FAIL[/red]"
            state = o.state if o.state == o.expected_state else f"{o.expected_state} / {o.state}"
            table.add_row(
                rep.name,
                o.name,
                str(o.order_id),
                o.token if len(o.token) < 12 else o.token[:10] + "…",
                state,
                _pair(o.expected_buyer, o.buyer, o.token),
                _pair(o.expected_supplier, o.supplier, o.token),
                f"{'yes' if o.expected_breach else 'no'} / {'yes' if o.breach else 'no'}",
                f"{_late(o.expected_late_s)} / {_late(o.late_s)}",
                mark,
            )
            if o.why:
                failures.append(f"{rep.name}/{o.name} (order {o.order_id}): {o.why}")
    console.print(table)
    for line in failures:
        console.print(f"[red]why[/red] {line}", highlight=False)


def _late(seconds: int | None) -> str:
    return "—" if seconds is None else f"{seconds:,}"


@dataclass(frozen=True)
class FileError:
    file: str
    error: str


def load_all(files: Sequence[Path]) -> tuple[list[tuple[Path, Scenario]], list[FileError]]:
    """Every file loaded and validated before any runs: a bad file is reported with its
    path and field, and nothing is replayed."""
    loaded: list[tuple[Path, Scenario]] = []
    errors: list[FileError] = []
    for f in files:
        try:
            loaded.append((Path(f), load_scenario(f)))
        except TrustShipError as exc:
            errors.append(FileError(str(f), str(exc)))
    return loaded, errors


def run_replay(files: Sequence[Path], *, as_json: bool = False, speed: float | None = None) -> int:
    """The `trustship replay` command: 0 when every scenario ended as expected, 1 when
    one did not, 2 when a file is invalid (then none is replayed)."""
    console = Console(stderr=as_json)
    settings = get_settings()

    def note(msg: str) -> None:
        console.print(f"[dim]·[/dim] {msg}")

    loaded, errors = load_all(files)
    if errors:
        if as_json:
            sys.stdout.write(
                json.dumps(
                    {
                        "passed": False,
                        "errors": [asdict(e) for e in errors],
                        "scenarios": [],
                    },
                    indent=2,
                )
                + "\n"
            )
        for e in errors:
            console.print(f"[red]invalid scenario[/red] {e.error}", highlight=False)
        console.print(f"{len(errors)} of {len(files)} file(s) invalid: nothing was replayed")
        return 2
    reports: list[ScenarioReport] = []
    try:
        with open_driver(settings, note) as driver:
            for path, scenario in loaded:
                console.rule(f"[bold]{path}")
                rep = replay_scenario(
                    driver, scenario, speed=speed, note=note, progress=not as_json
                )
                rep.file = str(path)
                reports.append(rep)
    except TrustShipError as exc:  # the stack itself: unreachable chain, broker, API
        if as_json:
            sys.stdout.write(
                json.dumps({"passed": False, "errors": [{"file": None, "error": str(exc)}],
                            "scenarios": [r.as_json() for r in reports]}, indent=2) + "\n"
            )  # fmt: skip
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    if as_json:
        summary = {
            "passed": all(r.passed for r in reports),
            "errors": [],
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
