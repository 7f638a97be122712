"""`trustship demo` — one order's life on the embedded chain (first version).

Deploys the contracts on in-process eth-tester and walks one ETH order from
create-and-fund to both withdrawals; the arrival is proven on-chain from a
device-signed reading about two hours late, so the settlement carries a late
penalty. Each step is printed (amounts in ETH and wei, gas used) and written to
a small report. The telemetry scenarios (simulator → MQTT → oracle) replace the
hand-made reading in a later version; until then every scenario name runs this
walkthrough and says so.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from backend.chain.connection import connect
from backend.chain.contracts import OrderState
from backend.chain.sender import TxResult
from backend.chain.settlement import settlement
from backend.chain.testing import build_stack, default_terms, device_key, signed
from backend.core.settings import Settings
from backend.telemetry import Reading, device_address

logger = logging.getLogger(__name__)

ETHER = 10**18
HOUR = 3600


def eth(wei: int, places: int | None = None) -> str:
    """``wei`` as ETH (all 18 decimals, or rounded to ``places``), trailing zeros trimmed."""
    value = Decimal(wei) / Decimal(ETHER)
    if places is not None:
        value = round(value, places)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} ETH"


def _utc(timestamp: int) -> str:
    return f"{datetime.fromtimestamp(timestamp, UTC):%Y-%m-%d %H:%M} UTC"


@dataclass
class Step:
    title: str
    detail: str
    gas_used: int | None = None
    tx_hash: str | None = None


@dataclass
class DemoRun:
    scenario: str
    steps: list[Step] = field(default_factory=list)
    payouts: list[tuple[str, int]] = field(default_factory=list)
    ok: bool = True
    notes: list[str] = field(default_factory=list)


def _record(
    run: DemoRun, console: Console, title: str, detail: str, tx: TxResult | None = None
) -> None:
    step = Step(title, detail, tx.gas_used if tx else None, tx.tx_hash if tx else None)
    run.steps.append(step)
    gas = f"  [dim]gas {tx.gas_used:,}[/dim]" if tx else ""
    console.print(f"[green]✓[/green] [bold]{title}[/bold] — {detail}{gas}")


def run_demo(scenario: str = "cold_chain_breach", report: Path = Path("reports/demo.html")) -> int:
    """Run the walkthrough; returns 0 when the contract paid out what the terms say."""
    console = Console()
    started = time.monotonic()
    run = DemoRun(scenario=scenario)
    console.print(
        Panel.fit(
            "TrustShip demo — one purchase order on an in-process chain (eth-tester)\n"
            f"scenario requested: {scenario!r}. This first version runs the built-in "
            "late-delivery walkthrough;\n"
            "the telemetry scenarios arrive with the simulator and oracle.",
            title="TrustShip",
        )
    )
    run.notes.append(
        f"Scenario {scenario!r} requested; the built-in late-delivery walkthrough ran "
        "(telemetry scenarios are not wired into the demo yet)."
    )

    settings = Settings(_env_file=None, RPC_URL=None, DEV_MODE=True)  # type: ignore[call-arg]
    with console.status("deploying the contracts"):
        chain = connect(settings)
        stack = build_stack(chain, stablecoin=False)
    a = stack.accounts
    deploy_gas = 0
    for tx_hash in stack.deployment.tx_hashes.values():
        deploy_gas += int(chain.w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])  # type: ignore[arg-type]
    _record(
        run,
        console,
        "Deployed",
        f"PurchaseOrders {stack.po.address}, QualityVerification {stack.qv.address}, "
        f"Escrow {stack.escrow.address} (chain id {chain.chain_id}; deployment gas {deploy_gas:,})",
    )

    terms = default_terms(
        chain.now(), a.arbiter.address, delivery_deadline=chain.now() + 3 * 24 * HOUR
    )
    start_balance = {
        "buyer": chain.balance(a.buyer.address),
        "supplier": chain.balance(a.supplier.address),
    }
    spent_gas = {"buyer": 0, "supplier": 0}

    def paid(role: str, tx: TxResult) -> TxResult:
        spent_gas[role] += tx.gas_used * tx.effective_gas_price
        return tx

    tx = paid("buyer", stack.po.create_and_fund_order(a.supplier.address, terms, by=a.buyer))
    order_id = int(tx.value)
    _record(
        run,
        console,
        "Order created and funded",
        f"order #{order_id}: buyer {a.buyer.address} pays {eth(terms.price)} ({terms.price} wei) "
        f"into escrow; due {_utc(terms.delivery_deadline)}; "
        f"late penalty {terms.late_penalty_bps_per_hour / 100:g} % per started hour, "
        f"capped at {terms.late_penalty_cap_bps / 100:g} %",
        tx,
    )
    tx = paid("supplier", stack.po.accept_order(order_id, by=a.supplier))
    _record(run, console, "Accepted", f"supplier {a.supplier.address} accepts the terms", tx)

    key = device_key(1)
    sensor = device_address(key)
    tx = paid("supplier", stack.po.ship_order(order_id, [sensor], by=a.supplier))
    _record(run, console, "Shipped", f"sensor {sensor} bound to the order", tx)

    arrived_at = terms.delivery_deadline + 2 * HOUR - 10 * 60  # 1 h 50 min late
    chain.time_travel(arrived_at + 5 * 60)
    _record(
        run,
        console,
        "Time passes",
        f"the ship docks at Rotterdam at {_utc(arrived_at)}, 1 h 50 min after the deadline",
    )

    arrival = Reading(
        order_id=order_id,
        seq=1,
        timestamp=arrived_at,
        temperature_centi_c=512,
        humidity_permille=610,
        shock_milli_g=120,
        latitude_e6=terms.dest_lat_e6 + 1_200,
        longitude_e6=terms.dest_lon_e6 - 800,
    )
    evidence = signed(arrival, stack.domain, key)
    tx = stack.qv.prove_arrival(order_id, evidence, by=a.oracle)
    delivered = tx.event("OrderDelivered")
    _record(
        run,
        console,
        "Arrival proven on-chain",
        f"the sensor's signed reading inside the geofence (5.12 °C) is verified by "
        f"QualityVerification; {delivered['lateSeconds']} s late",
        tx,
    )

    expected = settlement(terms.price, terms, arrived_at, breached=False)
    settled = tx.events_named("OrderSettled")
    if not settled:  # a dispute window would leave it Delivered; the demo's terms have none
        tx = stack.po.settle_order(order_id, by=a.supplier)
        settled = tx.events_named("OrderSettled")
    buyer_amount, supplier_amount = settled[0]["buyerAmount"], settled[0]["supplierAmount"]
    started_hours = -(-expected.late_seconds // HOUR)
    _record(
        run,
        console,
        "Settled",
        f"late penalty {expected.late_penalty_bps / 100:g} % ({started_hours} started hours), "
        f"credited in the same transaction: buyer refund {eth(buyer_amount)} ({buyer_amount} wei), "
        f"supplier {eth(supplier_amount)} ({supplier_amount} wei)",
    )
    if (buyer_amount, supplier_amount) != (expected.buyer_amount, expected.supplier_amount):
        run.ok = False
        console.print(
            f"[red]mismatch: the terms give buyer {expected.buyer_amount} / supplier "
            f"{expected.supplier_amount} wei[/red]"
        )

    tx = paid("buyer", stack.escrow.withdraw(by=a.buyer))
    _record(run, console, "Buyer withdraws", f"{eth(tx.event('FundsWithdrawn')['amount'])}", tx)
    tx = paid("supplier", stack.escrow.withdraw(by=a.supplier))
    _record(run, console, "Supplier withdraws", f"{eth(tx.event('FundsWithdrawn')['amount'])}", tx)

    state = stack.po.order_state(order_id)
    owed = stack.escrow.total_owed()
    if state is not OrderState.SETTLED or owed != 0:
        run.ok = False
        console.print(f"[red]order state {state.name}, escrow still owes {owed} wei[/red]")

    table = Table(title=f"Order #{order_id} payout")
    table.add_column("party")
    table.add_column("received", justify="right")
    table.add_column("wei", justify="right")
    table.add_column("gas paid", justify="right")
    table.add_column("balance change", justify="right")
    for role, amount in (("buyer", buyer_amount), ("supplier", supplier_amount)):
        acct = a.buyer if role == "buyer" else a.supplier
        change = chain.balance(acct.address) - start_balance[role]
        run.payouts.append((role, amount))
        table.add_row(role, eth(amount), str(amount), eth(spent_gas[role], 6), eth(change, 6))
    console.print(table)
    elapsed = time.monotonic() - started
    console.print(f"[dim]finished in {elapsed:.1f} s[/dim]")

    write_report(run, report, order_id=order_id, price=terms.price)
    console.print(f"report written to [bold]{report}[/bold]")
    return 0 if run.ok else 1


def write_report(run: DemoRun, path: Path, *, order_id: int, price: int) -> None:
    """Write the steps as HTML (``.html``/``.htm``) or plain text (anything else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".html", ".htm"):
        rows = "\n".join(
            f"<tr><td>{i}</td><td>{html.escape(s.title)}</td><td>{html.escape(s.detail)}</td>"
            f"<td>{'' if s.gas_used is None else f'{s.gas_used:,}'}</td>"
            f"<td><code>{html.escape(s.tx_hash or '')}</code></td></tr>"
            for i, s in enumerate(run.steps, 1)
        )
        payouts = "\n".join(
            f"<tr><td>{role}</td><td>{html.escape(eth(amount))}</td><td>{amount}</td></tr>"
            for role, amount in run.payouts
        )
        notes = "".join(f"<p><em>{html.escape(n)}</em></p>" for n in run.notes)
        status = "settled as the terms say" if run.ok else "MISMATCH — see the steps"
        path.write_text(
            "<!doctype html>\n<html><head><meta charset='utf-8'><title>TrustShip demo</title>"
            "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
            "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
            "table{border-collapse:collapse;margin:1em 0}</style></head><body>\n"
            f"<h1>TrustShip demo — order #{order_id}</h1>\n{notes}\n"
            f"<p>Price {html.escape(eth(price))} ({price} wei). "
            f"Outcome: <strong>{status}</strong>.</p>\n"
            "<h2>Steps</h2><table><tr><th>#</th><th>step</th><th>what happened</th>"
            f"<th>gas</th><th>transaction</th></tr>\n{rows}\n</table>\n"
            "<h2>Payout</h2><table><tr><th>party</th><th>amount</th><th>wei</th></tr>\n"
            f"{payouts}\n</table>\n</body></html>\n"
        )
    else:
        lines = [f"TrustShip demo — order #{order_id}", *run.notes, ""]
        for i, s in enumerate(run.steps, 1):
            gas = f" (gas {s.gas_used:,})" if s.gas_used is not None else ""
            lines.append(f"{i}. {s.title}: {s.detail}{gas}")
        lines.append("")
        lines += [f"{role}: {eth(amount)} ({amount} wei)" for role, amount in run.payouts]
        lines.append("outcome: " + ("settled as the terms say" if run.ok else "MISMATCH"))
        path.write_text("\n".join(lines) + "\n")
