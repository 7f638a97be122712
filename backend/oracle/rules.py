"""Streaming rules over each device's readings (DESIGN.md §6).

Per device the engine keeps a *window*: the newest readings by ``seq`` (a dict
plus the sorted seqs), loaded from the database the first time a device shows up
in this process and updated with every evaluated reading. Only the order's owner
evaluates it (backend/oracle/ownership.py): a reading is evaluated in the database
transaction that stores it, or, when another oracle process stored it, in the
owner's transaction that takes its handoff row; either way against its neighbours
in ``seq`` order, so readings that arrive late (store-and-forward) or out of order are
judged exactly as if they had come in order: an excursion run is always the
maximal run of consecutive seqs around the new reading, whichever of its
readings arrived last. A reading older than the window is evaluated against its
neighbours read back from the database. Nothing is buffered, so a crash loses no
evaluation: the actions and alerts a reading causes are committed with its
storing or its handoff row's removal.

Rules (the contract's definitions, IQualityVerification / IPurchaseOrders.Terms):

* out of range: temperature outside ``[min, max]``, or humidity above its maximum
  when that maximum is not 0;
* excursion breach: readings with consecutive seqs and strictly increasing
  timestamps, all out of range, with ``last.ts − first.ts > toleratedExcursionSecs``
  → ``prove_excursion`` with exactly those readings (the shortest such prefix of
  the run) as evidence;
* shock: one reading over ``maxShockMilliG`` (when not 0) → ``prove_shock``;
* arrival: a reading inside the destination box (|lat − dest| ≤ geofence and
  |lon − dest| ≤ geofence) → ``prove_arrival`` (the earliest such reading); with an
  ``arrival_quorum`` of 2, the earliest such reading of a device of each issuer, in
  one proof, once both exist; with 0 (buyer receipt only) never;
* witnesses: only a reading its device's certificate covers counts as evidence
  (inside the certificate's validity window, and before any revocation by its
  issuer: the indexer's ``devices`` row); other readings still raise alerts.
* alerts: excursion started, breach detected, shock, door opened, tamper, sensor
  fault, temperature trend heading for a limit, device silent.

Chain actions go to the outbox with dedup keys: ``breach:{order}`` (one breach
proof per order, excursion or shock, whichever comes first), ``arrival:{order}``.

Risk (backend/risk, docs/risk.md): each order in transit has a risk model. After
the rules, a batch's readings of the order are fed to it in time order (timestamp,
device, seq), and it is assessed after each one at that reading's timestamp, so
its alerts and snapshots are those of the readings coming one at a time, however
ingest cut them into batches. The silence timer assesses it between readings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.domain.actions import (
    ActionPayloadError,
    ChainAction,
    ProveArrival,
    ProveExcursion,
    ProveShock,
    decode_action,
)
from backend.domain.alert import ALERT_ATTRS, Alert, AlertKind, Severity
from backend.domain.order import OrderState, Terms
from backend.domain.reading import (
    FLAG_DOOR_OPEN,
    FLAG_SENSOR_FAULT,
    FLAG_TAMPER,
    ReadingWindow,
    StoredReading,
)
from backend.risk import (
    RiskAlert,
    RiskConfig,
    RiskSnapshot,
    ShipmentRisk,
    reading_interval,
    temperature_line,
)
from backend.store import repositories as repo
from backend.store.models import DeviceRow, OrderRow

log = logging.getLogger(__name__)

IN_TRANSIT = OrderState.SHIPPED.label


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """The part of an order's terms and state the rules need."""

    order_id: int
    state: str
    breached: bool
    min_temp_centi_c: int
    max_temp_centi_c: int
    max_humidity_permille: int
    max_shock_milli_g: int
    tolerated_excursion_secs: int
    dest_lat_e6: int
    dest_lon_e6: int
    geofence_e6: int
    #: Evidence must not predate shipment (QualityVerificationReadingBeforeShipment).
    shipped_at: int = 0
    device_issuer: str = ""
    second_device_issuer: str = ""
    #: 0 = buyer receipt only (no arrival proof), 1 = any witness, 2 = one of each issuer
    arrival_quorum: int = 1
    #: The full terms (deadline, price, penalties: the risk model's ETA needs them).
    terms: Terms | None = None

    @classmethod
    def from_row(cls, row: OrderRow) -> OrderTerms:
        return cls(
            row.id,
            row.state,
            row.breached,
            row.min_temp_centi_c,
            row.max_temp_centi_c,
            row.max_humidity_permille,
            row.max_shock_milli_g,
            row.tolerated_excursion_secs,
            row.dest_lat_e6,
            row.dest_lon_e6,
            row.geofence_e6,
            row.shipped_at or 0,
            row.device_issuer,
            row.second_device_issuer,
            row.arrival_quorum,
            Terms.of(row),
        )

    @classmethod
    def from_terms(
        cls, order_id: int, state: str, breached: bool, shipped_at: int, terms: Terms
    ) -> OrderTerms:
        """The rules' view of terms read from the chain (a party's watcher: no store)."""
        return cls(
            order_id,
            state,
            breached,
            terms.min_temp_centi_c,
            terms.max_temp_centi_c,
            terms.max_humidity_permille,
            terms.max_shock_milli_g,
            terms.tolerated_excursion_secs,
            terms.dest_lat_e6,
            terms.dest_lon_e6,
            terms.geofence_e6,
            shipped_at,
            terms.device_issuer,
            terms.second_device_issuer,
            terms.arrival_quorum,
            terms,
        )

    def out_of_range(self, r: StoredReading) -> bool:
        t = r.temperature_centi_c
        if t < self.min_temp_centi_c or t > self.max_temp_centi_c:
            return True
        return self.max_humidity_permille != 0 and r.humidity_permille > self.max_humidity_permille

    def shock_over(self, r: StoredReading) -> bool:
        return self.max_shock_milli_g != 0 and r.shock_milli_g > self.max_shock_milli_g

    def inside_geofence(self, r: StoredReading) -> bool:
        return (
            abs(r.latitude_e6 - self.dest_lat_e6) <= self.geofence_e6
            and abs(r.longitude_e6 - self.dest_lon_e6) <= self.geofence_e6
        )


