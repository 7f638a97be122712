"""Seq gaps: readings that never arrived while later ones did.

A reading the broker loses (or an attacker makes it lose) must never be silent.
Ingest keeps, per bound device and order, how many readings are stored and the
lowest and highest seq among them (``devices`` table, updated in the storing
transaction); the device's status messages add the first and newest seq it says
it has sent. Inside that range, ``last - first + 1 - count`` readings are missing.

:class:`GapWatch` runs every few seconds in the ingest worker: for each device of a
live order with readings missing it finds the missing seq ranges, and a range still
missing ``grace_secs`` after it was first seen (store-and-forward flushes and
redeliveries arrive late, so not at once) becomes a critical ``seq_gap`` alert,
counted on ``/metrics``; ``GET /orders/{id}/gaps`` shows the same ranges. When the
readings of a reported range arrive after all, a ``seq_gap_filled`` alert says so.
Alerts carry dedup keys, so several oracle processes (or a restart) raise each once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from backend.domain.alert import AlertKind, Severity
from backend.oracle.metrics import Metrics
from backend.oracle.rules import AlertIntent, RulesOutput, write_outputs
from backend.store import repositories as repo
from backend.store.models import DeviceRow

log = logging.getLogger(__name__)

#: (order id, device, first missing seq, last missing seq)
RangeKey = tuple[int, str, int, int]


@dataclass(frozen=True, slots=True)
class GapConfig:
    #: How often the devices are checked.
    interval_secs: float = 5.0
    #: How long a range must stay missing before it is reported.
    grace_secs: float = 30.0


def describe(a: int, b: int) -> str:
    return f"#{a}" if a == b else f"#{a}–#{b}"


class GapWatch:
    """Reports seq gaps as alerts and keeps the ``missing_readings`` gauge."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        metrics: Metrics,
        config: GapConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.config = config or GapConfig()
        self.clock = clock
        self.wall_clock = wall_clock
        #: When each missing range was first seen (ranges no longer missing are dropped).
        self._first_seen: dict[RangeKey, float] = {}
        #: Ranges reported as alerts and not yet filled.
        self._reported: set[RangeKey] = set()

    def check(self) -> RulesOutput:
        """One pass: returns (and stores) the alerts it raised."""
        now = self.clock()
        out = RulesOutput()
        with self.sessions() as s, s.begin():
            rows = [r for r in repo.devices_missing_readings(s) if r.missing() > 0]
            missing = 0
            current: dict[RangeKey, float] = {}
            by_device: dict[tuple[int, str], DeviceRow] = {}
            for row in rows:
                missing += row.missing()
                by_device[(row.order_id, row.device)] = row
                for a, b in repo.missing_ranges(s, row):
                    key = (row.order_id, row.device, a, b)
                    seen = current[key] = self._first_seen.get(key, now)
                    if now - seen >= self.config.grace_secs and not self._covered(key):
                        self._reported.add(key)
                        out.alerts.append(self._gap_alert(row, a, b))
            for key in sorted(self._reported):
                order_id, device, a, b = key
                still = any(
                    k[0] == order_id and k[1] == device and k[2] <= b and a <= k[3] for k in current
                )
                if not still:
                    self._reported.discard(key)
                    out.alerts.append(self._filled_alert(by_device.get((order_id, device)), key))
            self._first_seen = current
            write_outputs(s, out)
        self.metrics.ingest_missing_readings.set(missing)
        gaps = sum(1 for a in out.alerts if a.kind == AlertKind.SEQ_GAP)
        if gaps:
            self.metrics.ingest_seq_gaps.inc(gaps)
        return out

    def _covered(self, key: RangeKey) -> bool:
        """Already reported: the same range, or what is left of a reported one."""
        order_id, device, a, b = key
        return any(
            r[0] == order_id and r[1] == device and r[2] <= a and b <= r[3] for r in self._reported
        )

    def _gap_alert(self, row: DeviceRow, a: int, b: int) -> AlertIntent:
        n = b - a + 1
        lo, hi = row.expected_seqs()
        later = []
        if row.last_seq is not None and row.last_seq > b:
            later.append(f"#{row.last_seq} did")
        if row.reported_last_seq is not None and row.reported_last_seq >= b:
            later.append(f"the device reports #{row.reported_last_seq} as its newest")
        message = (
            f"{n} reading{'s' if n > 1 else ''} {describe(a, b)} of device {row.device} never "
            "arrived" + (" while " + " and ".join(later) if later else "")
        )
        log.warning("order %d: %s", row.order_id, message)
        return AlertIntent(
            row.order_id,
            row.device,
            AlertKind.SEQ_GAP,
            Severity.CRITICAL,
            message,
            int(row.last_timestamp or self.wall_clock()),
            {
                "firstMissing": a,
                "lastMissing": b,
                "missing": n,
                "expectedFirst": lo,
                "expectedLast": hi,
                "stored": row.reading_count,
                "reportedLastSeq": row.reported_last_seq,
            },
            f"seq_gap:{row.order_id}:{row.device}:{a}-{b}",
        )

    def _filled_alert(self, row: DeviceRow | None, key: RangeKey) -> AlertIntent:
        order_id, device, a, b = key
        message = f"readings {describe(a, b)} of device {device} arrived late: the gap is closed"
        log.info("order %d: %s", order_id, message)
        at = row.last_timestamp if row is not None and row.last_timestamp else self.wall_clock()
        return AlertIntent(
            order_id,
            device,
            "seq_gap_filled",
            "info",
            message,
            int(at),
            {"firstMissing": a, "lastMissing": b},
            f"seq_gap_filled:{order_id}:{device}:{a}-{b}",
        )
