"""The live risk score of one shipment (docs/risk.md).

:class:`ShipmentRisk` takes an order's terms, its devices' stored readings (in any
order: store-and-forward flushes arrive late) and status messages, and at any time
``now`` assesses the shipment: a score 0–100 built from weighted reasons, an ETA
against the delivery deadline, a forecast of when a breach becomes provable, and
the alerts that forecast calls for, one per episode. It is pure (no I/O, no
clock): the oracle's rules engine feeds it what it stores, the benchmark feeds it
generated shipments, and both get the same answers for the same inputs.

Definitions follow the contract (IQualityVerification): a reading is out of range
when its temperature is outside ``[min, max]`` or its humidity above the maximum
(when not 0); a breach is provable once consecutive readings all out of range span
more than ``toleratedExcursionSecs``, or one reading's shock exceeds the limit.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.domain.alert import AlertKind, ReasonKind, Severity
from backend.domain.order import Terms
from backend.domain.reading import (
    FLAG_DOOR_OPEN,
    FLAG_SENSOR_FAULT,
    FLAG_TAMPER,
    ReadingWindow,
    StoredReading,
)

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Weights (points out of 100 a reason adds at full strength) and alert levels.

    The alert thresholds are chosen on the benchmark's training seed
    (bench/early_warning.py, docs/risk.md); the weights shape the score people read.
    """

    # --- weights (points) -------------------------------------------------------
    w_temperature: float = 70.0
    w_budget: float = 60.0
    w_silence: float = 35.0
    w_shock: float = 45.0
    w_door: float = 15.0
    w_tamper: float = 60.0
    w_battery: float = 20.0
    w_lateness: float = 50.0
    # --- temperature forecast -----------------------------------------------------
    #: the trend is a least-squares line over the readings of this last span ...
    trend_window_secs: int = 5400
    #: ... with at least this many readings, and at most the newest ``trend_max_readings``
    trend_min_readings: int = 4
    trend_max_readings: int = 6
    #: a trend counts once the air is this far from where the reefer holds it
    trend_margin_centi_c: int = 50
    #: a slope below this (centi-°C per hour) is noise, not a trend
    min_slope_centi_c_per_h: float = 60.0
    #: the temperature reason reaches full strength when a breach is this close
    breach_horizon_secs: int = 4 * 3600
    #: warn (risk_breach) when the temperature is forecast to reach a limit within
    #: this time, or is past it and not coming back before the budget runs out ...
    warn_limit_secs: int = 5400
    #: ... and the breach is forecast provable within this time after the device's next
    #: reading (0: no bound): the warning cannot wait for a reading that comes too late ...
    warn_breach_secs: int = 2400
    #: ... and the forecast held on this many consecutive readings of the device
    #: (readings with the doors open do not count: a door spike is not a failure)
    warn_confirmations: int = 2
    #: an episode closes after this many readings with no breach in sight
    episode_close_readings: int = 4
    # --- shocks ----------------------------------------------------------------
    #: a peak at or above this share of the limit is rough handling
    rough_shock_ratio: float = 0.6
    #: warn when this many rough peaks fall within ``rough_window_secs``
    rough_shock_count: int = 1
    rough_window_secs: int = 6 * 3600
    # --- doors, silence, battery ---------------------------------------------------
    door_window_secs: int = 6 * 3600
    #: silence starts to count after this many intervals without a reading
    silence_grace_intervals: float = 2.0
    #: ... and is at full strength after this many
    silence_full_intervals: float = 8.0
    battery_low_permille: int = 300
    # --- ETA and lateness --------------------------------------------------------
    #: speed made good toward the destination, measured over this last span (0: all)
    eta_window_secs: int = 6 * 3600
    #: no ETA before the shipment has moved for this long
    eta_min_secs: int = 2 * 3600
    #: the voyage's track keeps one position per this many seconds (and always the
    #: first and the newest), and none older than ``eta_window_secs`` but the first:
    #: bounded memory on a voyage of weeks at a reading a second, for an ETA reference
    #: point at most this much later than with every position kept
    eta_track_step_secs: int = 60
    #: warn (risk_late) when the ETA is past the deadline by more than this ...
    warn_late_secs: int = 3600
    #: ... continuously for this long, with at least this confidence in the ETA
    late_confirm_secs: int = 2 * 3600
    late_min_confidence: float = 0.6
    #: the lateness reason reaches full strength at this forecast lateness
    late_full_secs: int = 12 * 3600
    # --- score level ---------------------------------------------------------------
    #: warn (risk_level) when the score rises to this ...
    level_high: float = 70.0
    #: ... and again only after it fell below this
    level_low: float = 40.0
    #: a new snapshot is kept when the score moved this much, or reasons changed
    snapshot_min_delta: float = 2.0
    #: ... or this long after the last kept one
    snapshot_max_age_secs: int = 3600
    #: readings kept per device
    keep_readings: int = 96


