"""The rules engine's risk feed (backend/oracle/rules.py → backend/risk): a stream of
readings gives the same risk alerts and kept snapshots however ingest cuts it into
batches (the risk model itself is tested in tests/risk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from backend.domain.alert import RISK_ALERT_KINDS, AlertKind
from backend.oracle.ingest import Inbound, Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesEngine
from backend.store import repositories as repo
from backend.store.models import AlertRow, RiskSnapshotRow
from testkit.databases import copy_sqlite
from testkit.readings import DEVICES, DOMAIN, KEYS, ORIGIN, T0, msg, seed

EVERY = 120  # seconds between a device's readings
TOLERATED = 1800
SEQS = range(1, 81)


def reading(device: int, seq: int) -> Inbound:
    """Order 1 in transit east from Rotterdam, two loggers in one container. Device 0
    holds 5 °C, then warms 0.3 °C a reading from seq 41: over 8 °C from seq 51, a breach
    provable at seq 67. Device 1 holds 5 °C with the doors open at seqs 20–21 (a spike),
    a rough knock at seq 30 and a slower warming from seq 51."""
    temp = 500 + seq % 3
    flags = shock = 0
    if device == 0 and seq > 40:
        temp = 500 + 30 * (seq - 40)
    if device == 1:
        if seq in (20, 21):
            temp, flags = 900, 1
        if seq == 30:
            shock = 4_000
        if seq > 50:
            temp = 500 + 15 * (seq - 50)
    return msg(
        KEYS[device], 1, seq, timestamp=T0 + EVERY * seq, temperature_centi_c=temp,
        shock_milli_g=shock, flags=flags,
        latitude_e6=ORIGIN[0], longitude_e6=ORIGIN[1] + 50_000 * seq,
    )  # fmt: skip


#: both devices' readings in the order they are taken (time, then device)
STREAM = [reading(d, s) for s in SEQS for d in sorted((0, 1), key=lambda i: DEVICES[i])]


def risk_of(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The order's risk alerts and kept snapshots, in the order they were stored."""
    with Session(engine) as s:
        alerts = s.scalars(
            select(AlertRow)
            .where(AlertRow.order_id == 1, AlertRow.kind.in_(RISK_ALERT_KINDS))
            .order_by(AlertRow.id)
        )
        got = [(a.kind, a.device, a.at, a.dedup_key, a.data) for a in alerts]
        snaps = s.scalars(
            select(RiskSnapshotRow)
            .where(RiskSnapshotRow.order_id == 1)
            .order_by(RiskSnapshotRow.id)
        )
        kept = [(x.at, x.score, x.reasons, x.eta, x.breach_in_secs, x.state) for x in snaps]
    return got, kept


def ingest_in(template: Path, where: Path, size: int) -> Engine:
    """A fresh database with order 1, the stream ingested in batches of ``size``."""
    where.mkdir()
    engine = copy_sqlite(template, where / "trustship.db")
    seed(engine, {1: [0, 1]}, tolerated_excursion_secs=TOLERATED)
    ing = Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=Metrics())
    for i in range(0, len(STREAM), size):
        result = ing.ingest(STREAM[i : i + size])
        assert result.stored == len(STREAM[i : i + size])
    return engine


def test_risk_alerts_and_snapshots_do_not_depend_on_the_batches(
    migrated_template: Path, tmp_path: Path
) -> None:
    runs = {}
    for size in (1, 37, len(STREAM)):  # one reading per batch, a few batches, one batch
        engine = ingest_in(migrated_template, tmp_path / f"batch-{size}", size)
        try:
            runs[size] = risk_of(engine)
            with Session(engine) as s:
                stored = repo.alerts_for(s, 1, limit=10_000)
        finally:
            engine.dispose()
        detected = [a for a in stored if a.kind == AlertKind.BREACH_DETECTED]
        assert [(a.device, a.at) for a in detected] == [(DEVICES[0], T0 + EVERY * 67)]
        # alerts are stored in the time order of what they are about: every warning
        # before the breach it warned of, whichever batch held the breach
        assert [a.at for a in stored] == sorted(a.at for a in stored)
    # In one batch the rules see the whole of device 0's window (loaded from the
    # database with the batch in it) at its first hot reading, seq 51, and queue the
    # breach there with evidence up to seq 67: the model counts it from seq 67.
    alerts, snaps = runs[1]
    # the stream exercises the model: a warning of device 0's breach before it is
    # provable, one of the knock, a score that rises to its level alert, then 100
    breach_at = T0 + EVERY * 67
    warned = {(a[1], a[4]["cause"]): a[2] for a in alerts if a[0] == AlertKind.RISK_BREACH}
    assert warned[(DEVICES[1], "shock")] == T0 + EVERY * 30
    assert warned[(DEVICES[0], "temperature")] < breach_at
    assert AlertKind.RISK_LEVEL in [a[0] for a in alerts]
    assert max(x[1] for x in snaps if x[0] < breach_at) < 100
    assert [x[1] for x in snaps if x[0] >= breach_at][0] == 100
    assert any(x[3] is not None for x in snaps), "the ETA is read"
    for size, got in runs.items():
        assert got[0] == alerts, f"risk alerts with batches of {size}"
        assert got[1] == snaps, f"risk snapshots with batches of {size}"
