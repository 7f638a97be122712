"""The oracle on real servers, as a separate process: anvil, mosquitto from
deploy/mosquitto.conf (dynamic security, persistence, its queue limits), SQLite or
PostgreSQL, and ``python -m backend.oracle`` with a fixed client id (= its MQTT
user), so its persistent session outlives every restart.

:func:`oracle_stack` builds it; the ``assert_*`` helpers check what must hold
after a replay: every signed reading stored once, nothing done twice on chain,
every order settled as its scenario says.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from backend.chain.connection import Chain, connect
from backend.chain.contracts import OrderState
from backend.chain.deploy import Deployment, deploy_all
from backend.core.settings import Settings
from backend.store.db import make_engine
from backend.store.models import CommitmentRow, DeviceRow, OutboxRow, ReadingRow
from backend.telemetry import reading_digest
from backend.telemetry.fleet import fleet_tree
from iot_simulator import Fleet, build_fleet, load_scenario
from iot_simulator.credentials import device_credentials
from iot_simulator.scenario import Scenario
from testkit import REPO
from testkit.databases import fresh_postgres_database
from testkit.oracle_process import OracleProcess
from testkit.servers import Server, start_anvil, start_secured_mosquitto
from trustship.stack import DirectDriver

log = logging.getLogger(__name__)

SCENARIOS = REPO / "scenarios"
ORACLE_PASSWORD = "crash-test-oracle-password"
#: Seconds of scenario time the chain clock is moved past the end of the voyage.
CLOCK_MARGIN_S = 60


# ---------------------------------------------------------------------------
# the stack: anvil, mosquitto (deploy config), a database, the oracle process
# ---------------------------------------------------------------------------


@dataclass
class CrashStack:
    anvil: Server
    broker: Server
    chain: Chain
    deployment: Deployment
    driver: DirectDriver
    oracle: OracleProcess
    engine: Engine
    database_url: str
    fleets: list[Fleet] = field(default_factory=list)
    #: every oracle process (``oracle`` is the first); one share group, one database
    oracles: list[OracleProcess] = field(default_factory=list)

    @property
    def device_url(self) -> str:
        """Devices log in with their own credentials (publish(connection="device"))."""
        return f"mqtt://127.0.0.1:{self.broker.port}"

    def open_and_ship(self, names: list[str | Scenario]) -> list[Fleet]:
        """Open, fund and accept each scenario's orders (a file in scenarios/ or a
        scenario already loaded), then ship them (devices bound)."""
        for name in names:
            scenario = name if isinstance(name, Scenario) else load_scenario(SCENARIOS / name)
            t0 = self.chain.now() + 1
            ids = self.driver.open_orders(scenario, t0, log.info)
            fleet = build_fleet(scenario, self.driver.domain, ids, t0=t0)
            self.driver.ship(fleet, log.info, [o.name for o in scenario.orders])
            self.fleets.append(fleet)
        return self.fleets

    def move_clock_past_the_voyages(self) -> None:
        target = max(
            f.end_time + max(o.terms.dispute_window_s for o in f.scenario.orders) + CLOCK_MARGIN_S
            for f in self.fleets
        )
        if target > self.chain.now():
            self.chain.time_travel(target)

    def order_ids(self) -> list[int]:
        return sorted(oid for f in self.fleets for oid in f.order_ids.values())


@contextlib.contextmanager
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'oracle.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@contextlib.contextmanager
def oracle_stack(
    backend: str,
    tmp_path: Path,
    *,
    oracle_env: dict[str, str] | None = None,
    broker_admins: dict[str, str] | None = None,
    oracles: int = 1,
) -> Iterator[CrashStack]:
    """anvil, mosquitto from deploy/mosquitto.conf (every catalogue device admitted with
    its own login), a database (``sqlite`` or ``postgresql``) and ``oracles`` oracle
    processes (not started), all stopped by PID on exit. ``oracle_env`` adds to their
    environment; ``broker_admins`` are dynamic-security admin logins on the broker.

    Several oracles (docs/oracle.md) each have their own key (a fleet-log committer
    named in the deployment manifest, its log opened), their own MQTT user and client
    id (``oracle``, ``oracle2`` ...), and share the default share group and database."""
    devices = device_credentials(sorted(SCENARIOS.glob("*.yaml")))
    users = ["oracle", *(f"oracle{i}" for i in range(2, oracles + 1))]
    with contextlib.ExitStack() as stack:
        anvil = start_anvil()
        stack.callback(anvil.stop)
        broker = start_secured_mosquitto(
            devices, oracles={u: ORACLE_PASSWORD for u in users}, admins=broker_admins
        )
        stack.callback(broker.stop)
        database_url = stack.enter_context(database(backend, tmp_path))
        settings = Settings(_env_file=None, RPC_URL=anvil.extra["url"], DEV_MODE=True)  # type: ignore[call-arg]
        chain = connect(settings)
        keys = [settings.ORACLE_PRIVATE_KEY.get_secret_value()]
        for _ in users[1:]:
            extra = Account.create()
            chain.request("anvil_setBalance", extra.address, hex(10**21))
            keys.append("0x" + bytes(extra.key).hex())
        deployment_file = tmp_path / "deployment.json"
        deployment = deploy_all(
            chain,
            oracle_addresses=[Account.from_key(k).address for k in keys],
            write_to=deployment_file,
        )
        driver = DirectDriver(chain, deployment, f"mqtt://127.0.0.1:{broker.port}")
        processes = []
        for user, key in zip(users, keys, strict=True):
            process = OracleProcess(
                {
                    "RPC_URL": anvil.extra["url"],
                    "MQTT_URL": f"mqtt://{user}:{ORACLE_PASSWORD}@127.0.0.1:{broker.port}",
                    "DATABASE_URL": database_url,
                    "DEPLOYMENT_FILE": str(deployment_file),
                    "ORACLE_CLIENT_ID": user,
                    "ORACLE_PRIVATE_KEY": key,
                    "DEV_MODE": "true",
                    "LOG_LEVEL": "INFO",
                    # small batches and short polls, so that commits and transactions
                    # happen throughout the replay (and kills land among them)
                    "ORACLE_COMMIT_MAX_AGE_SECS": "1.5",
                    "ORACLE_COMMIT_MAX_READINGS": "200",
                    "ORACLE_INDEXER_POLL_SECS": "0.5",
                    "ORACLE_OUTBOX_POLL_SECS": "0.2",
                    **(oracle_env or {}),
                },
                tmp_path / f"{user}.log",
            )
            stack.callback(process.stop)  # by PID, before the servers it talks to
            processes.append(process)
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        yield CrashStack(
            anvil, broker, chain, deployment, driver, processes[0], engine, database_url,
            oracles=processes,
        )  # fmt: skip


# ---------------------------------------------------------------------------
# what must hold at the end
# ---------------------------------------------------------------------------


def expected_readings(stack: CrashStack) -> dict[tuple[str, int], tuple[int, bytes]]:
    """(device, seq) → (order id, digest) for every reading of every bound device."""
    out: dict[tuple[str, int], tuple[int, bytes]] = {}
    for fleet in stack.fleets:
        for dev in fleet.devices:  # bound at shipment (spoofers are not)
            for _sample, signed in fleet.readings(dev):
                r = signed.reading
                out[(signed.device, r.seq)] = (r.order_id, reading_digest(r, fleet.domain))
    return out


def assert_every_reading_stored_once(stack: CrashStack, *, only_these_orders: bool = False) -> int:
    """Every reading of ``stack.fleets`` stored once, as signed, and nothing else stored
    (``only_these_orders``: rows of other orders are not looked at)."""
    expected = expected_readings(stack)
    query = select(ReadingRow.device, ReadingRow.seq, ReadingRow.order_id, ReadingRow.digest)
    if only_these_orders:
        query = query.where(ReadingRow.order_id.in_(stack.order_ids()))
    with Session(stack.engine) as s:
        rows = s.execute(query).all()
    stored = Counter((d, int(q)) for d, q, _, _ in rows)
    twice = [k for k, n in stored.items() if n > 1]
    assert not twice, f"readings stored more than once: {twice[:10]}"
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    assert not missing, f"{len(missing)} readings lost, e.g. {missing[:10]}"
    assert not extra, f"{len(extra)} readings stored that no bound device signed: {extra[:10]}"
    for d, q, order_id, digest in rows:
        assert expected[(d, int(q))] == (int(order_id), bytes(digest)), (d, q)
    assert len(rows) == len(expected)
    return len(rows)


def chain_events(stack: CrashStack) -> list[Any]:
    c = stack.driver.contracts
    addresses = [c.purchase_orders.address, c.quality.address, c.escrow.address]
    logs = stack.chain.w3.eth.get_logs(
        {"fromBlock": stack.deployment.block_number, "toBlock": "latest", "address": addresses}
    )
    return stack.chain.registry.decode_logs(logs)


def assert_nothing_twice_on_chain(stack: CrashStack) -> dict[str, int]:
    """One breach proof at most, one arrival/delivery/settlement per order; the fleet
    roots in batch order, each once; every reading in exactly one committed batch whose
    root the chain holds (rebuilt from the stored readings, in the recorded order)."""
    by_order: dict[int, Counter[str]] = defaultdict(Counter)
    batches: list[tuple[int, bytes, int]] = []
    arrival_txs: dict[int, set[str]] = defaultdict(set)
    for e in chain_events(stack):
        if e.name == "ArrivalProven":  # one per reading: a quorum of 2 proves with two
            arrival_txs[int(e.args["orderId"])].add(e.tx_hash)
        if e.name == "FleetRootCommitted":
            batches.append(
                (int(e.args["batchSeq"]), bytes(e.args["root"]), int(e.args["readingCount"]))
            )
        if "orderId" not in e.args:
            continue
        by_order[int(e.args["orderId"])][e.name] += 1
    expected_breach = {
        f.order_ids[o.name]: o.expected.breach for f in stack.fleets for o in f.scenario.orders
    }
    totals: Counter[str] = Counter({"FleetRootCommitted": len(batches)})
    seqs = [b[0] for b in batches]
    assert seqs == list(range(1, len(seqs) + 1)), f"fleet batchSeq {seqs}"
    with Session(stack.engine) as s:
        for oid in stack.order_ids():
            events = by_order[oid]
            totals.update(events)
            proofs = events["ExcursionProven"] + events["ShockProven"]
            assert proofs == int(expected_breach[oid]), f"order {oid}: {dict(events)}"
            assert len(arrival_txs[oid]) == 1, f"order {oid}: arrival proofs {arrival_txs[oid]}"
            for name in ("OrderDelivered", "OrderSettled"):
                assert events[name] == 1, f"order {oid}: {name} × {events[name]}: {dict(events)}"
        rows = s.scalars(select(CommitmentRow)).all()
        recorded = {int(r.batch_seq): r for r in rows}
        assert sorted(recorded) == seqs, f"DB batches {sorted(recorded)}"
        readings = {
            int(i): (int(o), str(d), bytes(g))
            for i, o, d, g in s.execute(
                select(ReadingRow.id, ReadingRow.order_id, ReadingRow.device, ReadingRow.digest)
            ).all()
        }
        covered: Counter[int] = Counter()
        for seq, root, count in batches:
            ids = [int(i) for i in recorded[seq].reading_ids]
            covered.update(ids)
            assert len(ids) == count, f"batch {seq}: {len(ids)} ≠ {count}"
            assert fleet_tree([readings[i] for i in ids]).root == root, f"batch {seq}: root"
        assert set(covered) == set(readings), "readings outside every batch"
        assert max(covered.values(), default=1) == 1, "a reading in 2 batches"
    return dict(totals)


def assert_settled_as_expected(stack: CrashStack) -> None:
    settled = {
        int(e.args["orderId"]): (int(e.args["buyerAmount"]), int(e.args["supplierAmount"]))
        for e in chain_events(stack)
        if e.name == "OrderSettled"
    }
    po = stack.driver.contracts.po
    wrong = []
    for fleet in stack.fleets:
        for order in fleet.scenario.orders:
            oid = fleet.order_ids[order.name]
            got = po.get_order(oid)
            exp = order.expected
            deadline = po.terms_of(oid).delivery_deadline
            late = max(0, int(got.delivered_at or 0) - int(deadline))
            actual = (OrderState(got.state), settled.get(oid), bool(got.breached), late)
            wanted = (OrderState.SETTLED, (exp.buyer, exp.supplier), exp.breach, exp.late_s)
            if actual != wanted:
                wrong.append(f"{fleet.scenario.name}/{order.name} (#{oid}): {actual} ≠ {wanted}")
    assert not wrong, "\n".join(wrong)


def outbox_summary(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {
            f"{k}:{st}": int(n)
            for k, st, n in s.execute(
                select(OutboxRow.kind, OutboxRow.status, func.count()).group_by(
                    OutboxRow.kind, OutboxRow.status
                )
            )
        }


def wait_until_done(stack: CrashStack, timeout: float) -> None:
    """Every order settled on chain, every reading committed, the outbox empty."""
    po = stack.driver.contracts.po
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        if not any(o.alive for o in stack.oracles):
            raise AssertionError(f"the oracle exited:\n{stack.oracle.tail()}")
        unsettled = [o for o in stack.order_ids() if po.get_order(o).state != OrderState.SETTLED]
        with Session(stack.engine) as s:
            uncommitted = s.scalar(select(func.count()).where(ReadingRow.batch_seq.is_(None)))
            pending_commits = s.scalar(select(func.count()).where(CommitmentRow.status != "done"))
            unfinished = s.scalar(select(func.count()).where(OutboxRow.status != "done"))
        state = (
            f"unsettled orders {unsettled[:10]}, uncommitted readings {uncommitted}, "
            f"commitments not done {pending_commits}, outbox not done {unfinished} "
            f"{outbox_summary(stack.engine)}"
        )
        if not unsettled and not uncommitted and not pending_commits and not unfinished:
            return
        time.sleep(0.5)
    raise AssertionError(f"not done after {timeout:.0f} s: {state}\n{stack.oracle.tail()}")


def assert_no_readings_missing(stack: CrashStack) -> None:
    """The oracle's own seq-gap view agrees: no bound device misses a reading."""
    with Session(stack.engine) as s:
        rows = s.scalars(select(DeviceRow)).all()
    gaps = {(r.order_id, r.device): r.missing() for r in rows if r.missing()}
    assert not gaps, f"devices with readings missing: {gaps}"
