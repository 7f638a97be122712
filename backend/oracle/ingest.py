"""The ingest pipeline: decode → validate → verify → bind → dedup → store → rules.

:class:`Ingestor` turns a batch of raw MQTT messages into stored readings in one
database transaction, together with the alerts and outbox entries the rules
derive from them. Every message ends either stored, dropped as a duplicate, or
refused with a counted reason; nothing raises out of it except a failure to
store (:class:`IngestStoreError`), in which case nothing of the batch is stored
or counted and the caller must not acknowledge it.

:class:`IngestWorker` is the thread that drains the subscriber's queue in
batches (``batch_size`` messages or ``batch_ms`` milliseconds), calls the
ingestor, and acknowledges each message only after its batch is committed.

Ingest depends on the indexer stage (``backend.indexer``) through one small
interface, :class:`ChainFollower`: the newest chain time it has seen, and
``catch_up()`` before a reading is refused for a reason that lagging behind the
chain could explain.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from backend.core.errors import TrustShipError, WireError
from backend.domain.reading import StoredReading
from backend.oracle.fastpath import use_fast_keccak
from backend.oracle.metrics import Metrics
from backend.oracle.metrics import metrics as default_metrics
from backend.oracle.ownership import Ownership, slot_of
from backend.oracle.rules import RulesEngine, write_outputs
from backend.store import repositories as repo
from backend.store.db import session_factory
from backend.store.locks import ORDER, lock_for_transaction
from backend.store.models import DeviceRow
from backend.telemetry import Domain, SignedReading, decode_message, parse_topic, reading_digest
from backend.telemetry.eip712 import recover_from_digest
from backend.telemetry.reading import checksummed
from backend.telemetry.status import StatusMessage, decode_status

log = logging.getLogger(__name__)

# Refusal reasons beyond decode_message's WireError codes (docs/oracle.md lists all).
FUTURE_TIMESTAMP = "future_timestamp"
SIGNATURE_MISMATCH = "signature_mismatch"
UNKNOWN_DEVICE = "unknown_device"
DEVICE_WRONG_ORDER = "device_wrong_order"
SEQ_REUSED = "seq_reused"
INVALID_PAYLOAD = "invalid_payload"
STATUS_SUFFIX = "/status"

STORED = "stored"
DUPLICATE = "duplicate"
REJECTED = "rejected"
#: A device's status message, recorded on its binding.
STATUS = "status"


@runtime_checkable
class ChainFollower(Protocol):
    """What ingest needs of the indexer stage (:class:`backend.indexer.ChainIndexer`).

    The indexer polls, so it can lag behind a device that publishes the moment its
    ``shipOrder`` is mined, or behind a chain whose clock just moved. Before refusing
    a reading as ``unknown_device``, ``device_wrong_order`` or ``future_timestamp``,
    ingest asks it to catch up once (at most once per batch, and at most every
    ``IngestConfig.catch_up_interval_secs``) and checks again.
    """

    @property
    def chain_time(self) -> int | None:
        """The newest block time indexed (None before the first pass)."""
        ...

    def catch_up(self) -> bool:
        """Index up to the chain head now, in the caller's thread; True when it read
        blocks it had not read before. Thread-safe (the indexer's own thread may be
        indexing at the same time); raises when the chain cannot be read."""
        ...


class IngestStoreError(TrustShipError):
    """Raised when a batch cannot be stored; none of it was stored or acknowledged."""


@dataclass(slots=True)
class Inbound:
    """A message as received: topic, raw payload and what is needed to acknowledge it."""

    topic: str
    payload: bytes
    received_at: float = field(default_factory=time.time)
    mid: int = 0
    qos: int = 0
    #: The subscriber's connection number when received (acks are only valid on it).
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # stored | duplicate | rejected
    reason: str | None = None
    reading_id: int | None = None


@dataclass
class BatchResult:
    verdicts: list[Verdict]
    stored: int = 0
    duplicates: int = 0
    statuses: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    actions: int = 0
    #: (order id, device) → the seqs of this batch that are stored now: stored by it,
    #: or already stored (a redelivery or a device's resend). What receipts confirm.
    confirmed: dict[tuple[int, str], list[int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    #: How far a reading's timestamp may lie ahead of the oracle's clock
    #: (max(wall clock, newest chain time)); see docs/oracle.md.
    future_tolerance_secs: int = 300
    #: How long "this device is bound to nothing" is believed before asking the DB again.
    unknown_device_ttl_secs: float = 2.0
    #: At most one chain catch-up (:meth:`ChainFollower.catch_up`) per this many seconds.
    catch_up_interval_secs: float = 0.25
    #: At most one log line per refusal reason per this many seconds.
    log_interval_secs: float = 10.0
    #: Several oracle processes (backend/oracle/ownership.py): how often a process
    #: looks again at who is alive and which orders it should evaluate ...
    ownership_interval_secs: float = 1.0
    #: ... and how often it takes the readings other processes stored for its orders,
    #: at most this many handoff rows in one transaction: a backlog (left while an
    #: owner was dead or hung) is taken a bounded pass at a time, between batches.
    handoff_interval_secs: float = 0.05
    handoff_rows_per_pass: int = 5000


class RateLimitedLog:
    """Logs at most one line per key per interval, with the count it held back."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._log = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e18) < self._interval:
                self._held[key] += 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
        suffix = f" (+{held} more like it since the last report)" if held else ""
        self._log.warning(message + suffix, *args)


