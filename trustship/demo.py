"""`trustship demo` — a newcomer's one command: a shipment settles by itself.

Everything runs in this process on the embedded defaults (eth-tester, an
in-process MQTT broker, SQLite in a temp dir) unless RPC_URL / MQTT_URL /
DATABASE_URL say otherwise. The default scenario is the cold-chain breach: a
reefer's compressor fails for eight hours on day two of a five-day voyage.

The demo opens the order (create-and-fund, accept, ship with the devices bound
on-chain), lets the simulator publish the fleet's signed telemetry over MQTT,
and from then on only the oracle acts: it verifies and stores readings, warns
while the excursion is still recoverable, proves the breach and the arrival
on-chain, and the contracts settle. Then both parties withdraw. The terminal
tells the story; a report file plots the temperature trace, the limits and the
breach window.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from backend.chain.contracts import ETH
from backend.core.settings import get_settings
from backend.store import repositories as repo
from iot_simulator import Scenario, load_scenario, resolve_scenario_path
from trustship.replay import ScenarioReport, replay_scenario
from trustship.stack import LocalStack, local_stack
from trustship.stack import format_amount as amount

log = logging.getLogger(__name__)

#: At most this many orders of a fleet scenario get a story and a plot.
STORY_ORDERS = 3


def celsius(centi: int) -> str:
    return f"{centi / 100:.2f} °C"


def duration(seconds: int) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


@dataclass
class StoryLine:
    at: int  # scenario time (unix seconds)
    kind: str  # "alert" | "chain"
    text: str
    style: str = ""


@dataclass
class OrderStory:
    name: str
    order_id: int
    token: str
    t0: int
    lines: list[StoryLine] = field(default_factory=list)
    readings: list[tuple[int, str, int]] = field(default_factory=list)  # (ts, device, temp)
    breach_window: tuple[int, int] | None = None
    arrival: int | None = None
    deadline: int = 0
    min_temp: int = 0
    max_temp: int = 0
    commitments: int = 0
    committed_readings: int = 0

    def when(self, ts: int) -> str:
        offset = ts - self.t0
        return f"day {offset // 86400} {(offset % 86400) // 3600:02d}:{(offset % 3600) // 60:02d}"


def _story(stack: LocalStack, scenario: Scenario, name: str, order_id: int, t0: int) -> OrderStory:
    order = scenario.order(name)
    terms = order.terms
    story = OrderStory(
        name=name,
        order_id=order_id,
        token=terms.token,
        t0=t0,
        deadline=t0 + terms.deadline_s,
        min_temp=terms.min_temp_centi_c,
        max_temp=terms.max_temp_centi_c,
    )
    with stack.runtime.sessions() as s:
        for alert in repo.alerts_for(s, order_id, limit=1000):
            style = "red" if alert.severity in ("critical", "error") else "yellow"
            story.lines.append(
                StoryLine(alert.at, "alert", f"{alert.kind}: {alert.message}", style)
            )
        done = [c for c in repo.commitments_for(s, order_id) if c.status == "done"]
        story.commitments = len(done)
        story.committed_readings = repo.committed_readings(s, order_id, [c.batch_seq for c in done])
        for ev in repo.events_for(s, order_id, limit=5000):
            args: dict[str, Any] = ev.args or {}
            if ev.event == "ExcursionProven":
                start, end = int(args["startedAt"]), int(args["endedAt"])
                story.breach_window = (start, end)
                story.lines.append(
                    StoryLine(
                        end,
                        "chain",
                        f"BREACH PROVEN ON-CHAIN: device {args['device'][:10]}… out of range from "
                        f"{story.when(start)} to {story.when(end)} ({duration(end - start)}, "
                        f"tolerated {duration(terms.tolerated_excursion_s)}); readings "
                        f"#{args['firstSeq']}–#{args['lastSeq']}, each checked on-chain",
                        "bold red",
                    )
                )
            elif ev.event == "ShockProven":
                story.lines.append(
                    StoryLine(
                        ev.block_timestamp or t0,
                        "chain",
                        f"BREACH PROVEN ON-CHAIN: shock of {int(args['shockMilliG']) / 1000:.1f} g "
                        f"(limit {terms.max_shock_milli_g / 1000:.1f} g), reading #{args['seq']}",
                        "bold red",
                    )
                )
            elif ev.event == "ArrivalProven":
                at = int(args["timestamp"])
                story.arrival = at
                late = max(0, at - story.deadline)
                when = f"{duration(late)} late" if late else "on time"
                story.lines.append(
                    StoryLine(
                        at,
                        "chain",
                        f"ARRIVAL PROVEN ON-CHAIN: a device-signed reading inside the destination "
                        f"geofence ({when})",
                        "bold green",
                    )
                )
        for r in repo.telemetry_page(s, order_id, limit=100_000).items:
            story.readings.append((r.timestamp, r.device, r.temperature_centi_c))
    story.lines.sort(key=lambda line: line.at)
    return story


def _print_header(console: Console, scenario: Scenario, path: Path) -> None:
    console.print(
        Panel.fit(
            f"[bold]{scenario.name}[/bold] — {scenario.description}\n[dim]{path}[/dim]",
            title="TrustShip demo",
            border_style="cyan",
        )
    )
    order = scenario.orders[0]
    t = order.terms
    table = Table(title="The terms the contracts enforce", show_header=False, box=None)
    table.add_column(style="dim")
    table.add_column()
    parties = scenario.parties_for(order)
    table.add_row("buyer / supplier", f"{parties.buyer} / {parties.supplier}")
    table.add_row("arbiter", parties.arbiter)
    table.add_row("route", " → ".join(order.waypoint_names()))
    table.add_row("price (escrowed)", amount(t.price, t.token))
    table.add_row("deadline", f"{duration(t.deadline_s)} after the order")
    table.add_row(
        "temperature",
        f"{celsius(t.min_temp_centi_c)} … {celsius(t.max_temp_centi_c)}, "
        f"excursions tolerated up to {duration(t.tolerated_excursion_s)}",
    )
    table.add_row("breach refund", f"{t.breach_refund_bps / 100:g} % to the buyer")
    table.add_row(
        "late penalty",
        f"{t.late_penalty_bps_per_hour / 100:g} % per started hour, capped at "
        f"{t.late_penalty_cap_bps / 100:g} %",
    )
    console.print(table)
    if len(scenario.orders) > 1:
        console.print(f"[dim](and {len(scenario.orders) - 1} more orders)[/dim]")


def _print_story(console: Console, story: OrderStory) -> None:
    console.rule(f"[bold]order {story.order_id} ({story.name}) — what the oracle saw and did")
    shown_alerts = 0
    for line in story.lines:
        if line.kind == "alert":
            shown_alerts += 1
            if shown_alerts > 8:
                continue
        console.print(f"  [dim]{story.when(line.at)}[/dim]  [{line.style}]{line.text}[/]")
    if shown_alerts > 8:
        console.print(f"  [dim]… and {shown_alerts - 8} more alerts in the report[/dim]")
    console.print(
        f"  [dim]{len(story.readings)} signed readings verified and stored, "
        f"{story.committed_readings} anchored on-chain in {story.commitments} fleet Merkle "
        "roots (each provable with GET /orders/{id}/readings/{reading}/proof)[/dim]"
    )


def _settlement_table(rep: ScenarioReport) -> Table:
    table = Table(title="Settlement (on-chain) vs what the scenario expects")
    for col in ("order", "state", "buyer gets", "supplier gets", "breach", "late", "as expected"):
        table.add_column(col)
    for o in rep.orders:
        table.add_row(
            f"{o.order_id} {o.name}",
            o.state,
            amount(o.buyer, o.token),
            amount(o.supplier, o.token),
            "yes" if o.breach else "no",
            duration(o.late_s or 0) if o.late_s else "on time",
            "[green]yes[/green]" if o.passed else "[red]NO[/red]",
        )
    return table


def _withdraw(stack: LocalStack, console: Console, tokens: set[str]) -> list[str]:
    """Both parties pull their credits (escrow pays only on withdrawal)."""
    driver = stack.driver
    escrow = driver.contracts.escrow
    lines = []
    for token_symbol in sorted(tokens):
        token = ETH if token_symbol == "ETH" else driver.contracts.token.address  # type: ignore[union-attr]
        for role, account in (("buyer", driver.buyer), ("supplier", driver.supplier)):
            credit = escrow.credit_of(account.address, token)
            if credit == 0:
                continue
            result = escrow.withdraw(token, by=account)
            line = f"{role} withdrew {amount(credit, token_symbol)} (gas {result.gas_used:,})"
            lines.append(line)
            console.print(f"[green]✓[/green] {line}")
    return lines


def _plot_png(story: OrderStory) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=110)
    by_device: dict[str, list[tuple[float, float]]] = {}
    for ts, device, temp in story.readings:
        by_device.setdefault(device, []).append(((ts - story.t0) / 3600, temp / 100))
    for device, points in sorted(by_device.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], lw=1.2, label=f"{device[:10]}…")
    ax.axhline(story.max_temp / 100, color="crimson", ls="--", lw=1, label="max")
    ax.axhline(story.min_temp / 100, color="royalblue", ls="--", lw=1, label="min")
    out = sorted(
        (ts - story.t0) / 3600
        for ts, _, temp in story.readings
        if not story.min_temp <= temp <= story.max_temp
    )
    if out:  # every out-of-range reading, lightly; the proven evidence, strongly
        ax.scatter(
            out,
            [ax.get_ylim()[0]] * len(out),
            marker="|",
            color="crimson",
            s=40,
            label="reading out of range",
        )
    if story.breach_window:
        a, b = ((t - story.t0) / 3600 for t in story.breach_window)
        ax.axvspan(a, b, color="crimson", alpha=0.25, label="breach evidence proven on-chain")
    ax.axvline((story.deadline - story.t0) / 3600, color="gray", ls=":", lw=1, label="deadline")
    if story.arrival:
        ax.axvline((story.arrival - story.t0) / 3600, color="green", lw=1, label="arrival")
    ax.set_xlabel("hours since the order")
    ax.set_ylabel("°C")
    ax.set_title(f"order {story.order_id} ({story.name}): container temperature")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _write_report(
    path: Path,
    scenario: Scenario,
    rep: ScenarioReport,
    stories: list[OrderStory],
    withdrawals: list[str],
) -> None:
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>TrustShip demo — {e(scenario.name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
        "color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}.chain{font-weight:600}.alert{color:#a60}"
        "img{max-width:100%}</style>",
        f"<h1>TrustShip demo: {e(scenario.name)}</h1>",
        f"<p>{e(scenario.description)}</p>",
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}. Settled as the scenario "
        f"expects: <b>{'yes' if rep.passed else 'NO'}</b>.</p>",
        "<h2>Settlement</h2><table><tr><th>order</th><th>state</th><th>buyer gets</th>"
        "<th>supplier gets</th><th>breach</th><th>late</th><th>expected</th></tr>",
    ]
    for o in rep.orders:
        parts.append(
            f"<tr><td>{o.order_id} {e(o.name)}</td><td>{e(o.state)}</td>"
            f"<td>{e(amount(o.buyer, o.token))}</td><td>{e(amount(o.supplier, o.token))}</td>"
            f"<td>{'yes' if o.breach else 'no'}</td><td>{o.late_s} s</td>"
            f"<td>{e(amount(o.expected_buyer, o.token))} / "
            f"{e(amount(o.expected_supplier, o.token))}</td></tr>"
        )
    parts.append("</table>")
    if withdrawals:
        parts.append("<ul>" + "".join(f"<li>{e(w)}</li>" for w in withdrawals) + "</ul>")
    for story in stories:
        png = base64.b64encode(_plot_png(story)).decode()
        parts.append(f"<h2>Order {story.order_id} ({e(story.name)})</h2>")
        parts.append(f"<img alt='temperature trace' src='data:image/png;base64,{png}'>")
        parts.append("<table><tr><th>when</th><th>what</th></tr>")
        for line in story.lines:
            parts.append(
                f"<tr class='{line.kind}'><td>{e(story.when(line.at))}</td>"
                f"<td>{e(line.text)}</td></tr>"
            )
        parts.append("</table>")
        parts.append(
            f"<p>{len(story.readings)} signed readings stored; {story.committed_readings} "
            f"anchored in {story.commitments} fleet Merkle roots.</p>"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")


def run_demo(scenario: str = "cold_chain_breach", report: Path = Path("reports/demo.html")) -> int:
    """Run one scenario end to end on the embedded stack; 0 when it settled as expected."""
    console = Console()
    settings = get_settings()
    path = resolve_scenario_path(scenario)
    sc = load_scenario(path)
    _print_header(console, sc, path)
    # refusals and broker notes are in the story and the report, not interleaved with it
    for noisy in ("backend.oracle.ingest", "backend.oracle.subscriber"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    def note(msg: str) -> None:
        console.print(f"[green]✓[/green] {msg}")

    with local_stack(settings, note=note) as stack:
        t0_holder: dict[str, int] = {}
        rep = replay_scenario(
            stack.driver,
            path,
            note=note,
            progress=True,
            on_start=lambda t0: t0_holder.update(t0=t0),
        )
        if rep.error:
            console.print(f"[red]the scenario did not run: {rep.error}[/red]")
            return 2
        stories = [
            _story(stack, sc, o.name, o.order_id, t0_holder["t0"])
            for o in rep.orders[:STORY_ORDERS]
        ]
        for story in stories:
            _print_story(console, story)
        console.print(_settlement_table(rep))
        withdrawals = _withdraw(stack, console, {o.token for o in rep.orders})
        _write_report(report, sc, rep, stories, withdrawals)
    console.print(f"\nReport with the temperature trace: [bold]{report}[/bold]")
    if rep.passed:
        console.print("[bold green]The shipment settled by itself, exactly as the terms say.[/]")
        return 0
    console.print("[bold red]The settlement differs from what the scenario expects.[/]")
    return 1
