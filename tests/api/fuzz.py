"""Schemathesis over the chain-backed API with real seeded data and every party's key.

Shared by tests/api/test_openapi_fuzz.py (SQLite) and
tests/integration/test_api_fuzz_postgres.py (PostgreSQL):

* :func:`rich_stack` — an eth-tester chain whose dev accounts hold more than
  ``MAX_PRICE``, so a generated price never runs into the buyer's balance (that is
  a documented 502 ``tx_rejected``, tested in test_input_validation.py and on anvil;
  here every 5xx is a failure);
* :func:`seed_chain` — orders in every state the contracts have, made by their real
  transactions; :func:`seed_rows` adds signed readings, a committed Merkle batch and
  alerts for the shipped order, as the oracle would;
* :func:`fuzz_case` — sends one generated case as a party drawn from the case itself
  (buyer, supplier, arbiter, auditor, admin, stranger) and, for schema-valid cases,
  points most order ids, devices and sequence numbers at the seeded data, then runs
  every check schemathesis has plus :func:`refusals_of_valid_input_are_documented`.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.api.broker_logins import BrokerLogins
from backend.api.context import ApiContext
from backend.api.custody import Custodian
from backend.api.parties import PartyRegistry
from backend.api.schemas import MAX_PRICE
from backend.chain.connection import connect
from backend.chain.contracts import Terms
from backend.chain.testing import Stack, build_stack, default_terms, device_key
from backend.core.settings import Settings
from backend.oracle.ingest import RefusalTally
from backend.store import session_factory
from backend.store.models import AlertRow
from backend.telemetry import Reading, device_address
from testkit.api_seed import commitment_row, indexed, reading_row
from testkit.settings import dev_settings
from tests.api.broker_standin import FakeAdmin

ROLES = ("buyer", "supplier", "arbiter", "auditor", "admin", "stranger")
#: More than any order can hold, so no generated price exceeds a buyer's balance.
RICH = 4 * MAX_PRICE
HOUR = 3600


def rich_stack() -> Stack:
    return build_stack(connect(dev_settings(), dev_balance=RICH), "eth-tester")


@dataclass
class Seeded:
    """What :func:`seed_chain` made: order ids by state, the shipped order's device."""

    orders: dict[str, int] = field(default_factory=dict)
    device: str = ""
    device_key: str = ""
    readings: int = 0
    committed: int = 0

    @property
    def ids(self) -> list[int]:
        return sorted(self.orders.values())


def seed_chain(stack: Stack) -> Seeded:
    """Orders in every state of the contracts, through their real transactions."""
    a, po = stack.accounts, stack.po
    supplier = a.supplier.address
    out = Seeded(device_key=device_key(90), device=device_address(device_key(90)))

    def terms(**kw: Any) -> Terms:
        kw.setdefault("buyer", a.buyer.address)
        kw.setdefault("supplier", supplier)
        return default_terms(stack.chain.now(), a.arbiter.address, **kw)

    def create(fund: bool = True, **kw: Any) -> int:
        if fund:
            return int(po.create_and_fund_order(terms(**kw), by=a.buyer).value)
        return int(po.create_order(terms(**kw), by=a.buyer).value)

    def ship(order_id: int, device: str) -> None:
        po.ship_order(order_id, stack.certificates(order_id, [device]), by=a.supplier)

    out.orders["Created"] = create(fund=False)
    out.orders["Accepted"] = create(fund=False)
    po.accept_order(out.orders["Accepted"], by=a.supplier)
    for state in ("Funded", "Shipped", "Settled", "Cancelled"):
        out.orders[state] = create()
        po.accept_order(out.orders[state], by=a.supplier)
    ship(out.orders["Shipped"], out.device)
    ship(out.orders["Settled"], device_address(device_key(91)))
    po.confirm_receipt(out.orders["Settled"], by=a.buyer)
    po.cancel_order(out.orders["Cancelled"], by=a.supplier)  # a funded order: the buyer is refunded
    for state in ("Delivered", "Disputed", "Resolved"):
        out.orders[state] = create(dispute_window_secs=30 * 24 * HOUR)
        po.accept_order(out.orders[state], by=a.supplier)
        ship(out.orders[state], device_address(device_key(92)))
        po.confirm_receipt(out.orders[state], by=a.buyer)
    po.open_dispute(out.orders["Disputed"], by=a.supplier)
    po.open_dispute(out.orders["Resolved"], by=a.buyer)
    po.resolve_dispute(out.orders["Resolved"], 10**18, by=a.arbiter)
    # Expired: a short deadline and no grace, then the chain's clock moves past it.
    out.orders["Expired"] = create(delivery_deadline=stack.chain.now() + HOUR, expiry_grace_secs=0)
    po.accept_order(out.orders["Expired"], by=a.supplier)
    stack.chain.advance_time(2 * HOUR)
    po.expire_order(out.orders["Expired"], by=a.buyer)
    # The stranger's own order: nobody else but auditors and admins may see it.
    other = default_terms(
        stack.chain.now(), a.admin.address, buyer=a.stranger.address, supplier=a.auditor.address
    )
    out.orders["stranger"] = int(po.create_and_fund_order(other, by=a.stranger).value)
    return out


