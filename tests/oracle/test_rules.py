"""Streaming rules: the contract's excursion definition, shock, arrival, warnings, ordering."""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.domain.alert import RISK_ALERT_KINDS
from backend.oracle.ingest import Inbound, Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesConfig, RulesEngine, write_outputs
from backend.store import repositories as repo
from testkit.readings import DEST, DEVICES, DOMAIN, KEYS, T0, msg, seed

HOT = 1000  # 10 °C, above the 8 °C maximum
IN_BOX = {"latitude_e6": DEST[0] + 1_000, "longitude_e6": DEST[1] - 19_000}


def outbox(engine: Engine, order_id: int = 1) -> dict[str, repo.OutboxRow]:
    with Session(engine) as s:
        return {o.dedup_key: o for o in repo.outbox_for(s, order_id)}


def alerts(engine: Engine, order_id: int = 1) -> list[repo.AlertRow]:
    """The rules' own alerts (the risk model's forecasts are tested in tests/risk)."""
    with Session(engine) as s:
        rows = repo.alerts_for(s, order_id, limit=10_000)
    return [a for a in rows if a.kind not in RISK_ALERT_KINDS]


def seqs_of(engine: Engine, reading_ids: list[int]) -> list[int]:
    with Session(engine) as s:
        return [r.seq for r in repo.readings_by_ids(s, reading_ids)]


def hot(seq: int, key: bytes = KEYS[0], **kw: int) -> Inbound:
    return msg(key, 1, seq, temperature_centi_c=HOT, **kw)


def test_excursion_longer_than_tolerated_is_proven_with_the_shortest_run(
    ingestor: Ingestor, sqlite_engine: Engine
) -> None:
    # Tolerated 600 s, one reading a minute: seq 10..20 spans exactly 600 s (not enough).
    ingestor.ingest([msg(KEYS[0], 1, s) for s in range(1, 10)] + [hot(s) for s in range(10, 21)])
    assert "breach:1" not in outbox(sqlite_engine)
    assert [a.kind for a in alerts(sqlite_engine)] == ["excursion_started"]
    ingestor.ingest([hot(21), hot(22)])
    entry = outbox(sqlite_engine)["breach:1"]
    assert entry.kind == "prove_excursion" and entry.rank == 0
    assert seqs_of(sqlite_engine, entry.payload["reading_ids"]) == list(range(10, 22))
    assert entry.payload["ended_at"] - entry.payload["started_at"] == 660
    kinds = [a.kind for a in alerts(sqlite_engine)]
    assert kinds == ["excursion_started", "breach_detected"]


def test_out_of_order_and_late_readings_give_the_same_evidence(
    ingestor: Ingestor, sqlite_engine: Engine
) -> None:
    readings = [hot(s) for s in range(1, 13)]
    random.Random(7).shuffle(readings)
    for i in range(0, 12, 3):  # four batches, shuffled
        ingestor.ingest(readings[i : i + 3])
    entry = outbox(sqlite_engine)["breach:1"]
    assert seqs_of(sqlite_engine, entry.payload["reading_ids"]) == list(range(1, 13))


def test_a_gap_breaks_the_run_until_the_late_reading_fills_it(
    ingestor: Ingestor, sqlite_engine: Engine
) -> None:
    ingestor.ingest([hot(s) for s in range(1, 14) if s != 6])
    assert "breach:1" not in outbox(sqlite_engine)  # 1-5 and 7-13 are each ≤ 600 s
    ingestor.ingest([hot(6)])  # store-and-forward delivers it late
    entry = outbox(sqlite_engine)["breach:1"]
    assert seqs_of(sqlite_engine, entry.payload["reading_ids"]) == list(range(1, 13))


def test_non_increasing_timestamps_or_an_in_range_reading_break_the_run(
    ingestor: Ingestor, sqlite_engine: Engine
) -> None:
    batch = [hot(s) for s in range(1, 8)]
    batch.append(hot(8, timestamp=T0 + 7 * 60))  # same timestamp as seq 7
    batch += [hot(s) for s in range(9, 15)]
    batch.append(msg(KEYS[0], 1, 15))  # back in range
    batch += [hot(s) for s in range(16, 26)]
    ingestor.ingest(batch)
    assert "breach:1" not in outbox(sqlite_engine)


def test_humidity_counts_only_when_checked(sqlite_engine: Engine, metrics: Metrics) -> None:
    seed(sqlite_engine, {1: [0]}, max_humidity_permille=900)
    seed(sqlite_engine, {2: [2]}, max_humidity_permille=0)
    ing = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    ing.ingest([msg(KEYS[0], 1, s, humidity_permille=950) for s in range(1, 13)])
    ing.ingest([msg(KEYS[2], 2, s, humidity_permille=1000) for s in range(1, 13)])
    assert outbox(sqlite_engine, 1)["breach:1"].kind == "prove_excursion"
    assert outbox(sqlite_engine, 2) == {}