@dataclass(frozen=True, slots=True)
class Witness:
    """What the chain says of a device on an order: its issuer, the validity of its
    certificate and when the issuer revoked it (``devices`` row)."""

    issuer: str | None
    valid_from: int | None
    valid_until: int | None
    revoked_at: int | None

    @classmethod
    def from_row(cls, row: Any) -> Witness:
        """From a ``devices`` row (or one with :data:`repo.BINDING_COLUMNS`)."""
        return cls(row.issuer, row.valid_from, row.valid_until, row.revoked_at)

    def counts(self, timestamp: int) -> bool:
        """Whether a reading taken at ``timestamp`` counts as evidence on chain."""
        if self.valid_from is not None and timestamp < self.valid_from:
            return False
        if self.valid_until is not None and timestamp > self.valid_until:
            return False
        return self.revoked_at is None or timestamp < self.revoked_at


@dataclass(frozen=True, slots=True)
class ActionIntent:
    """A chain action for the outbox (backend.domain.actions), and when it may run."""

    action: ChainAction
    delay_secs: float = 0.0
    #: For arrival: replace a still-pending entry whose reading is later than this one.
    prefer_earlier: bool = False

    @property
    def kind(self) -> str:
        return self.action.kind


@dataclass(frozen=True, slots=True)
class AlertIntent(Alert):
    """An alert to store, with the key that keeps it from being stored twice (None:
    never deduplicated)."""

    dedup_key: str | None

    def as_row(self) -> dict[str, Any]:
        return dict(zip(_ALERT_ROW, _alert_row(self), strict=True))


_ALERT_ROW: tuple[str, ...] = (*ALERT_ATTRS, "dedup_key")
_alert_row = attrgetter(*_ALERT_ROW)


@dataclass
class RulesOutput:
    actions: list[ActionIntent] = field(default_factory=list)
    alerts: list[AlertIntent] = field(default_factory=list)
    #: risk snapshots to keep (backend/risk: the live score and its history)
    risk: list[RiskSnapshot] = field(default_factory=list)

    def extend(self, other: RulesOutput) -> None:
        self.actions += other.actions
        self.alerts += other.alerts
        self.risk += other.risk


