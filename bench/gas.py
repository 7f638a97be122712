"""Gas of TrustShip's contracts, measured from real receipts.

    .venv/bin/python bench/gas.py            # in-process eth-tester
    .venv/bin/python bench/gas.py --anvil    # a fresh anvil on a free port

Measures, on one fresh deployment:

* the lifecycle of one order, step by step and in total — ETH (delivery proven by a
  device reading, or confirmed by the buyer; settlement inside the delivery call with a
  zero dispute window, or by settleOrder after a window) and ERC-20;
* Merkle commitments of 100 and 1000 readings (gas per reading), and what proving one
  committed reading costs (verifyCommittedReading, a view: eth_estimateGas);
* excursion evidence of N = 2, 5, 10, 20 device-signed readings;
* the naive baseline (bench/contracts/NaiveTelemetryStore.sol: every reading in
  storage), one transaction per reading and batched, so the naive/committed ratio is
  measured in the same run.

Each lifecycle is measured on the second order of its kind (the first one warms the
contracts' per-token and per-account storage, which only the very first order of a
deployment pays for). Prints rich tables and writes bench/results/gas.json. Targets
(lifecycle ≤ 400,000 gas; ≤ 100 gas per reading at 1000 readings) are reported, not
asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backend.chain.artifacts import load_artifact
from backend.chain.connection import Chain, connect
from backend.chain.contracts import ETH, ContractWrapper, Terms
from backend.chain.deploy import deploy_contract
from backend.chain.sender import TxResult
from backend.chain.testing import Stack, build_stack, default_terms, device_key
from backend.core.settings import Settings
from backend.telemetry import (
    MerkleTree,
    Reading,
    SignedReading,
    device_address,
    reading_digest,
    sign_reading,
)
from testkit import REPO

logger = logging.getLogger(__name__)

RESULTS = REPO / "bench" / "results" / "gas.json"
GAS = 5_000_000
HOUR = 3600
DAY = 24 * HOUR
LIFECYCLE_TARGET = 400_000
PER_READING_TARGET = 100
DEST = (51_950_000, 4_050_000)


class Naive(ContractWrapper):
    NAME = "NaiveTelemetryStore"


def _settings(rpc_url: str | None) -> Settings:
    return Settings(_env_file=None, RPC_URL=rpc_url, DEV_MODE=True)  # type: ignore[call-arg]


def _reading(order_id: int, seq: int, ts: int, temp: int = 500, *, at_dest: bool = True) -> Reading:
    lat, lon = DEST if at_dest else (DEST[0] - 5_000_000, DEST[1] - 3_000_000)
    return Reading(order_id, seq, ts, temp, 550, 120, lat, lon, 0)


def _signed(stack: Stack, r: Reading, n: int = 1) -> SignedReading:
    key = device_key(n)
    return SignedReading(r, device_address(key), sign_reading(r, stack.domain, key))


class Bench:
    def __init__(self, stack: Stack, console: Console) -> None:
        self.s = stack
        self.a = stack.accounts
        self.console = console

    def terms(self, **overrides: Any) -> Terms:
        overrides.setdefault("late_penalty_bps_per_hour", 100)
        return default_terms(self.s.chain.now(), self.a.arbiter.address, **overrides)

    # ---- lifecycle --------------------------------------------------------------------------

    def lifecycle(self, *, erc20: bool, delivery: str, window: int = 0) -> dict[str, int]:
        """One order from creation to both withdrawals; returns gas per step.

        Delivery is 2 h late so that both parties get a credit (1 %/h → 2 % to the buyer).
        """
        s, a = self.s, self.a
        token = s.token.address if erc20 else ETH
        price = 1_000 * 10**6 if erc20 else 10 * 10**18
        terms = self.terms(token=token, price=price, dispute_window_secs=window)
        steps: dict[str, int] = {}
        if erc20:
            s.token.mint(a.buyer.address, price, by=a.admin)
            steps["approve (ERC-20, buyer → Escrow)"] = s.token.approve(
                s.escrow.address, price, by=a.buyer
            ).gas_used
        created = s.po.create_and_fund_order(a.supplier.address, terms, by=a.buyer, gas=GAS)
        oid = int(created.value)
        steps["createAndFundOrder"] = created.gas_used
        steps["acceptOrder"] = s.po.accept_order(oid, by=a.supplier, gas=GAS).gas_used
        steps["shipOrder (1 device)"] = s.po.ship_order(
            oid, [device_address(device_key(1))], by=a.supplier, gas=GAS
        ).gas_used
        delivered_at = terms.delivery_deadline + 2 * HOUR
        s.chain.time_travel(delivered_at)
        settles = " + settlement" if window == 0 else ""
        if delivery == "arrival":
            arrival = _signed(s, _reading(oid, 1, delivered_at))
            result = s.qv.prove_arrival(oid, arrival, by=a.oracle, gas=GAS)
            steps[f"proveArrival{settles}"] = result.gas_used
        else:
            s.chain.set_next_block_timestamp(delivered_at + 1)
            result = s.po.confirm_receipt(oid, by=a.buyer, gas=GAS)
            steps[f"confirmReceipt{settles}"] = result.gas_used
        if window:
            s.chain.time_travel(s.chain.now() + window)
            steps["settleOrder (after the window)"] = s.po.settle_order(
                oid, by=a.stranger, gas=GAS
            ).gas_used
        steps["withdraw (supplier)"] = s.escrow.withdraw(token, by=a.supplier, gas=GAS).gas_used
        steps["withdraw (buyer)"] = s.escrow.withdraw(token, by=a.buyer, gas=GAS).gas_used
        return steps

    # ---- commitments --------------------------------------------------------------------------

    def shipped_order(self, **overrides: Any) -> tuple[int, int]:
        s, a = self.s, self.a
        terms = self.terms(price=10**15, **overrides)
        oid = int(s.po.create_and_fund_order(a.supplier.address, terms, by=a.buyer, gas=GAS).value)
        s.po.accept_order(oid, by=a.supplier, gas=GAS)
        devices = [device_address(device_key(n)) for n in (1, 2)]
        result = s.po.ship_order(oid, devices, by=a.supplier, gas=GAS)
        return oid, int(s.chain.w3.eth.get_block(result.block_number)["timestamp"])

    def commitment(self, size: int) -> dict[str, Any]:
        s, a = self.s, self.a
        oid, start = self.shipped_order()
        readings = [_reading(oid, i + 1, start + 30 * i, 400 + i % 50) for i in range(size)]
        digests = [reading_digest(r, s.domain) for r in readings]
        tree = MerkleTree.from_digests(digests)
        first = s.qv.commit_readings(oid, 1, tree.root, size, by=a.oracle, gas=GAS).gas_used
        # the steady state: a later batch of the same order
        later = s.qv.commit_readings(oid, 2, tree.root, size, by=a.oracle, gas=GAS).gas_used
        # one committed reading stays provable on-chain: verify a leaf (a view)
        index = size // 2
        signed = _signed(s, readings[index])
        proof = tree.proof(index)
        args = (oid, 1, signed.reading.as_tuple(), signed.signature, list(proof))
        assert s.qv.view("verifyCommittedReading", *args) is True
        data = s.qv.calldata("verifyCommittedReading", *args)
        verify = int(
            s.chain.w3.eth.estimate_gas(
                {"from": a.stranger.address, "to": s.qv.address, "data": data}
            )
        )
        return {
            "readings": size,
            "commit_gas_first_batch": first,
            "commit_gas": later,
            "gas_per_reading": later / size,
            "proof_depth": len(proof),
            "verify_committed_reading_gas": verify,
        }

    # ---- excursion evidence ----------------------------------------------------------------------

    def excursion(self, n: int) -> int:
        s, a = self.s, self.a
        oid, start = self.shipped_order(tolerated_excursion_secs=30)
        evidence = [
            _signed(s, _reading(oid, 100 + i, start + 60 * i, 950, at_dest=False)) for i in range(n)
        ]
        result = s.qv.prove_excursion(oid, evidence, by=a.stranger, gas=GAS)
        assert result.event("ExcursionProven")["lastSeq"] == 100 + n - 1
        return result.gas_used

    # ---- the naive baseline ----------------------------------------------------------------------

    def naive(self, singles: int, batch: int) -> dict[str, Any]:
        s, a = self.s, self.a
        address, _, _ = deploy_contract(
            s.chain, load_artifact("NaiveTelemetryStore"), [], by=a.admin
        )
        naive = Naive(s.chain, address)
        start = s.chain.now()
        single: list[int] = []
        with Progress(console=self.console, transient=True) as progress:
            task = progress.add_task("naive: one tx per reading", total=singles)
            for i in range(singles):
                r = _reading(1, i + 1, start + 30 * i)
                single.append(
                    naive._tx("storeReading", (r.as_tuple(),), a.oracle, gas=GAS).gas_used
                )
                progress.advance(task)
        rows = [_reading(2, i + 1, start + 30 * i).as_tuple() for i in range(batch)]
        batched: TxResult = naive._tx("storeReadings", (rows,), a.oracle, gas=30_000_000)
        assert naive.view("readingCount", 2) == batch
        return {
            "one_tx_per_reading_first": single[0],
            "one_tx_per_reading_median": statistics.median(single[1:]),
            "one_tx_per_reading_samples": singles,
            "batched_readings": batch,
            "batched_gas": batched.gas_used,
            "batched_gas_per_reading": batched.gas_used / batch,
        }


def _run(stack: Stack, console: Console) -> dict[str, Any]:
    b = Bench(stack, console)
    out: dict[str, Any] = {"lifecycle": {}}
    variants: list[tuple[str, Callable[[], dict[str, int]]]] = [
        ("ETH, device arrival, zero window", lambda: b.lifecycle(erc20=False, delivery="arrival")),
        ("ETH, buyer receipt, zero window", lambda: b.lifecycle(erc20=False, delivery="receipt")),
        (
            "ETH, buyer receipt, 1-day window",
            lambda: b.lifecycle(erc20=False, delivery="receipt", window=DAY),
        ),
        (
            "ERC-20, device arrival, zero window",
            lambda: b.lifecycle(erc20=True, delivery="arrival"),
        ),
        ("ERC-20, buyer receipt, zero window", lambda: b.lifecycle(erc20=True, delivery="receipt")),
    ]
    for name, run in variants:
        run()  # warm-up order of the same kind
        steps = run()
        total = sum(v for k, v in steps.items() if not k.startswith("approve"))
        out["lifecycle"][name] = {"steps": steps, "total": total, "target": LIFECYCLE_TARGET}
    out["commitments"] = {str(n): b.commitment(n) for n in (100, 1000)}
    out["excursion"] = {str(n): b.excursion(n) for n in (2, 5, 10, 20)}
    out["naive"] = b.naive(singles=25, batch=100)
    naive_single = out["naive"]["one_tx_per_reading_median"]
    naive_batched = out["naive"]["batched_gas_per_reading"]
    out["ratios"] = {
        f"naive_{kind}_over_committed_{n}": naive / out["commitments"][n]["gas_per_reading"]
        for n in ("100", "1000")
        for kind, naive in (("one_tx", naive_single), ("batched", naive_batched))
    }
    per_reading_1000 = out["commitments"]["1000"]["gas_per_reading"]
    out["targets"] = {
        "lifecycle_max_gas": LIFECYCLE_TARGET,
        "lifecycle_met": {k: v["total"] <= LIFECYCLE_TARGET for k, v in out["lifecycle"].items()},
        "gas_per_reading_at_1000_max": PER_READING_TARGET,
        "gas_per_reading_at_1000_met": per_reading_1000 <= PER_READING_TARGET,
    }
    return out


def _print(out: dict[str, Any], console: Console) -> None:
    for name, run in out["lifecycle"].items():
        ok = run["total"] <= LIFECYCLE_TARGET
        t = Table(title=f"Lifecycle — {name}", title_justify="left")
        t.add_column("step")
        t.add_column("gas", justify="right")
        for step, gas in run["steps"].items():
            t.add_row(
                step if not step.startswith("approve") else f"[dim]{step} (not in total)[/dim]",
                f"{gas:,}",
            )
        mark = "[green]≤ target[/green]" if ok else "[red]over target[/red]"
        t.add_row("[bold]total[/bold]", f"[bold]{run['total']:,}[/bold]", end_section=True)
        t.add_row(f"target {LIFECYCLE_TARGET:,}", mark)
        console.print(t)

    t = Table(title="Telemetry on-chain: Merkle commitment vs naive storage", title_justify="left")
    t.add_column("what")
    t.add_column("gas", justify="right")
    t.add_column("gas / reading", justify="right")
    for n, c in out["commitments"].items():
        t.add_row(
            f"commitReadings, {n} readings (first batch)",
            f"{c['commit_gas_first_batch']:,}",
            f"{c['commit_gas_first_batch'] / int(n):,.1f}",
        )
        t.add_row(
            f"commitReadings, {n} readings (later batch)",
            f"{c['commit_gas']:,}",
            f"{c['gas_per_reading']:,.1f}",
        )
        t.add_row(
            f"  verifyCommittedReading, depth {c['proof_depth']} (estimate, incl. 21k base)",
            f"{c['verify_committed_reading_gas']:,}",
            "",
        )
    nv = out["naive"]
    t.add_row("naive storeReading, first reading", f"{nv['one_tx_per_reading_first']:,}", "")
    t.add_row(
        f"naive storeReading, one tx per reading "
        f"(median of {nv['one_tx_per_reading_samples'] - 1})",
        f"{nv['one_tx_per_reading_median']:,.0f}",
        f"{nv['one_tx_per_reading_median']:,.0f}",
    )
    t.add_row(
        f"naive storeReadings, batch of {nv['batched_readings']}",
        f"{nv['batched_gas']:,}",
        f"{nv['batched_gas_per_reading']:,.0f}",
    )
    console.print(t)

    t = Table(title="Ratio naive / committed, per reading", title_justify="left")
    t.add_column("comparison")
    t.add_column("×", justify="right")
    for k, v in out["ratios"].items():
        t.add_row(k, f"{v:,.0f}")
    per = out["commitments"]["1000"]["gas_per_reading"]
    mark = "[green]≤ target[/green]" if per <= PER_READING_TARGET else "[red]over target[/red]"
    t.add_row(f"gas per reading at 1000: {per:.1f} (target ≤ {PER_READING_TARGET})", mark)
    console.print(t)

    t = Table(
        title="Excursion evidence (proveExcursion, N device-signed readings)", title_justify="left"
    )
    t.add_column("N", justify="right")
    t.add_column("gas", justify="right")
    t.add_column("gas / reading", justify="right")
    for n, gas in out["excursion"].items():
        t.add_row(n, f"{gas:,}", f"{gas / int(n):,.0f}")
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--anvil",
        action="store_true",
        help="run on a fresh anvil (free port) instead of eth-tester",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    console = Console()
    server = None
    started = time.monotonic()
    try:
        if args.anvil:
            from testkit.servers import start_anvil

            server = start_anvil()
            chain: Chain = connect(_settings(server.extra["url"]))
        else:
            chain = connect(_settings(None))
        with console.status(f"deploying on {chain.kind}…"):
            stack = build_stack(chain, "anvil" if args.anvil else "eth-tester")
        with console.status("measuring…"):
            out = _run(stack, console)
    finally:
        if server is not None:
            server.stop()
    meta = {
        "chain": "anvil" if args.anvil else "eth-tester",
        "chain_id": stack.chain.chain_id,
        "solc": "0.8.28, optimizer 200 runs (contracts/build)",
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
        "method": "gasUsed of real receipts on one fresh deployment; lifecycles measured on the "
        "second order of their kind; verifyCommittedReading via eth_estimateGas",
    }
    out = {"meta": meta, **out}
    _print(out, console)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    console.print(
        f"saved {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