@dataclass(frozen=True, slots=True)
class Reason:
    """One contribution to the score (DESIGN.md §11: kind, value, weight, text).

    ``weight`` is the most points the reason can add, ``strength`` how much of it
    applies now (0–1), ``points`` = weight × strength."""

    kind: str
    value: float | None
    weight: float
    strength: float
    text: str

    @property
    def points(self) -> float:
        return self.weight * self.strength

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": self.value,
            "weight": self.weight,
            "strength": round(self.strength, 3),
            "points": round(self.points, 1),
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Eta:
    timestamp: int
    confidence: float
    #: forecast lateness against the deadline (0 = on time)
    late_secs: int
    #: the late penalty those seconds imply under the terms (bps of the price)
    penalty_bps: int
    #: the same in the token's base units
    penalty_amount: int
    remaining_km: float
    speed_kmh: float

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["confidence"] = round(self.confidence, 3)
        d["remaining_km"] = round(self.remaining_km, 1)
        d["speed_kmh"] = round(self.speed_kmh, 2)
        d["penalty_amount"] = str(self.penalty_amount)  # uint256: beyond JSON's safe integers
        return d


@dataclass(frozen=True, slots=True)
class RiskAlert:
    """An alert the risk model calls for; ``dedup_key`` names its episode."""

    kind: str
    severity: str
    device: str | None
    message: str
    at: int
    lead_secs: int | None
    data: dict[str, Any]
    dedup_key: str


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    order_id: int
    at: int
    score: float
    reasons: tuple[Reason, ...]
    eta: Eta | None
    #: seconds until a breach is forecast provable (None: none in sight)
    breach_in_secs: int | None
    #: episodes open when it was taken (restores alert deduplication after a restart)
    state: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "at": self.at,
            "score": round(self.score, 1),
            "reasons": [r.as_json() for r in self.reasons],
            "eta": self.eta.as_json() if self.eta is not None else None,
            "breach_in_secs": self.breach_in_secs,
            "state": self.state,
        }


@dataclass(frozen=True, slots=True)
class Assessment:
    snapshot: RiskSnapshot
    #: whether the snapshot differs enough from the last kept one to keep it
    keep: bool
    alerts: tuple[RiskAlert, ...]