def test_shock_is_one_breach_proof_per_order(ingestor: Ingestor, sqlite_engine: Engine) -> None:
    ingestor.ingest([msg(KEYS[0], 1, 1, shock_milli_g=5_000)])  # at the limit: fine
    assert outbox(sqlite_engine) == {}
    ingestor.ingest([msg(KEYS[0], 1, 2, shock_milli_g=5_001)])
    entry = outbox(sqlite_engine)["breach:1"]
    assert entry.kind == "prove_shock" and seqs_of(
        sqlite_engine, [entry.payload["reading_id"]]
    ) == [2]
    # A later excursion does not queue a second breach proof.
    ingestor.ingest([hot(s) for s in range(3, 20)])
    assert [o.kind for o in outbox(sqlite_engine).values()] == ["prove_shock"]
    assert "shock" in [a.kind for a in alerts(sqlite_engine)]


def test_arrival_is_the_earliest_reading_inside_the_box(
    ingestor: Ingestor, sqlite_engine: Engine
) -> None:
    ingestor.ingest([msg(KEYS[0], 1, s) for s in range(1, 5)])
    ingestor.ingest([msg(KEYS[0], 1, 9, **IN_BOX)])
    entry = outbox(sqlite_engine)["arrival:1"]
    assert entry.kind == "prove_arrival" and entry.rank == 1
    assert entry.payload["timestamp"] == T0 + 9 * 60 and entry.payload["devices"] == [DEVICES[0]]
    assert entry.next_attempt_at > time.time()  # held back briefly for breach evidence
    ingestor.ingest([msg(KEYS[1], 1, 3, **IN_BOX)])  # the other device got there earlier
    assert outbox(sqlite_engine)["arrival:1"].payload["timestamp"] == T0 + 3 * 60
    assert outbox(sqlite_engine)["arrival:1"].payload["devices"] == [DEVICES[1]]
    ingestor.ingest([msg(KEYS[0], 1, 10, **IN_BOX)])
    assert outbox(sqlite_engine)["arrival:1"].payload["timestamp"] == T0 + 3 * 60
    # Just outside the box on one axis: not an arrival for order 2.
    outside = {"latitude_e6": DEST[0] + DEST[2] + 1, "longitude_e6": DEST[1]}
    ingestor.ingest([msg(KEYS[2], 2, 1, **outside)])
    assert outbox(sqlite_engine, 2) == {}


def test_breach_evidence_goes_before_the_arrival_proof(
    ingestor: Ingestor, sqlite_engine: Engine
) -> None:
    ingestor.ingest([msg(KEYS[0], 1, 30, **IN_BOX)])
    ingestor.ingest([hot(s, KEYS[1]) for s in range(1, 13)])
    with Session(sqlite_engine) as s:
        ready = repo.ready_actions(s, now=time.time() + 60)
    assert [r.kind for r in ready] == ["prove_excursion"]


def test_readings_before_shipment_are_not_evidence(sqlite_engine: Engine, metrics: Metrics) -> None:
    seed(sqlite_engine, {1: [0]}, shipped_at=T0 + 5 * 60)
    ing = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    ing.ingest([hot(s) for s in range(1, 16)])  # 5..15 is only 600 s after shipment
    assert "breach:1" not in outbox(sqlite_engine)
    ing.ingest([hot(16)])
    entry = outbox(sqlite_engine)["breach:1"]
    assert seqs_of(sqlite_engine, entry.payload["reading_ids"]) == list(range(5, 17))


def test_no_chain_actions_unless_in_transit(sqlite_engine: Engine, metrics: Metrics) -> None:
    seed(sqlite_engine, {1: [0]}, state="Delivered")
    ing = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    ing.ingest([hot(s) for s in range(1, 15)] + [msg(KEYS[0], 1, 20, shock_milli_g=9000, **IN_BOX)])
    assert outbox(sqlite_engine) == {}
    kinds = {a.kind for a in alerts(sqlite_engine)}
    assert {"excursion_started", "breach_detected", "shock"} <= kinds


def test_door_and_flags_alert_on_the_transition(ingestor: Ingestor, sqlite_engine: Engine) -> None:
    ingestor.ingest([msg(KEYS[0], 1, s, flags=1 if 3 <= s <= 6 else 0) for s in range(1, 10)])
    ingestor.ingest([msg(KEYS[0], 1, 12, flags=1 | 2)])
    got = [(a.kind, a.data["seq"]) for a in alerts(sqlite_engine)]
    assert got == [("door_open", 3), ("door_open", 12), ("tamper", 12)]


