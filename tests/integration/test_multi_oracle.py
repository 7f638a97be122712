"""Several oracle processes that agree (docs/oracle.md, "Several oracles").

anvil, mosquitto from deploy/mosquitto.conf and PostgreSQL, with one, two and three
``python -m backend.oracle`` processes: each its own key (a fleet-log committer of
the deployment), its own MQTT user and client id, all in the one share group, so
the broker hands each device's readings to any of them, reading by reading.

* ``test_one_two_three_oracles_settle_alike``: the same scenarios with 1, 2 and 3
  oracles. Each run: every signed reading stored once, no seq gap, on chain at most
  one breach proof and exactly one arrival, delivery and settlement per order, fleet
  roots in batch order each once, every order settled as its scenario says; every
  process stored a share of the readings; and the settlements of the three runs are
  the same, order by order.
* ``test_one_of_three_oracles_killed_mid_run``: three oracles, one SIGKILLed while
  the devices publish and not restarted: the other two carry on, and the devices
  (keeping each reading until a receipt names it stored) send again what the dead
  one took; the broker drops its session after ``ORACLE_SESSION_EXPIRY_SECS``. The
  same checks hold.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.store.models import HandoffRow
from iot_simulator import publish
from iot_simulator.publisher import Retention
from tests.integration.oracle_stack import (
    CrashStack,
    assert_every_reading_stored_once,
    assert_no_readings_missing,
    assert_nothing_twice_on_chain,
    assert_settled_as_expected,
    chain_events,
    oracle_stack,
    wait_until_done,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

log = logging.getLogger(__name__)

#: The scenarios the oracles settle by themselves (breach by excursion and by shock,
#: a brief excursion within tolerance, late within and past the penalty cap, a
#: connectivity gap with store-and-forward, 50 concurrent orders).
SCENARIOS = [
    "cold_chain_breach.yaml",
    "rough_handling.yaml",
    "brief_excursion.yaml",
    "late_within_cap.yaml",
    "late_past_cap.yaml",
    "connectivity_gap.yaml",
    "fleet_50.yaml",
]
#: Wall seconds each fleet's publish is stretched over (the processes share it).
PUBLISH_SECONDS = 6.0

STOPPED = re.compile(
    r"oracle stopped: (\d+) readings stored here, (\d+) of them handed off to other "
    r"processes, (\d+) taken over from them"
)


def replay(stack: CrashStack, *, kill_one_after: float | None = None) -> dict[str, Any]:
    """Open and ship the scenarios, start the oracles, publish every fleet at once
    (SIGKILL the last oracle ``kill_one_after`` seconds in), wait until all is settled,
    check it, stop the oracles and return what each stored and the settlements.

    With a kill, the devices keep their readings until a receipt names them stored
    (retention): what the killed process had taken from the broker but not stored
    waits in its session, and the devices send it again to the share group."""
    retention = Retention(resend_after_s=2.0, confirm_timeout_s=60.0) if kill_one_after else None
    fleets = stack.open_and_ship(SCENARIOS)
    for oracle in stack.oracles:
        oracle.start()
    for oracle in stack.oracles:
        oracle.wait_subscribed()
    stack.move_clock_past_the_voyages()
    stats: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda f=f: stats.append(
                publish(
                    f,
                    stack.device_url,
                    speed=max(1.0, f.scenario.end_offset_s / PUBLISH_SECONDS),
                    progress=False,
                    connection="device",
                    retention=retention,
                )  # fmt: skip
            )
        )
        for f in fleets
    ]
    for t in threads:
        t.start()
    killed = None
    if kill_one_after is not None:
        time.sleep(kill_one_after)
        killed = stack.oracles[-1]
        assert killed.kill(signal.SIGKILL) == -signal.SIGKILL
        log.warning("SIGKILLed %s mid-run", killed.log.name)
    for t in threads:
        t.join(timeout=120)
    assert len(stats) == len(fleets) and all(s.refused == 0 for s in stats), stats
    assert all(s.unconfirmed == 0 for s in stats) or retention is None, stats
    wait_until_done(stack, timeout=240)
    assert_every_reading_stored_once(stack)
    assert_no_readings_missing(stack)
    totals = assert_nothing_twice_on_chain(stack)
    assert_settled_as_expected(stack)
    with Session(stack.engine) as s:
        left = s.execute(select(HandoffRow.order_id)).scalars().all()
    assert not left, f"readings of orders {sorted(set(left))} never evaluated by their owner"
    stored = {}
    for oracle in stack.oracles:
        if oracle is killed:
            continue
        oracle.stop()
        m = STOPPED.search(oracle.output())
        assert m, f"{oracle.log.name} did not stop cleanly:\n{oracle.tail()}"
        stored[oracle.log.stem] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    names = {
        f.order_ids[o.name]: f"{f.scenario.name}/{o.name}"
        for f in fleets
        for o in f.scenario.orders
    }
    settled = {
        names[int(e.args["orderId"])]: (int(e.args["buyerAmount"]), int(e.args["supplierAmount"]))
        for e in chain_events(stack)
        if e.name == "OrderSettled"
    }
    return {"stored": stored, "settled": settled, "totals": totals}


N_ORACLES = (1, 2, 3)


def test_one_two_three_oracles_settle_alike(tmp_path: Path) -> None:
    runs: dict[int, dict[str, Any]] = {}
    for n in N_ORACLES:
        with oracle_stack("postgresql", tmp_path / f"n{n}", oracles=n) as stack:
            runs[n] = replay(stack)
        stored = runs[n]["stored"]
        print(f"\n{n} oracle(s): readings (stored here, handed off, taken over) {stored}; "
              f"on chain {runs[n]['totals']}")  # fmt: skip
        assert len(stored) == n
        total = sum(here for here, _, _ in stored.values())
        for name, (here, handed, taken) in stored.items():
            # the share group spreads the devices' readings over every process, and each
            # process owns a share of the orders: it hands the others' readings to them
            assert here > total / (4 * n), f"{name} stored {here} of {total}: {stored}"
            if n > 1:
                assert handed > 0 and taken > 0, f"{name}: {stored}"
            else:
                assert handed == taken == 0, stored
        assert sum(h for _, h, _ in stored.values()) == sum(t for _, _, t in stored.values())
    assert runs[2]["settled"] == runs[1]["settled"]
    assert runs[3]["settled"] == runs[1]["settled"]
    assert runs[2]["totals"]["ExcursionProven"] == runs[1]["totals"]["ExcursionProven"]
    assert runs[3]["totals"]["ShockProven"] == runs[1]["totals"]["ShockProven"]


def test_one_of_three_oracles_killed_mid_run(tmp_path: Path) -> None:
    # the broker drops the dead process's session (and what it queued for it) after 3 s,
    # so the share group's messages go to the two others; devices resend what it took
    env = {"ORACLE_SESSION_EXPIRY_SECS": "3"}
    with oracle_stack("postgresql", tmp_path, oracles=3, oracle_env=env) as stack:
        run = replay(stack, kill_one_after=PUBLISH_SECONDS / 2)
    print(f"\nafter one of three was killed: {run['stored']}; on chain {run['totals']}")
    assert len(run["stored"]) == 2