@dataclass(frozen=True, slots=True)
class RulesConfig:
    #: Readings kept per device for evaluation (and loaded from the database).
    window: int = 256
    #: Longest excursion evidence the oracle submits in one transaction.
    max_evidence_readings: int = 200
    #: Trend warning: fit over this many readings, warn if a limit is reached within the horizon.
    trend_readings: int = 8
    trend_horizon_secs: int = 1800
    #: Device silent: no reading for factor × its reading interval (and at least min secs).
    silence_factor: float = 5.0
    silence_min_secs: float = 60.0
    default_interval_secs: float = 60.0
    #: Hold an arrival proof this long so breach evidence found meanwhile goes first.
    arrival_delay_secs: float = 2.0
    #: How long an order's terms/state are cached before they are read again.
    terms_ttl_secs: float = 5.0
    #: The risk model's weights and alert levels (docs/risk.md).
    risk: RiskConfig = field(default_factory=RiskConfig)


@dataclass
class _Stream(ReadingWindow):
    """One device's window of readings, by seq."""

    trend_alerted: set[str] = field(default_factory=set)


class TermsCache:
    """Order terms read from the ``orders`` table (filled by the chain indexer)."""

    def __init__(self, ttl_secs: float = 5.0) -> None:
        self.ttl = ttl_secs
        self._terms: dict[int, tuple[float, OrderTerms | None]] = {}

    def get_many(self, session: Session, order_ids: Iterable[int]) -> dict[int, OrderTerms]:
        now = time.monotonic()
        want = set(order_ids)
        stale = [o for o in want if o not in self._terms or now - self._terms[o][0] > self.ttl]
        if stale:
            rows = session.scalars(select(OrderRow).where(OrderRow.id.in_(stale)))
            found = {row.id: OrderTerms.from_row(row) for row in rows}
            for o in stale:
                self._terms[o] = (now, found.get(o))
        out: dict[int, OrderTerms] = {}
        for o in want:
            terms = self._terms[o][1]
            if terms is not None:
                out[o] = terms
        return out

    def forget(self, order_id: int | None = None) -> None:
        if order_id is None:
            self._terms.clear()
        else:
            self._terms.pop(order_id, None)


# ------------------------------------------------------------ the pure rules
#
# What makes an excursion breach, given a device's readings by seq: no database, no
# state. The engine below and the party's watcher (backend/watcher) both use these.


def run_around(
    by_seq: Mapping[int, StoredReading], r: StoredReading, t: OrderTerms
) -> list[StoredReading]:
    """The maximal run of consecutive-seq, increasing-time, out-of-range readings around
    ``r`` (none before shipment), in seq order."""
    left: list[StoredReading] = []
    cur = r
    while (p := by_seq.get(cur.seq - 1)) is not None and (
        t.shipped_at <= p.timestamp < cur.timestamp and t.out_of_range(p)
    ):
        left.append(p)
        cur = p
    right: list[StoredReading] = []
    cur = r
    while (n := by_seq.get(cur.seq + 1)) is not None and (
        n.timestamp > cur.timestamp and t.out_of_range(n)
    ):
        right.append(n)
        cur = n
    return left[::-1] + [r] + right


def excursion_evidence(
    by_seq: Mapping[int, StoredReading],
    r: StoredReading,
    t: OrderTerms,
    counts: Callable[[int], bool],
) -> list[StoredReading] | None:
    """The evidence of an excursion breach through the out-of-range reading ``r``: the
    shortest prefix of its run (the readings ``counts`` admits by timestamp: a
    revocation cuts it; times increase along a run, so those are one stretch) whose
    span exceeds the tolerated seconds; None while the run is not long enough."""
    run = [x for x in run_around(by_seq, r, t) if counts(x.timestamp)]
    if not run or run[-1].timestamp - run[0].timestamp <= t.tolerated_excursion_secs:
        return None
    end = next(
        i for i, x in enumerate(run) if x.timestamp - run[0].timestamp > t.tolerated_excursion_secs
    )
    return run[: end + 1]