@dataclass(frozen=True, slots=True)
class Refusals:
    """What was refused of one device on one order (as its topic names them)."""

    order_id: int
    device: str
    by_reason: dict[str, int]
    last_reason: str
    last_message: str


class RefusalTally:
    """Refusals per (order, device) of the topic, for the newest ``size`` pairs.

    So that a person can ask why an order's readings were not stored (``trustship
    replay`` on a failure, ``GET /orders/{id}/refusals``) without refused payloads
    reaching the database: the tally lives in memory and is bounded, so a flood from
    made-up topics evicts old entries instead of growing.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._tally: OrderedDict[tuple[int, str], tuple[Counter[str], str, str]] = OrderedDict()

    def add(self, topic: str, reason: str, why: str) -> None:
        try:
            order_id, device, _ = parse_topic(topic)
        except WireError:
            return
        key = (order_id, checksummed(device))
        with self._lock:
            entry = self._tally.pop(key, None)
            counts = entry[0] if entry is not None else Counter()
            counts[reason] += 1
            self._tally[key] = (counts, reason, why[:300])
            while len(self._tally) > self._size:
                self._tally.popitem(last=False)

    def for_order(self, order_id: int) -> list[Refusals]:
        with self._lock:
            return [
                Refusals(o, d, dict(c), reason, why)
                for (o, d), (c, reason, why) in self._tally.items()
                if o == order_id
            ]


class BindingCache:
    """Which orders each device is bound to (``devices`` table, filled by the indexer).

    Positive answers are kept; a device bound to nothing is asked again after
    ``negative_ttl`` seconds, so a binding indexed a moment ago is seen quickly while
    a flood of messages from an unknown device costs at most one query per interval.
    """

    def __init__(self, sessions: sessionmaker[Session], negative_ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = negative_ttl
        self._orders: dict[str, frozenset[int]] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def load_all(self) -> int:
        with self._sessions() as s:
            pairs = repo.all_bindings(s)
        by_device: dict[str, set[int]] = {}
        for order_id, device in pairs:
            by_device.setdefault(device, set()).add(order_id)
        now = time.monotonic()
        with self._lock:
            for device, orders in by_device.items():
                self._orders[device] = frozenset(orders)
                self._checked[device] = now
        return len(pairs)

    def reload(self) -> int:
        """Forget every binding and load them again (after a chain reorganisation)."""
        with self._lock:
            self._orders.clear()
            self._checked.clear()
        return self.load_all()

    def add(self, order_id: int, device: str) -> None:
        with self._lock:
            self._orders[device] = self._orders.get(device, frozenset()) | {order_id}

    def refresh(
        self, devices: Iterable[str], wanted: dict[str, int], *, force: bool = False
    ) -> None:
        """Ask the database about devices whose wanted order is not known bound to them
        (``force``: even if asked less than the negative TTL ago)."""
        now = time.monotonic()
        with self._lock:
            ask = [
                d
                for d in devices
                if wanted[d] not in self._orders.get(d, ())
                and (force or now - self._checked.get(d, -1e18) >= self._ttl)
            ]
        if not ask:
            return
        found: dict[str, set[int]] = {d: set() for d in ask}
        with self._sessions() as s:
            for i in range(0, len(ask), 500):
                q = select(DeviceRow.device, DeviceRow.order_id).where(
                    DeviceRow.device.in_(ask[i : i + 500])
                )
                for device, order_id in s.execute(q):
                    found[device].add(order_id)
        with self._lock:
            for d, orders in found.items():
                self._orders[d] = frozenset(orders)
                self._checked[d] = now

    def orders_of(self, device: str) -> frozenset[int]:
        return self._orders.get(device, frozenset())


@dataclass(slots=True)
class _Candidate:
    index: int
    signed: SignedReading
    digest: bytes
    received_at: float


@dataclass
class Prepared:
    """A batch after every check that needs no write: what :meth:`Ingestor.commit` stores."""

    batch: Sequence[Inbound]
    verdicts: list[Verdict | None]
    result: BatchResult
    unique: list[_Candidate]
    #: Status messages of bound devices, by message index.
    statuses: list[tuple[int, StatusMessage]] = field(default_factory=list)


class Ingestor:
    """Validates, verifies and stores batches of telemetry messages."""

    def __init__(
        self,
        engine: Engine,
        domain: Domain,
        *,
        rules: RulesEngine | None = None,
        metrics: Metrics | None = None,
        config: IngestConfig | None = None,
        chain_time: Callable[[], int | None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        follower: ChainFollower | None = None,
        bindings: BindingCache | None = None,
    ) -> None:
        use_fast_keccak()
        self.engine = engine
        self.sessions = session_factory(engine)
        self.domain = domain
        self.rules = rules
        self.metrics = metrics if metrics is not None else default_metrics
        self.config = config or IngestConfig()
        #: The chain's clock: ``chain_time`` if given, else the follower's.
        self.chain_time = chain_time
        self.wall_clock = wall_clock
        #: Device bindings (the indexer stage feeds new ones in: backend.runtime).
        self.bindings = (
            bindings
            if bindings is not None
            else BindingCache(self.sessions, self.config.unknown_device_ttl_secs)
        )
        self.refusals = RefusalTally()
        self._warn = RateLimitedLog(log, self.config.log_interval_secs)
        #: Brings chain time and device bindings up to the chain head on request
        #: (:class:`ChainFollower`); None: readings are judged on what is indexed.
        self.follower = follower
        self._caught_up_at = -1e18
        #: Which orders this process evaluates (ownership.py); the others' readings are
        #: stored and handed off to their owner. Without rules nothing is evaluated,
        #: so nothing is handed off either.
        self.ownership = Ownership(engine)
        self._joined = False

    def _catch_up(self) -> bool:
        """Ask the follower to catch up (once per batch, see :meth:`prepare`).

        Runs are at least ``catch_up_interval_secs`` apart: when the last one was more
        recent, this waits out the rest rather than refusing, since a binding mined a
        moment after that run would otherwise lose the reading. A flood of readings from
        unbound devices therefore costs at most one short wait per batch.
        """
        if self.follower is None:
            return False
        wait = self._caught_up_at + self.config.catch_up_interval_secs - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._caught_up_at = time.monotonic()
        try:
            self.follower.catch_up()
        except Exception as exc:  # a chain hiccup must not stop ingest
            self._warn.warning("catch_up", "could not catch up with the chain: %s", exc)
            return False
        return True

    def set_domain(self, domain: Domain) -> None:
        self.domain = domain

    def clock(self) -> int:
        """The oracle's notion of now: the later of the wall clock and the chain's time."""
        if self.chain_time is not None:
            chain = self.chain_time()
        else:
            chain = self.follower.chain_time if self.follower is not None else None
        return max(int(self.wall_clock()), chain or 0)

    # ------------------------------------------------------------------ checks

    def _check(self, msg: Inbound, now: int) -> SignedReading | tuple[str, str]:
        """The decoded reading, or (reason, explanation)."""
        try:
            signed = decode_message(msg.payload, msg.topic)
        except WireError as exc:
            return exc.reason, str(exc)
        except Exception as exc:  # e.g. RecursionError on absurdly nested JSON
            return INVALID_PAYLOAD, f"{type(exc).__name__}: {exc}"
        if signed.reading.timestamp > now + self.config.future_tolerance_secs:
            return (
                FUTURE_TIMESTAMP,
                f"timestamp {signed.reading.timestamp} is {signed.reading.timestamp - now} s "
                f"ahead of the oracle's clock (tolerance {self.config.future_tolerance_secs} s)",
            )
        return signed

    def _refuse(
        self,
        verdicts: list[Verdict | None],
        result: BatchResult,
        i: int,
        msg: Inbound,
        reason: str,
        why: str,
    ) -> None:
        verdicts[i] = Verdict(REJECTED, reason)
        result.rejected[reason] += 1
        self.refusals.add(msg.topic, reason, why)
        self._warn.warning(reason, "refused telemetry on %s: %s: %s", msg.topic[:160], reason, why)

    def _seq_taken(
        self,
        verdicts: list[Verdict | None],
        result: BatchResult,
        batch: Sequence[Inbound],
        c: _Candidate,
        key: repo.ReadingKey,
        same: bool,
        what: str,
    ) -> None:
        """``c``'s (order, device, seq) is taken: a redelivery when it is the same reading
        (``same`` digest), else refused as a reused seq (``what`` the device did)."""
        if same:
            verdicts[c.index] = Verdict(DUPLICATE)
            result.duplicates += 1
            return
        why = f"device {key[1]} {what} with seq {key[2]} on order {key[0]}"
        self._refuse(verdicts, result, c.index, batch[c.index], SEQ_REUSED, why)

    # ------------------------------------------------------------------ ingest

    def ingest(self, batch: Sequence[Inbound]) -> BatchResult:
        """Process a batch; raises :class:`IngestStoreError` if it could not be stored."""
        return self.commit(self.prepare(batch))

    def prepare(self, batch: Sequence[Inbound]) -> Prepared:
        """Decode, validate, verify signatures and bindings, drop in-batch duplicates.

        Touches the database only to read bindings, so it can run in another thread
        than :meth:`commit` (the worker pipelines the two)."""
        verdicts: list[Verdict | None] = [None] * len(batch)
        result = BatchResult(verdicts=[])
        now = self.clock()
        domain = self.domain
        candidates: list[_Candidate] = []
        statuses: list[tuple[int, StatusMessage]] = []
        tried_catch_up = False  # at most one chain catch-up per batch, even if it fails
        for i, msg in enumerate(batch):
            if msg.topic.endswith(STATUS_SUFFIX):
                try:
                    statuses.append((i, decode_status(msg.payload, msg.topic)))
                except WireError as exc:
                    self._refuse(verdicts, result, i, msg, exc.reason, str(exc))
                continue
            checked = self._check(msg, now)
            if (
                isinstance(checked, tuple)
                and checked[0] == FUTURE_TIMESTAMP
                and not tried_catch_up
                and self.follower is not None
            ):
                tried_catch_up = True
                self._catch_up()
                now = self.clock()
                checked = self._check(msg, now)
            if isinstance(checked, tuple):
                self._refuse(verdicts, result, i, msg, *checked)
                continue
            digest = reading_digest(checked.reading, domain)
            try:
                signer = recover_from_digest(digest, checked.signature)
            except WireError as exc:
                self._refuse(verdicts, result, i, msg, exc.reason, str(exc))
                continue
            if signer != checked.device:
                self._refuse(
                    verdicts, result, i, msg, SIGNATURE_MISMATCH,
                    f"signed by {signer}, not by the claimed device {checked.device}",
                )  # fmt: skip
                continue
            candidates.append(_Candidate(i, checked, digest, msg.received_at))

        # Binding: the signer (or the status's device) must be bound to the order.
        claims = [(c.signed.device, c.signed.reading.order_id) for c in candidates]
        claims += [(st.device, st.order_id) for _, st in statuses]
        tried_catch_up = self._resolve_bindings(claims, tried_catch_up)
        bound: list[_Candidate] = []
        for c in candidates:
            why = self._unbound(c.signed.device, c.signed.reading.order_id)
            if why is None:
                bound.append(c)
            else:
                self._refuse(verdicts, result, c.index, batch[c.index], *why)
        bound_statuses: list[tuple[int, StatusMessage]] = []
        for i, st in statuses:
            why = self._unbound(st.device, st.order_id)
            if why is None:
                bound_statuses.append((i, st))
            else:
                self._refuse(verdicts, result, i, batch[i], *why)

        # Duplicates inside the batch: the first (order, device, seq) wins.
        unique: dict[repo.ReadingKey, _Candidate] = {}
        for c in bound:
            key = (c.signed.reading.order_id, c.signed.device, c.signed.reading.seq)
            first = unique.get(key)
            if first is None:
                unique[key] = c
            else:
                what = "signed two different readings"
                self._seq_taken(verdicts, result, batch, c, key, first.digest == c.digest, what)
        return Prepared(batch, verdicts, result, list(unique.values()), bound_statuses)

    def _resolve_bindings(self, claims: list[tuple[str, int]], tried_catch_up: bool) -> bool:
        """Make the binding cache current for every (device, order) claimed; returns
        whether a chain catch-up has been tried in this batch."""
        wanted = dict(claims)
        self.bindings.refresh(wanted, wanted)
        # A device bound to several orders: refresh per order it claims.
        extra = {d: o for d, o in claims if o not in self.bindings.orders_of(d)}
        if extra:
            self.bindings.refresh(extra, extra)
        unbound = {d: o for d, o in claims if o not in self.bindings.orders_of(d)}
        if unbound and self.follower is not None:
            if not tried_catch_up:
                tried_catch_up = True
                self._catch_up()
            self.bindings.refresh(unbound, unbound, force=True)
        return tried_catch_up

    def _unbound(self, device: str, order_id: int) -> tuple[str, str] | None:
        """None when ``device`` is bound to ``order_id``, else (reason, explanation)."""
        orders = self.bindings.orders_of(device)
        if order_id in orders:
            return None
        if orders:
            return (
                DEVICE_WRONG_ORDER,
                f"device {device} is bound to order(s) {sorted(orders)}, not {order_id}",
            )
        return UNKNOWN_DEVICE, f"device {device} is not bound to any order"

    def commit(self, prepared: Prepared) -> BatchResult:
        """Store a prepared batch with what the rules derive from it, in one transaction,
        then count it. Raises :class:`IngestStoreError` (nothing stored or counted);
        the same ``prepared`` may be committed again."""
        batch, unique = prepared.batch, prepared.unique
        verdicts = list(prepared.verdicts)
        result = BatchResult(
            verdicts=[],
            duplicates=prepared.result.duplicates,
            rejected=Counter(prepared.result.rejected),
        )
        started = time.perf_counter()
        if unique or prepared.statuses:
            try:
                self._store(unique, prepared.statuses, verdicts, result, batch)
            except Exception as exc:
                if self.rules is not None:
                    self.rules.reset()
                self.metrics.ingest_batch_failures.inc()
                raise IngestStoreError(
                    f"storing a batch of {len(unique)} readings and {len(prepared.statuses)} "
                    f"status messages failed: {exc}"
                ) from exc
        result.verdicts = [
            v if v is not None else Verdict(REJECTED, INVALID_PAYLOAD) for v in verdicts
        ]
        self._count(result, len(batch), time.perf_counter() - started)
        return result

    def _store(
        self,
        items: list[_Candidate],
        statuses: list[tuple[int, StatusMessage]],
        verdicts: list[Verdict | None],
        result: BatchResult,
        batch: Sequence[Inbound],
    ) -> None:
        rows = [repo.reading_row(c.signed, c.digest, c.received_at) for c in items]
        orders = {c.signed.reading.order_id for c in items} | {st.order_id for _, st in statuses}
        owned = self._owned(orders)
        with self.sessions() as session, session.begin():
            owned, fresh, changed = self._take(session, owned)
            taken = len(fresh)
            if statuses:  # progress and status touch the devices rows in one key order
                repo.lock_devices(
                    session,
                    [(c.signed.reading.order_id, c.signed.device) for c in items]
                    + [(st.order_id, st.device) for _, st in statuses],
                )
            new = repo.insert_readings(session, rows)
            keys = [
                (c.signed.reading.order_id, c.signed.device, c.signed.reading.seq) for c in items
            ]
            conflicts = [k for k in keys if k not in new]
            stored_digest = repo.stored_digests(session, conflicts) if conflicts else {}
            theirs: list[tuple[int, str, int]] = []
            progress: dict[tuple[int, str], list[StoredReading]] = {}
            for c, key in zip(items, keys, strict=True):
                rid = new.get(key)
                if rid is not None:
                    verdicts[c.index] = Verdict(STORED, reading_id=rid)
                    result.stored += 1
                    stored = StoredReading.of(rid, c.signed, c.received_at)
                    if stored.order_id in owned:
                        fresh.append(stored)
                    else:
                        theirs.append((stored.order_id, stored.device, rid))
                    progress.setdefault((stored.order_id, stored.device), []).append(stored)
                    result.confirmed.setdefault(key[:2], []).append(key[2])
                else:
                    same = stored_digest.get(key) == c.digest
                    what = "already has a different reading"
                    self._seq_taken(verdicts, result, batch, c, key, same, what)
                    if same:
                        result.confirmed.setdefault(key[:2], []).append(key[2])
            repo.record_progress(
                session,
                [
                    repo.DeviceProgress(
                        order_id,
                        device,
                        len(rs),
                        min(x.seq for x in rs),
                        max(x.seq for x in rs),
                        max(x.timestamp for x in rs),
                        max(x.received_at for x in rs),
                    )  # fmt: skip
                    for (order_id, device), rs in progress.items()
                ],
            )
            repo.record_status(
                session,
                [
                    repo.DeviceStatus(
                        st.order_id,
                        st.device,
                        st.status,
                        st.timestamp,
                        st.battery_permille,
                        st.first_seq,
                        st.last_seq,
                    )  # fmt: skip
                    for _, st in statuses
                ],
            )
            for i, _st in statuses:
                verdicts[i] = Verdict(STATUS)
            result.statuses += len(statuses)
            repo.hand_off(
                session,
                theirs,
                [(st.order_id, st.device) for _, st in statuses if st.order_id not in owned],
            )
            mine = [(st.order_id, st.device) for _, st in statuses if st.order_id in owned]
            self._evaluate(session, fresh, [*changed, *mine], result)
        self.metrics.ingest_handed_off.inc(len(theirs))
        self.metrics.ingest_taken_over.inc(taken)

    @property
    def handed_off(self) -> int:
        """Readings stored here for orders other processes own."""
        return int(self.metrics.get("trustship_ingest_handed_off_total"))

    @property
    def taken_over(self) -> int:
        """Readings other processes stored that this one evaluated."""
        return int(self.metrics.get("trustship_ingest_taken_over_total"))

    @property
    def _sharing(self) -> bool:
        """Whether other oracle processes may hand readings to this one (PostgreSQL)."""
        return self.rules is not None and not self.ownership.everything

    def _owned(self, orders: set[int]) -> set[int]:
        """Of ``orders``, the ones this process evaluates (all of them without rules)."""
        if not self._sharing:
            return orders
        if not self._joined:
            self.rebalance()
        return self.ownership.owned(orders)

    def _take(
        self, session: Session, orders: set[int]
    ) -> tuple[set[int], list[StoredReading], list[tuple[int, str]]]:
        """Lock ``orders`` for evaluation (one evaluation at a time per order:
        backend/store/locks.py), keep those whose slots this process still holds
        (:meth:`Ownership.confirm`; the rules forget the others) and take what other
        processes handed off for them. Returns (those orders, the handed-off readings,
        the (order, device) pairs whose status changed)."""
        lock_for_transaction(session, ORDER, orders)
        if not self._sharing:
            return orders, [], []
        held = self.ownership.confirm(session, orders)
        if len(held) < len(orders) and self.rules is not None:
            self.rules.forget_orders(lambda o: not self.ownership.owns(o))
        rows, changed = repo.take_handed(session, held, limit=self.config.handoff_rows_per_pass)
        return held, [StoredReading.from_row(r) for r in rows], changed

    def _evaluate(
        self,
        session: Session,
        readings: list[StoredReading],
        statuses: Sequence[tuple[int, str]],
        result: BatchResult,
    ) -> None:
        """Run the rules over stored ``readings`` of owned orders, after the status of
        these (order, device) pairs (read back from their ``devices`` rows)."""
        if self.rules is None:
            return
        for order_id, device, status, battery in repo.statuses_of(session, statuses):
            self.rules.note_status(order_id, device, status, battery)
        if readings:
            output = self.rules.evaluate(session, readings)
            alerts, actions = write_outputs(session, output)
            result.alerts += alerts
            result.actions += actions
            for a in output.alerts:
                self.metrics.rules_alerts.labels(kind=a.kind).inc()
            for act in output.actions:
                self.metrics.rules_actions.labels(kind=act.kind).inc()

    # ------------------------------------------------ several oracle processes

    def rebalance(self) -> None:
        """Take this process's share of the orders and give up the rest
        (:meth:`Ownership.rebalance`): the rules forget the orders given up and load
        the windows of the ones taken that are in transit. Nothing to do without rules."""
        if not self._sharing:
            return
        self._joined = True
        assert self.rules is not None
        try:
            taken, released = self.ownership.rebalance()
        except Exception:
            self.rules.reset()  # owns nothing now: it reloads what it takes again
            self.metrics.ingest_owned_slots.set(0)
            raise
        self.metrics.ingest_owned_slots.set(len(self.ownership.slots))
        if released:
            self.rules.forget_orders(lambda o: not self.ownership.owns(o))
        if taken:  # the orders in transit it took: watched for silence from now on
            with self.sessions() as session, session.begin():
                # under the orders' locks: a transaction of their previous owner still
                # in flight commits first, and its readings are in the windows
                self.rules.warm_up(
                    session,
                    lambda o: slot_of(o) in taken,
                    lock=lambda orders: lock_for_transaction(session, ORDER, orders),
                )

    def take_handoff(self) -> bool:
        """Evaluate what other processes stored for the orders this process owns, in
        one transaction per call of at most ``handoff_rows_per_pass`` rows, oldest
        first. Returns whether any was there (the worker runs the pass again after its
        next batch, not after ``handoff_interval_secs``, until a pass finds none)."""
        if not self._sharing:
            return False
        if not self._joined:
            self.rebalance()
        assert self.rules is not None
        result = BatchResult(verdicts=[])
        try:
            with self.sessions() as session, session.begin():
                orders = self.ownership.owned(repo.handed_orders(session))
                if not orders:
                    return False
                _held, readings, changed = self._take(session, orders)
                self._evaluate(session, readings, changed, result)
        except Exception:
            # the rows are back in the table: what the rules noted of them (a breach
            # queued, an arrival) must go too, or they would be skipped next time
            self.rules.reset()
            raise
        self.metrics.ingest_taken_over.inc(len(readings))
        return True

    def periodic_tasks(self) -> list[PeriodicTask]:
        """What the ingest worker runs between batches for this ingestor."""
        if not self._sharing:
            return []
        return [
            PeriodicTask("ownership", self.config.ownership_interval_secs, self.rebalance),
            PeriodicTask("handoff", self.config.handoff_interval_secs, self.take_handoff),
        ]

    def _count(self, result: BatchResult, received: int, seconds: float) -> None:
        m = self.metrics
        m.ingest_received.inc(received)
        if result.stored:
            m.ingest_accepted.inc(result.stored)
        if result.duplicates:
            m.ingest_duplicates.inc(result.duplicates)
        if result.statuses:
            m.ingest_statuses.inc(result.statuses)
        for reason, n in result.rejected.items():
            m.ingest_rejected.labels(reason=reason).inc(n)
        m.ingest_batches.inc()
        m.ingest_store_seconds.inc(seconds)


@dataclass
class PeriodicTask:
    """Work the ingest worker runs between batches (it owns the rules' state).

    A task that returns ``True`` stopped early with work left (it keeps each run
    short so that telemetry is not held up): it is due again after the next batch
    instead of after ``interval_secs``."""

    name: str
    interval_secs: float
    run: Callable[[], object]
    next_at: float = 0.0


class IngestWorker(threading.Thread):
    """Drains received messages in batches, stores them, then acknowledges them.

    Two stages in two threads: this thread collects a batch and prepares it
    (decode, signatures, bindings: much of it in C code that releases the GIL),
    while the store thread commits the previous one (SQLite and psycopg release the
    GIL during I/O). The store thread acknowledges each batch's messages, in order,
    after its commit, and runs the periodic tasks (it owns the rules' state).

    A batch the database refuses is retried (with backoff) and not acknowledged
    meanwhile; if the worker stops before it succeeds, the messages stay
    unacknowledged and the broker redelivers them to the persistent session.
    """

    def __init__(
        self,
        ingestor: Ingestor,
        ack: Callable[[Inbound], None] | None = None,
        *,
        batch_size: int = 500,
        batch_ms: float = 20.0,
        periodic: Sequence[PeriodicTask] = (),
        max_backoff_secs: float = 5.0,
        on_batch: Callable[[BatchResult], None] | None = None,
        inbox: queue.SimpleQueue[Inbound] | None = None,
    ) -> None:
        """``inbox``: where received messages arrive (the subscriber's sink puts them
        there; default: a queue of its own, fed through :meth:`submit`); ``ack``: called
        for each message, in order, once its batch is committed."""
        super().__init__(name="trustship-ingest", daemon=True)
        self.ingestor = ingestor
        self.ack = ack
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        #: the ingestor's own (several oracles: ownership, handoff), then the caller's
        self.periodic = [*ingestor.periodic_tasks(), *periodic]
        self.max_backoff = max_backoff_secs
        self.on_batch = on_batch
        self.queue: queue.SimpleQueue[Inbound] = inbox if inbox is not None else queue.SimpleQueue()
        self._prepared: queue.Queue[Prepared | None] = queue.Queue(maxsize=2)
        self._stop_event = threading.Event()
        self._store_thread = threading.Thread(
            target=self._store_loop, name="trustship-ingest-store", daemon=True
        )
        self.processed = 0

    def submit(self, msg: Inbound) -> None:
        self.queue.put(msg)

    def start(self) -> None:
        self._store_thread.start()
        super().start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batches in hand; messages still queued stay unacknowledged."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
        if self._store_thread.is_alive():
            self._store_thread.join(timeout)

    def _collect(self) -> list[Inbound]:
        try:
            first = self.queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_ms / 1000
        while len(batch) < self.batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self.queue.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _run_periodic(self) -> None:
        now = time.monotonic()
        for task in self.periodic:
            if now >= task.next_at:
                task.next_at = now + task.interval_secs
                try:
                    if task.run() is True:
                        task.next_at = now
                except Exception:
                    log.exception(
                        "periodic task %s failed; it runs again in %.0f s",
                        task.name,
                        task.interval_secs,
                    )

    def run(self) -> None:
        """Stage 1: collect and prepare batches."""
        m = self.ingestor.metrics
        try:
            while not self._stop_event.is_set():
                batch = self._collect()
                m.ingest_queue_depth.set(self.queue.qsize())
                if not batch:
                    continue
                prepared: Prepared | None = None
                while prepared is None:
                    try:
                        prepared = self.ingestor.prepare(batch)
                    except Exception:  # reading bindings failed (database down): hold on
                        log.exception("preparing a batch failed; retrying in 1 s")
                        if self._stop_event.wait(1.0):
                            return
                while not self._stop_event.is_set():
                    try:
                        self._prepared.put(prepared, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        finally:  # tell the store thread to finish (after the batches already handed over)
            while self._store_thread.is_alive():
                try:
                    self._prepared.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def _store_loop(self) -> None:
        """Stage 2: commit, acknowledge, run periodic tasks."""
        while True:
            try:
                prepared = self._prepared.get(timeout=0.05)
            except queue.Empty:
                self._run_periodic()
                continue
            if prepared is None:
                return
            backoff = 0.1
            while True:
                try:
                    result = self.ingestor.commit(prepared)
                except IngestStoreError as exc:
                    log.error("%s; retrying in %.1f s (messages not acknowledged)", exc, backoff)
                    if self._stop_event.wait(backoff):
                        log.warning(
                            "stopping with %d unacknowledged messages in hand", len(prepared.batch)
                        )
                        return
                    backoff = min(self.max_backoff, backoff * 2)
                    continue
                break
            if self.ack is not None:
                for msg in prepared.batch:
                    self.ack(msg)
            self.processed += len(prepared.batch)
            if self.on_batch is not None:
                self.on_batch(result)
            self._run_periodic()