def seed_rows(factory: sessionmaker[Session], stack: Stack, seeded: Seeded, n: int = 12) -> None:
    """Signed readings of the shipped order's device, a committed batch, alerts."""
    order = seeded.orders["Shipped"]
    t0 = stack.chain.now() - n * 60
    now = time.time()
    seeded.readings, seeded.committed = n, n * 2 // 3
    with factory.begin() as s:
        rows = []
        for seq in range(1, n + 1):
            r = Reading(order, seq, t0 + 60 * seq, 450 + seq, 500, 10, 50_000_000, 3_000_000, 0)
            batch = 1 if seq <= seeded.committed else None
            row = reading_row(
                r, seeded.device, seeded.device_key, stack.domain, received_at=now, batch_seq=batch
            )
            s.add(row)
            rows.append(row)
        s.flush()
        s.add(
            commitment_row(rows[: seeded.committed], now, committer=stack.accounts.oracle.address)
        )
        for order_id, kind in (
            (order, "trend"),
            (seeded.orders["stranger"], "silence"),
        ):
            s.add(
                AlertRow(
                    order_id=order_id,
                    device=seeded.device,
                    kind=kind,
                    severity="warning",
                    message=f"{kind} on order {order_id}",
                    at=t0,
                    data={"order": order_id},
                    created_at=now,
                )
            )


@contextmanager
def fuzz_context(stack: Stack, engine: Engine, seeded: Seeded) -> Iterator[ApiContext]:
    """The chain-backed API context over ``engine`` (migrated and empty), indexed and
    seeded; the chain is reverted to its seeded state afterwards."""
    snapshot = stack.chain.snapshot()
    try:
        settings = Settings(DEV_MODE=True, API_KEYS=None, RPC_URL=None, _env_file=None)  # type: ignore[call-arg]
        factory = session_factory(engine)
        indexer = indexed(engine, stack)
        seed_rows(factory, stack, seeded)
        yield ApiContext(
            settings=settings,
            session_factory=factory,
            parties=PartyRegistry.from_settings(settings),
            custodian=Custodian(
                stack.chain, stack.po, stack.escrow, after_tx=lambda _block: indexer.run_once()
            ),
            verifying_contract=stack.qv.address,
            chain_id=stack.chain.chain_id,
            deployment=stack.deployment,
            oracle_clock=lambda: indexer.chain_time or 0,
            # as under `trustship serve`, whose oracle tallies what it refused
            refusals=RefusalTally().for_order,
            # as under `trustship serve` with MQTT_ADMIN_URL (a recording broker admin)
            broker_logins=BrokerLogins(FakeAdmin(), factory),  # type: ignore[arg-type]
        )
    finally:
        stack.chain.revert(snapshot)


# --- one case --------------------------------------------------------------------------

#: 422 ``validation_error`` types of rules that JSON Schema cannot state: an EIP-55
#: checksum and the contract's MAX_PRICE (docs/api.md, "What is refused at the boundary").
NON_SCHEMA_RULES = {"eth_address", "max_price"}


#: ``POST /epcis/capture``'s refusals by GS1's EPCIS 2.0 schema and the order references,
#: which the OpenAPI document names but does not inline (docs/epcis.md, "Capture").
EPCIS_RULES = {
    "epcis_schema_violation",
    "no_order_reference",
    "foreign_order_reference",
    "ambiguous_order_reference",
    "duplicate_event_id",
    "prefix_conflict",
}


def _body_value(case: Any, loc: list[Any]) -> Any:
    value = case.body
    for key in loc[1:]:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and str(key).isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def _documented(detail: dict[str, Any], case: Any) -> bool:
    if detail.get("type") in NON_SCHEMA_RULES:
        return True
    # JSON Schema's "integer" admits 256.0; the API takes integers written as integers
    # (strict validation, docs/api.md "No type coercion").
    loc = detail.get("loc") or []
    if detail.get("type") == "int_type" and loc[:1] == ["body"]:
        value = _body_value(case, loc)
        return isinstance(value, float) and value.is_integer()
    return False