class RulesEngine:
    """Evaluates stored readings; owned by one thread (the ingest worker)."""

    def __init__(self, config: RulesConfig | None = None, terms: TermsCache | None = None) -> None:
        self.config = config or RulesConfig()
        #: Order terms (the indexer stage tells it which orders changed: backend.runtime).
        self.terms = terms if terms is not None else TermsCache(self.config.terms_ttl_secs)
        self._streams: dict[repo.StreamKey, _Stream] = {}
        self._breach_queued: set[int] = set()
        self._arrival_ts: dict[int, int] = {}
        self._risk: dict[int, ShipmentRisk] = {}
        self.skipped_no_terms = 0

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget all in-memory state (after a failed transaction); it reloads from the DB."""
        self._streams.clear()
        self._breach_queued.clear()
        self._arrival_ts.clear()
        self._risk.clear()
        self.terms.forget()

    def forget_orders(self, drop: Callable[[int], bool]) -> int:
        """Forget the in-memory state of the orders ``drop`` selects (another oracle
        process evaluates them now: backend/oracle/ownership.py); returns how many."""
        orders = {o for o, _ in self._streams if drop(o)} | {o for o in self._risk if drop(o)}
        for key in [k for k in self._streams if k[0] in orders]:
            del self._streams[key]
        for o in orders:
            self._risk.pop(o, None)
            self._arrival_ts.pop(o, None)
            self._breach_queued.discard(o)
        return len(orders)

    def _load_streams(self, session: Session, keys: Sequence[repo.StreamKey]) -> None:
        """Load the windows of ``keys`` not in memory (the evaluated readings: none with
        a handoff row) and, for an order seen for the first time, whether its breach
        proof is queued already (by this process before a restart, or by the order's
        previous owner)."""
        missing = [k for k in keys if k not in self._streams]
        if not missing:
            return
        known = {o for o, _ in self._streams}
        loaded = repo.latest_readings(session, missing, self.config.window)
        for key in missing:
            stream = _Stream()
            for row in loaded.get(key, []):
                stream.add(StoredReading.from_row(row))
            self._streams[key] = stream
        fresh = {o for o, _ in missing} - known
        queued = {ProveExcursion.key_for(o): o for o in fresh}
        for dedup_key in repo.queued_keys(session, queued):
            self._breach_queued.add(queued[dedup_key])

    def warm_up(
        self,
        session: Session,
        owns: Callable[[int], bool] = lambda _o: True,
        lock: Callable[[set[int]], None] | None = None,
    ) -> int:
        """Load the windows of devices bound to orders in transit that this process
        evaluates (``owns``), for the silence checks; ``lock``: called with the orders
        before their windows are read."""
        q = (
            select(DeviceRow.order_id, DeviceRow.device)
            .join(OrderRow, OrderRow.id == DeviceRow.order_id)
            .where(OrderRow.state == IN_TRANSIT)
        )
        keys = sorted({(int(o), str(d)) for o, d in session.execute(q) if owns(int(o))})
        if lock is not None:
            lock({o for o, _ in keys})
        self._load_streams(session, keys)
        return len(keys)

    def loaded_orders(self) -> list[int]:
        """The orders whose readings this process holds in memory."""
        return sorted({o for o, _ in self._streams})

    # ------------------------------------------------------------- evaluation

    def evaluate(self, session: Session, readings: Sequence[StoredReading]) -> RulesOutput:
        """Evaluate newly stored readings (already inserted in ``session``'s transaction)."""
        out = RulesOutput()
        if not readings:
            return out
        terms = self.terms.get_many(session, {r.order_id for r in readings})
        ordered = sorted(readings, key=lambda r: (r.order_id, r.device, r.seq))
        keys = list(dict.fromkeys((r.order_id, r.device) for r in ordered))
        devices = repo.order_bindings(session, {k[0] for k in keys})
        bound = sorted((row.order_id, row.device) for row in devices)
        # every device of the batch's orders: the risk model of an order sees all of them
        self._load_streams(session, list(dict.fromkeys([*keys, *bound])))
        wanted = set(keys)
        witnesses = {
            (row.order_id, row.device): Witness.from_row(row)
            for row in devices
            if (row.order_id, row.device) in wanted
        }
        touched: set[repo.StreamKey] = set()
        # risk: each order's readings in this batch, and where a breach queued by one of
        # them became provable (_assess_risk feeds them to the model after the loop)
        at_risk: dict[int, list[StoredReading]] = {}
        breach_from: dict[int, tuple[int, str, int]] = {}
        for r in ordered:
            key = (r.order_id, r.device)
            stream = self._streams[key]
            if stream.seqs and r.seq < stream.seqs[0] - 1:
                # Older than the window: bring its neighbourhood back from the database.
                half = self.config.window // 2
                for row in repo.device_readings(
                    session, r.order_id, r.device, r.seq - half, r.seq + half
                ):
                    stream.add(StoredReading.from_row(row))
            stream.add(r)
            touched.add(key)
            t = terms.get(r.order_id)
            if t is None:
                self.skipped_no_terms += 1
                continue
            queued, n_actions = r.order_id in self._breach_queued, len(out.actions)
            self._evaluate_one(session, stream, r, t, witnesses.get(key), out)
            if t.state == IN_TRANSIT:
                at_risk.setdefault(r.order_id, []).append(r)
                if not queued and r.order_id in self._breach_queued:
                    breach_from[r.order_id] = _provable_from(r, out.actions[n_actions:])
        self._assess_risk(session, terms, at_risk, breach_from, out)
        # Stored (and so numbered) in the time order of what they are about, the rules'
        # before the risk model's at one time: a warning goes before the breach it
        # warned of, as if the readings had come one at a time.
        out.alerts.sort(key=attrgetter("at"))
        for key in touched:
            self._streams[key].trim(self.config.window)
        return out

    # ------------------------------------------------------------------- risk

    def _make_trackers(
        self,
        session: Session,
        terms: Mapping[int, OrderTerms],
        batch: Mapping[int, Sequence[StoredReading]],
    ) -> None:
        """Make the risk model of each order of ``batch`` that has none yet (first
        sight), from its stored windows (less its readings in ``batch``, which it is
        about to be fed in turn), its devices' statuses and the newest snapshot's open
        episodes (so no alert repeats after a restart): one query each for all of them."""
        new = [o for o in batch if o not in self._risk and terms[o].terms is not None]
        if not new:
            return
        restored = repo.latest_risk(session, new)
        trackers: dict[int, ShipmentRisk] = {}
        for order_id in new:
            t = terms[order_id]
            assert t.terms is not None
            last = restored.get(order_id)
            trackers[order_id] = ShipmentRisk(
                order_id,
                t.terms,
                t.shipped_at,
                self.config.risk,
                restored=last.state if last is not None else None,
                default_interval_secs=self.config.default_interval_secs,
            )
        fed = {(r.order_id, r.device, r.seq) for o in new for r in batch[o]}
        for (order_id, device), stream in self._streams.items():
            tracker = trackers.get(order_id)
            if tracker is not None:
                for r in stream.last(len(stream.seqs)):
                    if (order_id, device, r.seq) not in fed:
                        tracker.observe(r)
        for order_id, device, status, battery in repo.device_statuses(session, new):
            trackers[order_id].note_status(device, status, battery)
        self._risk.update(trackers)

    def note_status(
        self, order_id: int, device: str, status: str | None, battery: int | None
    ) -> None:
        """A device's status message (battery, Last Will) for the order's risk model."""
        tracker = self._risk.get(order_id)
        if tracker is not None:
            tracker.note_status(device, status, battery)

    def _assess_risk(
        self,
        session: Session,
        terms: Mapping[int, OrderTerms],
        batch: Mapping[int, list[StoredReading]],
        breach_from: Mapping[int, tuple[int, str, int]],
        out: RulesOutput,
    ) -> None:
        """Feed each order's risk model the batch's readings in time order (timestamp,
        device, seq) and assess it after each one, at that reading's timestamp: the
        model counts assessments (a breach warning needs consecutive ones), so its
        alerts and snapshots are the same however ingest cut the readings into
        batches. The reading's own device is not silent; another device's silence is
        measured from its newest reading. A breach the rules queued in this batch
        counts from the reading that made it provable on (``breach_from``; at the
        batch's newest reading at the latest)."""
        self._make_trackers(session, terms, batch)
        for order_id, rs in batch.items():
            t = terms[order_id]
            tracker = self._risk.get(order_id)
            if tracker is None:  # no terms to assess against
                continue
            since = breach_from.get(order_id)
            queued = order_id in self._breach_queued
            in_time = sorted(rs, key=_in_time)
            for r in in_time:
                tracker.observe(r)
                if t.breached or (
                    queued and (since is None or _in_time(r) >= since or r is in_time[-1])
                ):
                    tracker.mark_breached()
                self._keep(tracker.assess(r.timestamp, {r.device: 0.0}), out)

    @staticmethod
    def _keep(assessment: Any, out: RulesOutput) -> None:
        if assessment.keep:
            out.risk.append(assessment.snapshot)
        for a in assessment.alerts:
            out.alerts.append(_risk_alert(assessment.snapshot.order_id, a))

    def _evaluate_one(
        self,
        session: Session,
        stream: _Stream,
        r: StoredReading,
        t: OrderTerms,
        witness: Witness | None,
        out: RulesOutput,
    ) -> None:
        # Only a reading the device's certificate covers is evidence (alerts regardless).
        counts = witness is not None and witness.counts(r.timestamp)
        in_transit = t.state == IN_TRANSIT and counts
        prev = stream.by_seq.get(r.seq - 1)
        # Flags: alert on the transition (the previous reading did not have the flag).
        for flag, kind, severity, text in (
            (FLAG_DOOR_OPEN, AlertKind.DOOR_OPEN, Severity.WARNING, "door opened"),
            (FLAG_TAMPER, AlertKind.TAMPER, Severity.CRITICAL, "tamper switch triggered"),
            (FLAG_SENSOR_FAULT, AlertKind.SENSOR_FAULT, Severity.WARNING, "sensor reports a fault"),
        ):
            if r.flags & flag and (prev is None or not prev.flags & flag):
                out.alerts.append(self._alert(r, kind, severity, f"{text} (seq {r.seq})", {}))

        if t.shock_over(r):
            out.alerts.append(
                self._alert(
                    r,
                    AlertKind.SHOCK,
                    Severity.CRITICAL,
                    f"shock of {r.shock_milli_g} mg over the limit of {t.max_shock_milli_g} mg",
                    {"shockMilliG": r.shock_milli_g, "limit": t.max_shock_milli_g},
                )
            )
            if in_transit and not t.breached and r.order_id not in self._breach_queued:
                self._breach_queued.add(r.order_id)
                out.actions.append(
                    ActionIntent(
                        ProveShock(order_id=r.order_id, reading_id=r.id, device=r.device, seq=r.seq)
                    )
                )

        if t.out_of_range(r):
            self._excursion(stream, r, t, prev, witness if counts else None, out)
        elif stream.head is r:
            self._trend(stream, r, t, out)

        if in_transit and t.arrival_quorum > 0 and t.inside_geofence(r):
            arrival = self._arrival(session, r, t, witness)
            known = self._arrival_ts.get(r.order_id)
            if arrival is not None and (known is None or arrival.timestamp < known):
                self._arrival_ts[r.order_id] = arrival.timestamp
                out.actions.append(
                    ActionIntent(
                        arrival, delay_secs=self.config.arrival_delay_secs, prefer_earlier=True
                    )
                )

    @staticmethod
    def _arrival(
        session: Session, r: StoredReading, t: OrderTerms, witness: Witness | None
    ) -> ProveArrival | None:
        """The arrival proof ``r`` makes: itself (quorum 1), or with the earliest counting
        reading inside the geofence of a device of the other issuer (quorum 2; None
        while there is none)."""
        if t.arrival_quorum < 2:
            return ProveArrival(
                order_id=r.order_id, reading_ids=(r.id,), devices=(r.device,), timestamp=r.timestamp
            )
        if witness is None or witness.issuer is None:
            return None
        other = t.second_device_issuer if witness.issuer == t.device_issuer else t.device_issuer
        box = (t.dest_lat_e6, t.dest_lon_e6, t.geofence_e6)
        found = repo.earliest_inside(session, r.order_id, other, box, since=t.shipped_at)
        if found is None:
            return None
        pair = sorted([(r.id, r.device, r.timestamp), found], key=lambda x: x[2])
        return ProveArrival(
            order_id=r.order_id,
            reading_ids=tuple(i for i, _, _ in pair),
            devices=tuple(d for _, d, _ in pair),
            timestamp=pair[-1][2],
        )

    def _excursion(
        self,
        stream: _Stream,
        r: StoredReading,
        t: OrderTerms,
        prev: StoredReading | None,
        witness: Witness | None,
        out: RulesOutput,
    ) -> None:
        """``witness`` is None when ``r`` does not count as evidence (alerts only)."""
        stream.trend_alerted.clear()
        starts_run = prev is None or not t.out_of_range(prev) or prev.timestamp >= r.timestamp
        if starts_run:
            out.alerts.append(
                self._alert(
                    r,
                    AlertKind.EXCURSION_STARTED,
                    Severity.WARNING,
                    f"out of range: {r.temperature_centi_c / 100:.2f} °C, "
                    f"{r.humidity_permille / 10:.1f} % RH; breach after "
                    f"{t.tolerated_excursion_secs} s",
                    {
                        "temperatureCentiC": r.temperature_centi_c,
                        "humidityPermille": r.humidity_permille,
                        "toleratedSecs": t.tolerated_excursion_secs,
                    },
                )
            )
        if (
            witness is None
            or t.breached
            or r.order_id in self._breach_queued
            or r.timestamp < t.shipped_at
        ):
            return
        evidence = excursion_evidence(stream.by_seq, r, t, witness.counts)
        if evidence is None:
            return
        first, last = evidence[0], evidence[-1]
        proof = ProveExcursion(
            order_id=r.order_id,
            device=r.device,
            reading_ids=tuple(x.id for x in evidence),
            first_seq=first.seq,
            last_seq=last.seq,
            started_at=first.timestamp,
            ended_at=last.timestamp,
        )
        data = proof.payload()
        self._breach_queued.add(r.order_id)
        if len(evidence) > self.config.max_evidence_readings:
            out.alerts.append(
                self._alert(
                    r,
                    AlertKind.BREACH_UNPROVABLE,
                    Severity.CRITICAL,
                    f"excursion of {last.timestamp - first.timestamp} s needs {len(evidence)} "
                    f"readings as evidence, more than the {self.config.max_evidence_readings} "
                    "one transaction carries",
                    data,
                )
            )
            return
        out.alerts.append(
            AlertIntent(
                r.order_id,
                r.device,
                AlertKind.BREACH_DETECTED,
                Severity.CRITICAL,
                f"excursion of {last.timestamp - first.timestamp} s (seq {first.seq}–{last.seq}) "
                f"exceeds the tolerated {t.tolerated_excursion_secs} s",
                last.timestamp,
                data,
                f"breach:{r.order_id}",
            )
        )
        if t.state == IN_TRANSIT:
            out.actions.append(ActionIntent(proof))

    def _trend(self, stream: _Stream, r: StoredReading, t: OrderTerms, out: RulesOutput) -> None:
        k = self.config.trend_readings
        pts = stream.last(k)
        if len(pts) < k or any(
            b.timestamp <= a.timestamp for a, b in zip(pts, pts[1:], strict=False)
        ):
            stream.trend_alerted.clear()
            return
        line = temperature_line(pts)
        if line is None:
            return
        now_fit, slope = line  # centi-°C, centi-°C/s
        for side, limit, heading in (
            ("high", t.max_temp_centi_c, slope > 0),
            ("low", t.min_temp_centi_c, slope < 0),
        ):
            eta = (limit - now_fit) / slope if heading else None
            if eta is not None and 0 < eta <= self.config.trend_horizon_secs:
                if side not in stream.trend_alerted:
                    stream.trend_alerted.add(side)
                    out.alerts.append(
                        self._alert(
                            r,
                            AlertKind.TREND,
                            Severity.WARNING,
                            f"temperature {r.temperature_centi_c / 100:.2f} °C heading "
                            f"{'up' if side == 'high' else 'down'} at "
                            f"{slope * 60 / 100:+.2f} °C/min: reaches the "
                            f"{limit / 100:.2f} °C limit in about {eta / 60:.0f} min "
                            "(still recoverable)",
                            {
                                "side": side,
                                "slopeCentiCPerMin": round(slope * 60, 2),
                                "etaSecs": int(eta),
                            },
                            key=f"trend:{r.order_id}:{r.device}:{side}:{r.seq}",
                        )
                    )
            else:
                stream.trend_alerted.discard(side)

    @staticmethod
    def _alert(
        r: StoredReading,
        kind: str,
        severity: str,
        message: str,
        data: dict[str, Any],
        key: str | None = None,
    ) -> AlertIntent:
        data = {"seq": r.seq, "readingId": r.id, **data}
        return AlertIntent(
            r.order_id,
            r.device,
            kind,
            severity,
            message,
            r.timestamp,
            data,
            key or f"{kind}:{r.order_id}:{r.device}:{r.seq}",
        )

    # ---------------------------------------------------------------- silence

    def check_silence(self, session: Session, now: float | None = None) -> RulesOutput:
        """Alerts for devices of orders in transit that stopped reporting."""
        now = time.time() if now is None else now
        out = RulesOutput()
        heads = {k: s.head for k, s in self._streams.items() if s.head is not None}
        terms = self.terms.get_many(session, {h.order_id for h in heads.values() if h})
        for key, head in heads.items():
            assert head is not None
            device = head.device
            t = terms.get(head.order_id)
            if t is None or t.state != IN_TRANSIT:
                continue
            stream = self._streams[key]
            interval = reading_interval(stream.last(11), self.config.default_interval_secs)
            threshold = max(self.config.silence_min_secs, self.config.silence_factor * interval)
            quiet = now - head.received_at
            if quiet > threshold:
                out.alerts.append(
                    AlertIntent(
                        head.order_id,
                        device,
                        AlertKind.SILENCE,
                        Severity.WARNING,
                        f"no reading for {quiet:.0f} s "
                        f"(interval {interval:.0f} s, last seq {head.seq})",
                        int(now),
                        {"lastSeq": head.seq, "quietSecs": int(quiet), "intervalSecs": interval},
                        f"silence:{head.order_id}:{device}:{head.seq}",
                    )
                )
        # The risk picture moves on without readings (silence, ETA): assess it again.
        for order_id, tracker in self._risk.items():
            t = terms.get(order_id)
            if t is None or t.state != IN_TRANSIT:
                continue
            quiets: dict[str, float] = {}
            at = 0
            for (o, device), stream in self._streams.items():
                h = stream.head
                if o == order_id and h is not None:
                    quiets[device] = max(0.0, now - h.received_at)
                    at = max(at, int(h.timestamp + quiets[device]))
            if quiets:
                self._keep(tracker.assess(at, quiets), out)
        return out


def _in_time(r: StoredReading) -> tuple[int, str, int]:
    """The order in which the risk model is fed a batch's readings."""
    return r.timestamp, r.device, r.seq


def _provable_from(r: StoredReading, actions: Sequence[ActionIntent]) -> tuple[int, str, int]:
    """Where, in :func:`_in_time` order, the breach ``r`` just queued became provable:
    at the last reading of the excursion's evidence (a window loaded from the database
    may hold readings newer than ``r``), else at ``r`` (a shock, or evidence too long
    to prove)."""
    for a in actions:
        if isinstance(a.action, ProveExcursion):
            return a.action.ended_at, a.action.device, a.action.last_seq
    return _in_time(r)


def _risk_alert(order_id: int, a: RiskAlert) -> AlertIntent:
    return AlertIntent(order_id, a.device, a.kind, a.severity, a.message, a.at, a.data, a.dedup_key)


def _supersedes(arrival: ProveArrival, order_id: int, payload: dict[str, Any]) -> bool:
    """Whether ``arrival`` should replace the pending entry holding ``payload`` (a later
    reading's proof; or one that no longer decodes: the executor would refuse it)."""
    try:
        pending = decode_action(arrival.kind, order_id, payload)
    except ActionPayloadError:
        return True
    return arrival.earlier_than(pending)


def write_outputs(
    session: Session, output: RulesOutput, now: float | None = None
) -> tuple[int, int]:
    """Store the rules' alerts and outbox entries in ``session``'s transaction.

    Returns (alerts added, actions added). An arrival proof that is still pending
    is replaced by an earlier reading's (the earliest arrival is the delivery time).
    """
    now = time.time() if now is None else now
    alerts = repo.insert_alerts(session, [a.as_row() for a in output.alerts])
    repo.insert_risk_snapshots(session, [r.as_row() for r in output.risk])
    actions = 0
    for a in output.actions:
        if repo.enqueue(session, a.action, not_before=now + a.delay_secs, now=now):
            actions += 1
        elif a.prefer_earlier and isinstance(a.action, ProveArrival):
            existing = repo.outbox_entry(session, a.action.dedup_key)
            if (
                existing is not None
                and existing.status == repo.OUTBOX_PENDING
                and existing.kind == a.kind
                and _supersedes(a.action, existing.order_id, existing.payload)
            ):
                repo.replace_pending_payload(session, a.action.dedup_key, a.action.payload())
    return alerts, actions