def test_trend_warning_while_still_in_range(ingestor: Ingestor, sqlite_engine: Engine) -> None:
    # +0.2 °C a minute from 5 °C: 8 °C is about 8 minutes past the eighth reading.
    ingestor.ingest([msg(KEYS[0], 1, s, temperature_centi_c=500 + 20 * s) for s in range(1, 9)])
    trend = [a for a in alerts(sqlite_engine) if a.kind == "trend"]
    assert len(trend) == 1 and trend[0].data["side"] == "high"
    assert 0 < trend[0].data["etaSecs"] <= 1800 and "recoverable" in trend[0].message
    ingestor.ingest([msg(KEYS[0], 1, 9, temperature_centi_c=680)])  # same episode: no repeat
    assert len([a for a in alerts(sqlite_engine) if a.kind == "trend"]) == 1
    # Falling towards the minimum on the other device.
    ingestor.ingest([msg(KEYS[1], 1, s, temperature_centi_c=500 - 30 * s) for s in range(1, 9)])
    sides = sorted(a.data["side"] for a in alerts(sqlite_engine) if a.kind == "trend")
    assert sides == ["high", "low"]


def test_steady_readings_raise_nothing(ingestor: Ingestor, sqlite_engine: Engine) -> None:
    ingestor.ingest([msg(KEYS[0], 1, s, temperature_centi_c=500 + (s % 3)) for s in range(1, 60)])
    assert alerts(sqlite_engine) == [] and outbox(sqlite_engine) == {}


def test_silent_device_raises_one_alert(sqlite_engine: Engine, metrics: Metrics) -> None:
    seed(sqlite_engine, {1: [0, 1]})
    rules = RulesEngine(RulesConfig(silence_factor=5, silence_min_secs=60))
    ing = Ingestor(sqlite_engine, DOMAIN, rules=rules, metrics=metrics)
    ing.ingest(
        [msg(KEYS[0], 1, s) for s in range(1, 6)] + [msg(KEYS[1], 1, s) for s in range(1, 6)]
    )
    now = time.time()
    with Session(sqlite_engine) as s, s.begin():
        assert rules.check_silence(s, now + 200).alerts == []  # 5 × 60 s not yet over
        out = rules.check_silence(s, now + 400)
        assert sorted(a.device or "" for a in out.alerts) == sorted(DEVICES[:2])
        write_outputs(s, out)
        write_outputs(s, rules.check_silence(s, now + 500))  # same silence: deduplicated
    assert [a.kind for a in alerts(sqlite_engine)] == ["silence", "silence"]


def test_a_restarted_engine_continues_a_run_from_the_database(
    sqlite_engine: Engine, metrics: Metrics
) -> None:
    seed(sqlite_engine, {1: [0]})
    Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics).ingest(
        [hot(s) for s in range(1, 8)]
    )
    fresh = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)  # "restart"
    fresh.ingest([hot(s) for s in range(8, 13)])
    entry = outbox(sqlite_engine)["breach:1"]
    assert seqs_of(sqlite_engine, entry.payload["reading_ids"]) == list(range(1, 13))


def test_late_reading_older_than_the_window_is_judged_from_the_database(
    sqlite_engine: Engine, metrics: Metrics
) -> None:
    seed(sqlite_engine, {1: [0]})
    ing = Ingestor(
        sqlite_engine, DOMAIN, rules=RulesEngine(RulesConfig(window=16)), metrics=metrics
    )
    ing.ingest([hot(s) for s in range(1, 13) if s != 4])
    ing.ingest([msg(KEYS[0], 1, s) for s in range(13, 80)])  # pushes 1..12 out of the window
    assert "breach:1" not in outbox(sqlite_engine)
    ing.ingest([hot(4)])
    entry = outbox(sqlite_engine)["breach:1"]
    assert seqs_of(sqlite_engine, entry.payload["reading_ids"]) == list(range(1, 13))


@pytest.mark.parametrize("tolerated", [0, 59, 60])
def test_tolerance_boundary_is_strict(
    sqlite_engine: Engine, metrics: Metrics, tolerated: int
) -> None:
    seed(sqlite_engine, {1: [0]}, tolerated_excursion_secs=tolerated)
    ing = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    ing.ingest([hot(1), hot(2)])  # 60 s apart
    assert ("breach:1" in outbox(sqlite_engine)) == (tolerated < 60)