def haversine_km(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> float:
    p1, p2 = math.radians(lat1_e6 / 1e6), math.radians(lat2_e6 / 1e6)
    dp = p2 - p1
    dl = math.radians((lon2_e6 - lon1_e6) / 1e6)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def late_penalty_bps(terms: Terms, late_secs: int) -> int:
    """DESIGN.md §4: min(cap, ceil(late / 3600) × rate per hour)."""
    if late_secs <= 0:
        return 0
    return min(terms.late_penalty_cap_bps, -(-late_secs // 3600) * terms.late_penalty_bps_per_hour)


def combine(points: Iterable[float]) -> float:
    """The score from the reasons' points: 100 × (1 − Π(1 − pᵢ/100)).

    Each reason alone gives its own points; together they add up without passing 100."""
    keep = 1.0
    for p in points:
        keep *= 1.0 - min(100.0, max(0.0, p)) / 100.0
    return 100.0 * (1.0 - keep)


def temperature_line(readings: Sequence[StoredReading]) -> tuple[float, float] | None:
    """Least squares through the readings' temperatures: (the line's value at the last
    reading, its slope in centi-°C per second); None when all share one timestamp.
    The rules' ``trend`` alert and the risk model read the trend with it."""
    n = len(readings)
    if n < 2:
        return None
    xs = [r.timestamp - readings[0].timestamp for r in readings]
    ys = [r.temperature_centi_c for r in readings]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my + slope * (xs[-1] - mx), slope


def reading_interval(readings: Sequence[StoredReading], default: float) -> float:
    """A device's reading interval: the median positive gap between the given readings
    (its newest few). The rules' silence alert and the risk model's silence reason."""
    gaps = [b.timestamp - a.timestamp for a, b in zip(readings, readings[1:], strict=False)]
    gaps = [g for g in gaps if g > 0]
    return float(statistics.median(gaps)) if gaps else default


def _clamp(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def _mins(secs: float) -> str:
    m = secs / 60
    if m < 90:
        return f"{max(1, round(m))} min"
    return f"{m / 60:.1f} h"


def trend_window(rs: Sequence[StoredReading], secs: int, most: int) -> list[StoredReading]:
    """The readings a device's temperature trend is read from (``rs`` by seq, newest
    last): of those within ``secs`` of the newest one's time, the ones after the last
    with its doors open (open doors spike the air temperature: a spike that is
    settling is not a failure), at most the newest ``most``. Read back from the
    newest, so it costs the readings it keeps, not the device's whole window."""
    if not rs:
        return []
    window: list[StoredReading] = []
    start_after = rs[-1].timestamp - secs
    for r in reversed(rs):
        if r.timestamp <= start_after:
            continue
        if r.flags & FLAG_DOOR_OPEN or len(window) == most:
            break
        window.append(r)
    window.reverse()
    return window


@dataclass(frozen=True, slots=True)
class _Scan:
    """One device's recent shocks and flags (:meth:`_Device.scan`), and how long it holds."""

    version: int
    #: the span of ``now`` in which the same readings count
    valid_from: float
    valid_until: float
    #: the highest shock of ``rough`` (0: none); below the rough level a peak plays no
    #: part in the score
    peak: int
    rough: tuple[StoredReading, ...]
    doors: int
    tamper: int


#: The flags a scan counts.
_SCANNED_FLAGS = FLAG_DOOR_OPEN | FLAG_TAMPER | FLAG_SENSOR_FAULT
#: The scan of a device with no notable reading (at any time).
_NOTHING_SCANNED = _Scan(-1, -math.inf, math.inf, 0, (), 0, 0)


@dataclass
class _Device(ReadingWindow):
    #: consecutive assessments with a breach forecast within the warning time
    confirmations: int = 0
    counted_seq: int | None = None
    #: consecutive assessments with no breach in sight (closes an episode)
    calm: int = 0
    status: str | None = None
    battery_permille: int | None = None
    #: bumped by every reading added: the forecast and the interval are worked out
    #: again only then
    version: int = 0
    forecast: tuple[int, _TempForecast | None] | None = None
    _interval: tuple[int, float, float] | None = None
    _scan: _Scan | None = None
    #: The readings a scan can count, by seq: a shock at ``_rough_at`` or more, or a
    #: flag it counts. Kept up as readings arrive at the head in time order; None when
    #: to be worked out again (a reading came late, or the rough level changed).
    _notable: list[StoredReading] | None = None
    _rough_at: float = math.inf
    #: the version at which the readings' times were found not to rise with their seqs
    _unordered_at: int = -1
    #: the kept readings' temperatures, sorted (their median: :meth:`held_temperature`)
    _temps: list[int] = field(default_factory=list)

    def add(self, r: StoredReading, keep: int | None = None) -> None:
        head = self.head
        at_head = head is None or (r.seq > head.seq and r.timestamp >= head.timestamp)
        replaced = self.by_seq.get(r.seq)
        if replaced is not None:
            self._temps.remove(replaced.temperature_centi_c)
        bisect.insort(self._temps, r.temperature_centi_c)
        super().add(r, keep)
        self.version += 1
        notable = self._notable
        if notable is None:
            return
        if not at_head:
            self._notable = None
            return
        if r.shock_milli_g >= self._rough_at or r.flags & _SCANNED_FLAGS:
            notable.append(r)
        lowest = self.seqs[0]
        while notable and notable[0].seq < lowest:  # trimmed
            del notable[0]

    def trim(self, keep: int) -> None:
        for s in self.seqs[: max(0, len(self.seqs) - keep)]:
            temps = self._temps
            del temps[bisect.bisect_left(temps, self.by_seq[s].temperature_centi_c)]
        super().trim(keep)

    def held_temperature(self) -> float:
        """The median temperature of the kept readings (as ``statistics.median``)."""
        temps = self._temps
        mid = len(temps) // 2
        return temps[mid] if len(temps) % 2 else (temps[mid - 1] + temps[mid]) / 2

    def since(self, ts: float) -> list[StoredReading]:
        """The readings after ``ts``, newest first (scanning back from the newest seq)."""
        out = []
        for s in reversed(self.seqs):
            r = self.by_seq[s]
            if r.timestamp <= ts:
                break
            out.append(r)
        return out

    def scan(self, now: int, rough_secs: int, rough_at: float, door_secs: int) -> _Scan:
        """The shocks (the readings at ``rough_at`` or more, and their peak) of the last
        ``rough_secs`` and the door/tamper flags of the last ``door_secs`` before
        ``now``: each window's readings are those back from the newest seq to the first
        at or before the window's start, as :meth:`since` reads them.

        An order is assessed after each of its readings, at that reading's time, for
        every device, so this is the model's inner loop. While the kept readings' times
        rise with their seqs (the usual case) a window holds exactly the readings after
        its start, and only the notable ones (``_notable``) can count: the scan reads
        those. Otherwise :meth:`full_scan` reads them all."""
        if rough_at != self._rough_at:  # (the terms' limit: set once per order in practice)
            self._rough_at, self._notable, self._scan = rough_at, None, None
        notable = self._notable
        if notable is None:
            if self._unordered_at == self.version:
                return self.full_scan(now, rough_secs, rough_at, door_secs)
            rs = self.readings()
            if any(b.timestamp < a.timestamp for a, b in zip(rs, rs[1:], strict=False)):
                self._unordered_at = self.version
                return self.full_scan(now, rough_secs, rough_at, door_secs)
            notable = self._notable = [
                r for r in rs if r.shock_milli_g >= rough_at or r.flags & _SCANNED_FLAGS
            ]
        if not notable:
            return _NOTHING_SCANNED
        rough_from, door_from = now - rough_secs, now - door_secs
        peak, rough = 0, []
        doors = tamper = 0
        for r in reversed(notable):
            ts = r.timestamp
            if ts > rough_from and r.shock_milli_g >= rough_at:
                rough.append(r)
                if r.shock_milli_g > peak:
                    peak = r.shock_milli_g
            if ts > door_from:
                if r.flags & FLAG_DOOR_OPEN:
                    doors += 1
                if r.flags & (FLAG_TAMPER | FLAG_SENSOR_FAULT):
                    tamper += 1
        return _Scan(self.version, now, now, peak, tuple(rough), doors, tamper)

    def full_scan(self, now: int, rough_secs: int, rough_at: float, door_secs: int) -> _Scan:
        """:meth:`scan` over every kept reading, in one pass back from the newest seq.

        Kept until a reading is added or ``now`` leaves the span where the same readings
        count: the oldest one counted leaves its window, or the window's start goes back
        to the reading the pass stopped at."""
        c = self._scan
        if c is not None and c.version == self.version and c.valid_from <= now < c.valid_until:
            return c
        rough_from, door_from = now - rough_secs, now - door_secs
        peak, rough = 0, []
        doors = tamper = 0
        oldest_rough = oldest_door = math.inf
        stop_rough = stop_door = -math.inf  # the reading each window's pass stopped at
        in_rough = in_door = True
        for s in reversed(self.seqs):
            r = self.by_seq[s]
            ts = r.timestamp
            if in_rough:
                if ts <= rough_from:
                    in_rough, stop_rough = False, ts
                else:  # comparisons, not min()/max(): this loop is the scan's cost
                    shock = r.shock_milli_g
                    if shock >= rough_at:
                        rough.append(r)
                        if shock > peak:
                            peak = shock
                    if ts < oldest_rough:
                        oldest_rough = ts
            if in_door:
                if ts <= door_from:
                    in_door, stop_door = False, ts
                else:
                    flags = r.flags
                    if flags & FLAG_DOOR_OPEN:
                        doors += 1
                    if flags & (FLAG_TAMPER | FLAG_SENSOR_FAULT):
                        tamper += 1
                    if ts < oldest_door:
                        oldest_door = ts
            if not (in_rough or in_door):
                break
        valid_from = max(stop_rough + rough_secs, stop_door + door_secs)
        valid_until = min(oldest_rough + rough_secs, oldest_door + door_secs)
        self._scan = _Scan(self.version, valid_from, valid_until, peak, tuple(rough), doors, tamper)
        return self._scan

    def interval(self, default: float) -> float:
        cached = self._interval
        if cached is None or cached[0] != self.version or cached[1] != default:
            cached = self._interval = (
                self.version,
                default,
                reading_interval(self.last(11), default),
            )
        return cached[2]


@dataclass(frozen=True, slots=True)
class _TempForecast:
    """One device's temperature outlook."""

    device: str
    temp: float
    slope_per_h: float
    side: str | None  # "high" | "low": the limit it heads for or is past
    limit: int | None
    to_limit_secs: float | None  # None: not heading there; 0: already past
    used_secs: int  # out of range in the current run
    breach_in_secs: float | None  # None: no breach in sight
    recovering: bool
    interval_secs: float


class ShipmentRisk:
    """The risk picture of one order in transit, fed its readings and statuses."""

    def __init__(
        self,
        order_id: int,
        terms: Terms,
        shipped_at: int = 0,
        config: RiskConfig | None = None,
        restored: dict[str, Any] | None = None,
        default_interval_secs: float = 60.0,
    ) -> None:
        self.order_id = order_id
        self.terms = terms
        self.shipped_at = shipped_at
        self.config = config or RiskConfig()
        self.default_interval = default_interval_secs
        self.devices: dict[str, _Device] = {}
        #: (timestamp, km to the destination), one per timestamp, oldest first
        self._track: list[tuple[int, float]] = []
        self._arrived_at: int | None = None
        self._breached = False
        #: open episodes: name → the seq (or time) that opened it
        self.episodes: dict[str, int] = dict((restored or {}).get("episodes", {}))
        self._level_armed = bool((restored or {}).get("level_armed", True))
        self._last_kept: RiskSnapshot | None = None
        self._late_calm = 0
        self._late_since: int | None = None

    # ------------------------------------------------------------------ input

    def observe(self, r: StoredReading) -> None:
        """A stored reading of this order (any device, any order of arrival)."""
        dev = self.devices.setdefault(r.device, _Device())
        dev.add(r, self.config.keep_readings)
        if r.timestamp < self.shipped_at:
            return
        t = self.terms
        inside = (
            abs(r.latitude_e6 - t.dest_lat_e6) <= t.geofence_e6
            and abs(r.longitude_e6 - t.dest_lon_e6) <= t.geofence_e6
        )
        if inside and (self._arrived_at is None or r.timestamp < self._arrived_at):
            self._arrived_at = r.timestamp
        km = max(
            0.0,
            haversine_km(r.latitude_e6, r.longitude_e6, t.dest_lat_e6, t.dest_lon_e6)
            - t.geofence_e6 / 1e6 * KM_PER_DEGREE,
        )
        self._on_track(r.timestamp, km)

    def _on_track(self, ts: int, km: float) -> None:
        """Put a position on the voyage's track, thinned to one per
        ``eta_track_step_secs`` and trimmed to the ETA's window (RiskConfig)."""
        track, step, window = (
            self._track,
            self.config.eta_track_step_secs,
            self.config.eta_window_secs,
        )
        i = bisect.bisect_left(track, (ts, -1.0))
        if i < len(track) and track[i][0] == ts:
            return
        if i == len(track) and i >= 2 and track[-1][0] - track[-2][0] < step:
            track[-1] = (ts, km)  # the newest moves on: the one before it is too close
        elif i in (0, len(track)) or (ts - track[i - 1][0] >= step and track[i][0] - ts >= step):
            track.insert(i, (ts, km))
        else:
            return  # a late position between two kept ones that are near it
        if window and len(track) > 2:
            # keep the last position before the window: the ETA falls back to it when
            # the newest is the only one inside (after a long silence)
            cut = bisect.bisect_left(track, (track[-1][0] - window, -1.0), 1) - 1
            if cut - 1 >= 64:  # drop them in runs, not one by one
                del track[1:cut]

    def note_status(self, device: str, status: str | None, battery_permille: int | None) -> None:
        dev = self.devices.setdefault(device, _Device())
        dev.status = status
        if battery_permille is not None:
            dev.battery_permille = battery_permille

    def restore_episodes(self, episodes: dict[str, int]) -> None:
        """Episodes another oracle process opened (its newest snapshot's): they stay
        open here too, so their warnings are not raised twice."""
        for name, opened in episodes.items():
            self.episodes.setdefault(name, int(opened))

    def mark_breached(self) -> None:
        """The breach is provable (the rules found the evidence, or the chain says so)."""
        self._breached = True

    # ------------------------------------------------------------- the parts

    def _out(self, r: StoredReading) -> bool:
        t = self.terms
        if not t.min_temp_centi_c <= r.temperature_centi_c <= t.max_temp_centi_c:
            return True
        return t.max_humidity_permille != 0 and r.humidity_permille > t.max_humidity_permille

    def _run_start(self, rs: list[StoredReading]) -> StoredReading | None:
        """The first reading of the out-of-range run the newest reading ends (or None)."""
        if not rs or not self._out(rs[-1]):
            return None
        start = rs[-1]
        for i in range(len(rs) - 2, -1, -1):
            prev = rs[i]
            if (
                prev.seq == start.seq - 1
                and prev.timestamp < start.timestamp
                and self._out(prev)
                and prev.timestamp >= self.shipped_at
            ):
                start = prev
            else:
                break
        return start

    def _temperature(self, device: str, dev: _Device) -> _TempForecast | None:
        if dev.forecast is not None and dev.forecast[0] == dev.version:
            return dev.forecast[1]
        f = self._forecast(device, dev)
        dev.forecast = (dev.version, f)
        return f

    def _forecast(self, device: str, dev: _Device) -> _TempForecast | None:
        rs = dev.readings()
        if not rs:
            return None
        cfg, t = self.config, self.terms
        head = rs[-1]
        window = trend_window(rs, cfg.trend_window_secs, cfg.trend_max_readings)
        slope = 0.0  # centi-°C per second
        temp = float(head.temperature_centi_c)
        if len(window) >= cfg.trend_min_readings and (line := temperature_line(window)):
            temp, slope = line
        if abs(slope) * 3600 < cfg.min_slope_centi_c_per_h:
            slope = 0.0
        # A line fitted across a jump lags behind it: when the newest step clearly goes
        # the other way, the air has turned, and no trend is read.
        if len(window) >= 2:
            step = window[-1].temperature_centi_c - window[-2].temperature_centi_c
            if (slope > 0 and step < -cfg.trend_margin_centi_c) or (
                slope < 0 and step > cfg.trend_margin_centi_c
            ):
                slope = 0.0
                temp = float(head.temperature_centi_c)
        start = self._run_start(rs)
        used = head.timestamp - start.timestamp if start is not None else 0
        tol = t.tolerated_excursion_secs
        interval = dev.interval(self.default_interval)
        raw = head.temperature_centi_c
        if raw > t.max_temp_centi_c or raw < t.min_temp_centi_c:
            side = "high" if raw > t.max_temp_centi_c else "low"
            limit = t.max_temp_centi_c if side == "high" else t.min_temp_centi_c
            back = slope < 0 if side == "high" else slope > 0
            to_return = (limit - temp) / slope if back and slope else None
            left = max(0.0, tol - used)
            recovering = to_return is not None and to_return < left
            # provable at the first reading past the budget
            breach_in = None if recovering else left + interval / 2
            return _TempForecast(
                device, raw, slope * 3600, side, limit, 0.0, used, breach_in, recovering, interval
            )
        if start is not None:  # out of range on humidity: the budget runs, no trend to read
            left = max(0.0, tol - used)
            return _TempForecast(
                device, raw, slope * 3600, None, None, 0.0, used, left + interval / 2, False,
                interval,
            )  # fmt: skip
        # Heading for a limit counts only when moving away from where the reefer holds
        # the air (the median of the kept readings, its set point in practice): towards
        # it is a reefer pulling back after doors or a repair, not a failure.
        if not slope:
            return _TempForecast(device, temp, 0.0, None, None, None, 0, None, False, interval)
        held = dev.held_temperature()
        margin = cfg.trend_margin_centi_c
        for side, limit, heading in (
            ("high", t.max_temp_centi_c, slope > 0 and temp > held + margin),
            ("low", t.min_temp_centi_c, slope < 0 and temp < held - margin),
        ):
            if heading:
                to_limit = max(0.0, (limit - temp) / slope)
                return _TempForecast(
                    device, temp, slope * 3600, side, limit, to_limit, 0,
                    to_limit + tol + interval / 2, False, interval,
                )  # fmt: skip
        return _TempForecast(device, temp, 0.0, None, None, None, 0, None, False, interval)

    def _eta(self, now: int) -> Eta | None:
        t, cfg = self.terms, self.config
        if self._arrived_at is not None:
            late = max(0, self._arrived_at - t.delivery_deadline)
            bps = late_penalty_bps(t, late)
            return Eta(self._arrived_at, 1.0, late, bps, t.price * bps // 10_000, 0.0, 0.0)
        if len(self._track) < 2:
            return None
        t_now, d_now = self._track[-1]
        ref = self._track[0]
        if cfg.eta_window_secs:
            i = bisect.bisect_left(self._track, (t_now - cfg.eta_window_secs, -1.0))
            ref = self._track[min(i, len(self._track) - 2)]
        t0, d0 = self._track[0]
        if t_now - t0 < cfg.eta_min_secs or t_now <= ref[0]:
            return None
        made_good = (ref[1] - d_now) / (t_now - ref[0])  # km/s
        overall = (d0 - d_now) / (t_now - t0)
        if made_good <= 1e-6:
            made_good = max(overall, 1e-6) * 0.25 if overall > 1e-6 else 0.0
        if made_good <= 0:
            return None
        # from the last known position: silence is a reason of its own, not a stop
        eta = int(t_now + d_now / made_good)
        late = max(0, eta - t.delivery_deadline)
        bps = late_penalty_bps(t, late)
        # Confidence: the recent speed agrees with the voyage's, and much of the way is done.
        agree = _clamp(1 - abs(made_good - overall) / max(made_good, overall, 1e-9))
        covered = _clamp((d0 - d_now) / max(d0, 1e-9))
        confidence = agree * (0.4 + 0.6 * covered)
        return Eta(eta, confidence, late, bps, t.price * bps // 10_000, d_now, made_good * 3600)

    # ------------------------------------------------------------ assessment

    def assess(self, now: int, quiet: dict[str, float] | None = None) -> Assessment:
        """The picture at ``now`` (scenario seconds). ``quiet``: per device, seconds
        since its last reading arrived, when the caller measures it (the silence timer);
        otherwise it is ``now`` minus the device's newest reading time."""
        cfg, t = self.config, self.terms
        reasons: list[Reason] = []
        alerts: list[RiskAlert] = []
        limit = t.max_shock_milli_g
        rough_at = cfg.rough_shock_ratio * limit
        # One pass over the devices (this runs after every reading): each one's
        # temperature outlook, what its recent readings hold (shocks, doors, tamper),
        # how long it has been quiet, its battery.
        forecasts: list[_TempForecast] = []
        rough: list[StoredReading] = []
        peak = doors = tamper = 0
        worst_quiet: tuple[float, str, float] | None = None
        battery: int | None = None
        quiet = quiet or {}
        for d, dev in self.devices.items():
            f = self._temperature(d, dev)
            if f is not None:
                forecasts.append(f)
            sc = dev.scan(now, cfg.rough_window_secs, rough_at, cfg.door_window_secs)
            if sc is not _NOTHING_SCANNED:
                if sc.peak > peak:
                    peak = sc.peak
                rough += sc.rough
                doors += sc.doors
                tamper += sc.tamper
            head = dev.head
            if head is not None:
                q = quiet.get(d)
                if q is None:
                    q = now - head.timestamp if now > head.timestamp else 0.0
                ratio = q / dev.interval(self.default_interval)
                if dev.status == "offline" and ratio < cfg.silence_full_intervals:
                    ratio = cfg.silence_full_intervals
                if worst_quiet is None or ratio > worst_quiet[2]:
                    worst_quiet = (q, d, ratio)
            b = dev.battery_permille
            if b is not None and (battery is None or b < battery):
                battery = b
        tol = t.tolerated_excursion_secs
        breach_in: int | None = None
        if self._breached:
            reasons.append(Reason(ReasonKind.BREACHED, 1.0, 100.0, 1.0, "a breach is provable"))
        else:
            # temperature: the device closest to a breach
            live = [f for f in forecasts if f.breach_in_secs is not None]
            worst = min(live, key=lambda f: f.breach_in_secs or 0.0) if live else None
            if worst is not None and worst.breach_in_secs is not None:
                breach_in = int(worst.breach_in_secs)
                strength = _clamp(1 - worst.breach_in_secs / cfg.breach_horizon_secs)
                reasons.append(
                    Reason(
                        ReasonKind.TEMPERATURE_TREND,
                        breach_in,
                        cfg.w_temperature,
                        strength,
                        self._temp_text(worst),
                    )
                )
            used = max((f.used_secs for f in forecasts), default=0)
            if used > 0 and tol >= 0:
                ratio = _clamp(used / tol) if tol else 1.0
                recovering = all(f.recovering for f in forecasts if f.used_secs > 0)
                reasons.append(
                    Reason(
                        ReasonKind.EXCURSION_BUDGET,
                        used,
                        cfg.w_budget,
                        ratio * (0.5 if recovering else 1.0),
                        f"{used // 60} of {tol // 60} tolerated minutes out of range used"
                        + (" (recovering)" if recovering else ""),
                    )
                )
        # shocks (none counted when the terms set no shock limit)
        if not limit:
            rough = []
        elif peak >= rough_at:
            strength = _clamp(peak / limit) * _clamp(len(rough) / cfg.rough_shock_count)
            reasons.append(
                Reason(
                    ReasonKind.SHOCK_HISTORY,
                    peak,
                    cfg.w_shock,
                    strength,
                    f"{len(rough)} rough shock(s) in {_mins(cfg.rough_window_secs)}, peak "
                    f"{peak} of {limit} mg",
                )
            )
        # doors and tamper
        if doors:
            reasons.append(
                Reason(
                    ReasonKind.DOOR,
                    doors,
                    cfg.w_door,
                    _clamp(doors / 3),
                    f"doors open on {doors} reading(s) in {_mins(cfg.door_window_secs)}",
                )
            )
        if tamper:
            reasons.append(
                Reason(
                    ReasonKind.TAMPER,
                    tamper,
                    cfg.w_tamper,
                    1.0,
                    f"tamper switch or sensor fault on {tamper} reading(s)",
                )
            )
        # silence and battery
        if worst_quiet is not None and worst_quiet[2] > cfg.silence_grace_intervals:
            q, d, ratio = worst_quiet
            span = cfg.silence_full_intervals - cfg.silence_grace_intervals
            reasons.append(
                Reason(
                    ReasonKind.SILENCE,
                    int(q),
                    cfg.w_silence,
                    _clamp((ratio - cfg.silence_grace_intervals) / span),
                    f"no reading from {d[:10]}… for {_mins(q)} ({ratio:.1f} intervals)"
                    + (" — device offline" if self.devices[d].status == "offline" else ""),
                )
            )
        if battery is not None and battery < cfg.battery_low_permille:
            b = battery
            reasons.append(
                Reason(
                    ReasonKind.BATTERY,
                    b,
                    cfg.w_battery,
                    _clamp(1 - b / cfg.battery_low_permille),
                    f"battery at {b / 10:.1f} %",
                )
            )
        # ETA
        eta = self._eta(now)
        if eta is not None and eta.late_secs > 0 and self._arrived_at is None:
            reasons.append(
                Reason(
                    ReasonKind.LATENESS,
                    eta.late_secs,
                    cfg.w_lateness,
                    _clamp(eta.late_secs / cfg.late_full_secs) * eta.confidence,
                    f"ETA {_mins(eta.late_secs)} after the deadline: late penalty "
                    f"{eta.penalty_bps / 100:.2f} % of the price (cap "
                    f"{t.late_penalty_cap_bps / 100:.2f} %)",
                )
            )
        score = 100.0 if self._breached else combine(r.points for r in reasons)
        reasons.sort(key=lambda r: -r.points)

        alerts += self._breach_alerts(forecasts, now)
        alerts += self._shock_alert(rough, now)
        alerts += self._late_alert(eta, now)
        alerts += self._level_alert(score, reasons, now, breach_in, eta)

        snap = RiskSnapshot(
            self.order_id,
            now,
            score,
            tuple(reasons),
            eta,
            breach_in,
            {"episodes": dict(self.episodes), "level_armed": self._level_armed},
        )
        last = self._last_kept
        keep = (
            last is None
            or bool(alerts)
            or abs(score - last.score) >= cfg.snapshot_min_delta
            or {r.kind for r in reasons} != {r.kind for r in last.reasons}
            or now - last.at >= cfg.snapshot_max_age_secs
        )
        if keep:
            self._last_kept = snap
        return Assessment(snap, keep, tuple(alerts))

    # ---------------------------------------------------------------- alerts

    def _temp_text(self, f: _TempForecast) -> str:
        tol = self.terms.tolerated_excursion_secs
        used = f"{f.used_secs // 60} of {tol // 60} tolerated minutes used"
        if f.limit is None:
            return f"humidity out of range; {used}"
        if f.to_limit_secs and f.to_limit_secs > 0:
            return (
                f"{f.temp / 100:.2f} °C, {f.slope_per_h / 100:+.2f} °C/h: reaches "
                f"{f.limit / 100:.2f} °C in about {_mins(f.to_limit_secs)}; {used}"
            )
        where = "above" if f.side == "high" else "below"
        return (
            f"{f.temp / 100:.2f} °C, {where} {f.limit / 100:.2f} °C: {used}; breach provable "
            f"in about {_mins(f.breach_in_secs or 0)}"
        )

    def _breach_alerts(self, forecasts: list[_TempForecast], now: int) -> list[RiskAlert]:
        cfg = self.config
        out: list[RiskAlert] = []
        for f in forecasts:
            dev = self.devices[f.device]
            head = dev.head
            assert head is not None
            if head.seq == dev.counted_seq:  # the silence timer: nothing new to count
                continue
            dev.counted_seq = head.seq
            name = f"breach:{f.device}"
            soon = (
                not self._breached
                and f.breach_in_secs is not None  # None: not heading out, or coming back
                and f.to_limit_secs is not None
                and f.to_limit_secs <= cfg.warn_limit_secs
                and (
                    not cfg.warn_breach_secs
                    or f.breach_in_secs - f.interval_secs <= cfg.warn_breach_secs
                )
            )
            door = any(r.flags & FLAG_DOOR_OPEN for r in dev.last(2))
            if soon and door:
                soon = False  # hold: judge the trend once the doors are shut
            else:
                dev.confirmations = dev.confirmations + 1 if soon else 0
            dev.calm = 0 if (soon or door or f.used_secs) else dev.calm + 1
            if name in self.episodes:
                if dev.calm >= cfg.episode_close_readings:
                    del self.episodes[name]
                continue
            if not soon or dev.confirmations < cfg.warn_confirmations:
                continue
            assert f.breach_in_secs is not None
            self.episodes[name] = head.seq
            lead = int(f.breach_in_secs)
            out.append(
                RiskAlert(
                    AlertKind.RISK_BREACH,
                    Severity.WARNING,
                    f.device,
                    f"breach risk: {self._temp_text(f)}",
                    head.timestamp,
                    lead,
                    {
                        "cause": "temperature" if f.limit is not None else "humidity",
                        "lead_secs": lead,
                        "usedSecs": f.used_secs,
                        "toleratedSecs": self.terms.tolerated_excursion_secs,
                        "temperatureCentiC": round(f.temp),
                        "slopeCentiCPerH": round(f.slope_per_h, 1),
                        "limitCentiC": f.limit,
                        "seq": head.seq,
                    },
                    f"{AlertKind.RISK_BREACH}:{self.order_id}:{f.device}:{head.seq}",
                )
            )
        return out

    def _shock_alert(self, rough: list[StoredReading], now: int) -> list[RiskAlert]:
        cfg, limit = self.config, self.terms.max_shock_milli_g
        name = "shock"
        if name in self.episodes:
            if not rough:
                del self.episodes[name]
            return []
        if self._breached or len(rough) < cfg.rough_shock_count:
            return []
        last = max(rough, key=lambda r: r.timestamp)
        self.episodes[name] = last.seq
        peak = max(r.shock_milli_g for r in rough)
        return [
            RiskAlert(
                AlertKind.RISK_BREACH,
                Severity.WARNING,
                last.device,
                f"rough handling: {len(rough)} shocks of at least "
                f"{int(cfg.rough_shock_ratio * limit)} mg in {_mins(cfg.rough_window_secs)} "
                f"(peak {peak} of {limit} mg); one more over the limit is a breach",
                last.timestamp,
                None,
                {"cause": "shock", "lead_secs": None, "peakMilliG": peak, "limit": limit},
                f"{AlertKind.RISK_BREACH}:{self.order_id}:shock:{last.device}:{last.seq}",
            )
        ]

    def _late_alert(self, eta: Eta | None, now: int) -> list[RiskAlert]:
        cfg, t = self.config, self.terms
        name = "late"
        late = (
            eta is not None
            and self._arrived_at is None
            and eta.late_secs > cfg.warn_late_secs
            and eta.confidence >= cfg.late_min_confidence
        )
        if not late:
            self._late_since = None
        elif self._late_since is None:
            self._late_since = now
        if name in self.episodes:
            self._late_calm = 0 if late else self._late_calm + 1
            if self._late_calm >= cfg.episode_close_readings * 4:
                del self.episodes[name]
            return []
        if (
            eta is None
            or self._late_since is None
            or now - self._late_since < cfg.late_confirm_secs
        ):
            return []
        self.episodes[name] = now
        self._late_calm = 0
        lead = t.delivery_deadline - now
        return [
            RiskAlert(
                AlertKind.RISK_LATE,
                Severity.WARNING,
                None,
                f"late delivery: ETA about {_mins(eta.late_secs)} after the deadline "
                f"({eta.remaining_km:.0f} km to go at {eta.speed_kmh:.1f} km/h); late penalty "
                f"{eta.penalty_bps / 100:.2f} % of the price ({eta.penalty_amount} base units), "
                f"deadline in {_mins(max(0, lead))}",
                now,
                lead,
                {"lead_secs": lead, "eta": eta.as_json(), "deadline": t.delivery_deadline},
                f"{AlertKind.RISK_LATE}:{self.order_id}:{now}",
            )
        ]

    def _level_alert(
        self,
        score: float,
        reasons: list[Reason],
        now: int,
        breach_in: int | None,
        eta: Eta | None,
    ) -> list[RiskAlert]:
        cfg = self.config
        if score < cfg.level_low:
            self._level_armed = True
        if not self._level_armed or score < cfg.level_high or self._breached:
            return []
        self._level_armed = False
        top = "; ".join(r.text for r in reasons[:3])
        lead = breach_in
        if lead is None and eta is not None and eta.late_secs > 0:
            lead = self.terms.delivery_deadline - now
        return [
            RiskAlert(
                AlertKind.RISK_LEVEL,
                Severity.CRITICAL if score >= 90 else Severity.WARNING,
                None,
                f"risk score {score:.0f}/100: {top}",
                now,
                lead,
                {
                    "lead_secs": lead,
                    "score": round(score, 1),
                    "reasons": [r.as_json() for r in reasons[:3]],
                },
                f"{AlertKind.RISK_LEVEL}:{self.order_id}:{now}",
            )
        ]
