"""Status messages and seq gaps: a reading that never arrived is never silent."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from backend.oracle.gaps import GapConfig, GapWatch
from backend.oracle.ingest import Inbound, Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesEngine
from backend.store.models import AlertRow, DeviceRow
from backend.telemetry import status_topic
from backend.telemetry.status import StatusMessage
from testkit.readings import DEVICES, DOMAIN, KEYS, T0, msg, seed


def status(device: int, order_id: int = 1, **kw: object) -> Inbound:
    body = StatusMessage(order_id, DEVICES[device], **kw)  # type: ignore[arg-type]
    return Inbound(status_topic(order_id, DEVICES[device]), body.encode())


def device_row(engine: Engine, order_id: int, device: int) -> DeviceRow:
    with Session(engine) as s:
        return s.scalars(
            select(DeviceRow).where(
                DeviceRow.order_id == order_id, DeviceRow.device == DEVICES[device]
            )
        ).one()


def alerts(engine: Engine, kind: str) -> list[AlertRow]:
    with Session(engine) as s:
        return list(s.scalars(select(AlertRow).where(AlertRow.kind == kind).order_by(AlertRow.id)))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_status_is_recorded_on_the_binding(ingestor: Ingestor, sqlite_engine: Engine) -> None:
    res = ingestor.ingest(
        [status(0, status="online", timestamp=T0, battery_permille=870, first_seq=1, last_seq=4)]
    )
    assert [v.status for v in res.verdicts] == ["status"] and res.statuses == 1
    row = device_row(sqlite_engine, 1, 0)
    assert (row.status, row.status_at, row.battery_permille) == ("online", T0, 870)
    assert (row.reported_first_seq, row.reported_last_seq) == (1, 4)
    assert row.missing() == 4  # nothing stored yet of #1–#4
    # an older status (out of order) does not overwrite the newer one's state
    ingestor.ingest([status(0, status="offline", timestamp=T0 - 60, last_seq=2)])
    row = device_row(sqlite_engine, 1, 0)
    assert (row.status, row.reported_last_seq) == ("online", 4)


def test_statuses_that_break_the_format_or_come_from_strangers_are_refused(
    ingestor: Ingestor, metrics: Metrics
) -> None:
    topic = status_topic(1, DEVICES[0])
    dev = DEVICES[0]
    bodies = [
        "offline",
        f'{{"v":1,"status":"asleep","device":"{dev}","orderId":1}}',
        f'{{"v":1,"status":"online","device":"{dev}","orderId":2}}',
        f'{{"v":1,"status":"online","device":"{dev}","orderId":1,"lastSeq":-1}}',
        f'{{"v":1,"status":"online","device":"{dev}","orderId":1,"x":1}}',
    ]
    bad = [Inbound(topic, body.encode()) for body in bodies]
    res = ingestor.ingest([*bad, status(5, status="online")])
    assert [v.reason for v in res.verdicts] == ["bad_status"] * 5 + ["unknown_device"]
    assert metrics.get("trustship_ingest_rejected_total", reason="bad_status") == 5


def test_readings_stored_keep_the_device_counters(
    ingestor: Ingestor, sqlite_engine: Engine
) -> None:
    ingestor.ingest([msg(KEYS[0], 1, seq) for seq in (1, 2, 3, 6)])
    ingestor.ingest([msg(KEYS[0], 1, 3), msg(KEYS[0], 1, 7)])  # a duplicate does not count
    row = device_row(sqlite_engine, 1, 0)
    assert (row.reading_count, row.first_seq, row.last_seq) == (5, 1, 7)
    assert row.last_timestamp == T0 + 7 * 60 and row.missing() == 2


def _watch(engine: Engine, metrics: Metrics, grace: float, clock: Clock) -> GapWatch:
    return GapWatch(sessionmaker(engine), metrics, GapConfig(grace_secs=grace), clock=clock)


def test_a_gap_is_reported_once_after_the_grace_period_and_its_filling_too(
    sqlite_engine: Engine, metrics: Metrics
) -> None:
    seed(sqlite_engine, {1: [0]})
    ing = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    clock = Clock()
    watch = _watch(sqlite_engine, metrics, 30.0, clock)
    ing.ingest([msg(KEYS[0], 1, seq) for seq in (1, 2, 3, 4, 5, 8, 9, 10)])
    assert watch.check().alerts == []  # may still arrive: within the grace period
    assert metrics.get("trustship_ingest_missing_readings") == 2
    clock.t += 31
    (alert,) = watch.check().alerts
    assert (alert.kind, alert.severity) == ("seq_gap", "critical")
    assert alert.data["firstMissing"] == 6 and alert.data["lastMissing"] == 7
    assert "2 readings #6–#7" in alert.message and "#10 did" in alert.message
    clock.t += 31
    assert watch.check().alerts == []  # reported once
    assert metrics.get("trustship_ingest_seq_gaps_total") == 1
    # #6 arrives late: what is left of the gap was reported already
    ing.ingest([msg(KEYS[0], 1, 6)])
    clock.t += 31
    assert watch.check().alerts == []
    ing.ingest([msg(KEYS[0], 1, 7)])
    (filled,) = watch.check().alerts
    assert filled.kind == "seq_gap_filled" and filled.data["firstMissing"] == 6
    assert metrics.get("trustship_ingest_missing_readings") == 0
    assert [a.dedup_key for a in alerts(sqlite_engine, "seq_gap")] == [
        f"seq_gap:1:{DEVICES[0]}:6-7"
    ]


def test_readings_the_device_says_it_sent_but_never_arrived_are_a_gap(
    sqlite_engine: Engine, metrics: Metrics
) -> None:
    """The oldest and the newest readings missing: only the status reveals them."""
    seed(sqlite_engine, {1: [0]})
    ing = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    ing.ingest([msg(KEYS[0], 1, seq) for seq in (3, 4)])
    ing.ingest([status(0, status="online", timestamp=T0 + 600, first_seq=1, last_seq=6)])
    out = _watch(sqlite_engine, metrics, 0.0, Clock()).check()
    assert [(a.data["firstMissing"], a.data["lastMissing"]) for a in out.alerts] == [(1, 2), (5, 6)]
    assert "the device reports #6 as its newest" in out.alerts[1].message
    assert metrics.get("trustship_ingest_missing_readings") == 4


def test_a_logger_reused_on_a_later_order_starts_its_seq_again(
    sqlite_engine: Engine, metrics: Metrics
) -> None:
    seed(sqlite_engine, {1: [0], 2: [0]})
    ing = Ingestor(sqlite_engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    first = ing.ingest([msg(KEYS[0], 1, seq) for seq in (1, 2, 3)])
    again = ing.ingest([msg(KEYS[0], 2, seq) for seq in (1, 2, 3)])
    assert first.stored == again.stored == 3
    assert device_row(sqlite_engine, 2, 0).reading_count == 3
    assert _watch(sqlite_engine, metrics, 0.0, Clock()).check().alerts == []