def refusals_of_valid_input_are_documented(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid case answered 422 must be refused for a documented reason the schema
    cannot express: a contract rule (``contract_revert``: the terms' cross-field rules,
    a ruling above the price ...), a :data:`NON_SCHEMA_RULES` rule, or an integer written
    as 256.0. Any other 422 means the document promises what the validation refuses."""
    CHECKS_RUN.update(getattr(c, "__name__", repr(c)) for c in ctx.internals.checks)
    if case.meta is None or case.meta.generation.mode.is_negative or response.status_code != 422:
        return None
    body = response.json()
    if body.get("code") == "contract_revert":
        return None
    if body.get("code") in EPCIS_RULES and case.operation.path == "/epcis/capture":
        return None
    details = body.get("details") or []
    if body.get("code") == "validation_error" and all(_documented(d, case) for d in details):
        return None
    raise AssertionError(f"schema-valid input refused without a documented reason: {body}")


def _draw(case: Any) -> int:
    """A number drawn from the case itself (hypothesis drives and shrinks it)."""
    what = (case.operation.label, case.path_parameters, case.query, case.body)
    return zlib.crc32(repr(what).encode())


def point_at_seeded_data(case: Any, seeded: Seeded, draw: int) -> None:
    """Most schema-valid cases ask about seeded orders, the seeded device and its readings
    (a random id is almost always a 404, which explores nothing)."""
    from schemathesis.core.parameters import ParameterLocation

    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH):
        return
    path = case.path_parameters or {}
    if "order_id" in path and draw % 8:
        ids = seeded.ids
        path["order_id"] = ids[(draw >> 3) % len(ids)]
        if "device" in path:
            path["order_id"] = seeded.orders["Shipped"]
            path["device"] = seeded.device
        if "seq" in path:
            path["seq"] = 1 + (draw >> 7) % (seeded.readings + 1)  # committed, pending, missing
        if "batch_seq" in path:
            path["order_id"] = seeded.orders["Shipped"]  # the order with a commitment
            path["batch_seq"] = 1 + (draw >> 7) % 2


#: The party a write is meant for (the contract refuses the others by name).
ACTOR = {
    "POST /orders": "buyer",
    "POST /orders/{order_id}/accept": "supplier",
    "POST /orders/{order_id}/fund": "buyer",
    "POST /orders/{order_id}/ship": "supplier",
    "POST /orders/{order_id}/confirm-receipt": "buyer",
    "POST /orders/{order_id}/dispute": "buyer",
    "POST /orders/{order_id}/ruling": "arbiter",
    "POST /orders/{order_id}/settle": "buyer",
    "POST /orders/{order_id}/cancel": "supplier",
    "POST /orders/{order_id}/expire": "buyer",
    "POST /account/withdraw": "supplier",
}


def fuzz_case(case: Any, seeded: Seeded, **kw: Any) -> Any:
    """Send ``case`` as a party drawn from it; validate with every check.

    A case whose headers are negative without an ``X-API-Key`` is schemathesis leaving
    the key out on purpose: it goes out without one (and must be refused).
    """
    from schemathesis.core.parameters import ParameterLocation

    draw = _draw(case)
    point_at_seeded_data(case, seeded, draw >> 3)
    headers = None
    keyless = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    if not (keyless and "X-API-Key" not in (case.headers or {})):
        who = ROLES[draw % len(ROLES)]
        if (draw >> 24) % 2 and case.operation.label in ACTOR:
            who = ACTOR[case.operation.label]  # half the time, the party whose call it is
        headers = {"X-API-Key": f"dev-{who}"}
        PARTIES_USED.add(who)
    response = case.call_and_validate(
        headers=headers, additional_checks=[refusals_of_valid_input_are_documented], **kw
    )
    phase = case.meta.phase.name.value if case.meta is not None else "explicit"
    STATS[(case.operation.label, phase, response.status_code)] += 1
    return response


#: The parties whose keys the run used.
PARTIES_USED: set[str] = set()
#: The names of the checks schemathesis ran (all that are enabled: every built-in one).
CHECKS_RUN: set[str] = set()
#: (operation, phase, status) → cases answered, for the run's summary.
STATS: Counter[tuple[str, str, int]] = Counter()


def summary() -> str:
    """How many cases the run sent, by phase and by status class, and any 5xx."""
    by_phase: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    for (_, phase, status), n in STATS.items():
        by_phase[phase] += n
        by_status[f"{status // 100}xx"] += n
    ops = len({op for op, _, _ in STATS})
    return (
        f"schemathesis: {sum(STATS.values())} cases over {ops} operations; by phase "
        f"{dict(sorted(by_phase.items()))}; by status {dict(sorted(by_status.items()))}; "
        f"checks: {', '.join(sorted(CHECKS_RUN))}"
    )
