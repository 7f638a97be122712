"""The watcher: a party's own check of its orders' telemetry, and its own evidence.

For each message on an order's telemetry topic it

1. decodes the wire format strictly (:func:`backend.telemetry.decode_message`, the
   oracle's own decoder) and recovers the signer from the EIP-712 digest under the
   deployment's domain: the signer must be the device the payload and topic name;
2. checks the device against the chain: bound to this order at shipment with a
   certificate of an issuer the terms name (:class:`~backend.watcher.chain_view.ChainView`);
3. stores the reading in its own SQLite record, or counts it as refused by reason
   (``bad_signature``, ``unbound_device``, a wire reason...) — a refused reading is
   never stored and so never becomes evidence;
4. runs the oracle's rules on the device's readings (the pure functions of
   :mod:`backend.oracle.rules`: excursion evidence, shock, geofence, witness validity);
5. notes seq gaps (a reading whose seq skips past the highest seen).

A breach it finds is held for ``grace_secs`` — the operator's oracle normally proves it
first, and then the watcher spends nothing — and cut short the moment a reading inside
the destination geofence arrives, because the contract takes evidence only while the
order is in transit. When the grace is over and the chain does not show the order
breached, the watcher submits the evidence with its own key. The arrival proof follows
the same way once no breach is pending. What a revert means is classified once
(:func:`backend.domain.contract_errors.action_outcome`): a breach somebody else proved
in the meantime comes back as ``already done``, not an error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from eth_account.signers.local import LocalAccount
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.chain.contracts import Contracts
from backend.chain.errors import RETRYABLE, ContractRevert, TransactionFailed, TransportError
from backend.chain.sender import TxResult
from backend.domain.actions import ChainAction, ProveArrival, ProveExcursion, ProveShock
from backend.domain.contract_errors import ActionOutcome, action_outcome
from backend.domain.order import OrderState
from backend.domain.reading import ReadingWindow, StoredReading
from backend.oracle.rules import excursion_evidence
from backend.telemetry import WireError, decode_message, parse_topic, reading_digest
from backend.telemetry.access import order_filters
from backend.telemetry.broker import BrokerURL, ReadBufferedClient
from backend.telemetry.eip712 import recover_device
from backend.watcher.chain_view import ChainView, OrderView
from backend.watcher.store import Submission, WatcherStore

log = logging.getLogger(__name__)

FINAL = {OrderState.SETTLED, OrderState.CANCELLED, OrderState.RESOLVED, OrderState.EXPIRED}

PROVEN = "proven"
ALREADY_DONE = "already done"
PROVEN_BY_ANOTHER = "proven by another"
RETRY_LATER = "retry later"
REJECTED = "rejected"
#: The order left transit (delivered, expired) before the evidence went in.
MISSED = "missed"


@dataclass(frozen=True, slots=True)
class WatcherConfig:
    order_ids: tuple[int, ...]
    #: How long a breach (or arrival) waits for the operator before the watcher proves it.
    grace_secs: float = 300.0
    #: How often the chain is read again (state, breach flag, revocations).
    refresh_secs: float = 5.0
    #: Wait before trying a transaction again after a transient failure.
    retry_secs: float = 5.0


@dataclass
class Pending:
    """Evidence the watcher holds until ``due_at``."""

    action: ChainAction
    due_at: float


class Watcher:
    """The checks and decisions, without the MQTT connection (:func:`run_watcher`)."""

    def __init__(
        self,
        view: ChainView,
        contracts: Contracts,
        account: LocalAccount,
        store: WatcherStore,
        config: WatcherConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.view = view
        self.contracts = contracts
        self.account = account
        self.store = store
        self.config = config
        self.clock = clock
        self.domain = contracts.quality.domain()
        self.orders: dict[int, OrderView] = {}
        self.windows: dict[tuple[int, str], ReadingWindow] = {}
        self.refused: Counter[tuple[int, str]] = Counter()
        self.gaps_seen: dict[tuple[int, str], list[tuple[int, int]]] = {}
        self.breach: dict[int, Pending] = {}
        self.arrival: dict[int, Pending] = {}
        #: Orders the chain shows breached (proven by anyone) / past arrival.
        self.breach_done: set[int] = set()
        self.arrival_done: set[int] = set()
        #: Orders whose held evidence has been dealt with (submitted, or found unneeded).
        self.closed: dict[str, set[int]] = {"breach": set(), "arrival": set()}
        self._refreshed: dict[int, float] = {}
        self.lock = threading.Lock()

    # ---------------------------------------------------------------- chain

    def refresh(self, order_id: int, *, force: bool = False) -> OrderView:
        now = time.monotonic()
        known = self.orders.get(order_id)
        if (
            known is not None
            and not force
            and now - self._refreshed.get(order_id, 0) < self.config.refresh_secs
        ):
            return known
        view = self.view.order(order_id)
        self.orders[order_id] = view
        self._refreshed[order_id] = now
        if view.breached:
            self.breach_done.add(order_id)
        if view.state > OrderState.SHIPPED:
            self.arrival_done.add(order_id)
        return view

    def start(self) -> None:
        """Read the orders from the chain and re-evaluate the readings already held."""
        for order_id in self.config.order_ids:
            view = self.refresh(order_id, force=True)
            log.info(
                "watching order %d: %s, %d bound device(s)%s",
                order_id,
                view.state.label,
                len(view.bindings),
                ", breach proven" if view.breached else "",
            )
            for device, readings in self.store.device_readings(order_id).items():
                window = self.windows.setdefault((order_id, device), ReadingWindow())
                for r in readings:
                    window.add(r)
                for r in readings:
                    self._evaluate(view, window, r)

    @property
    def finished(self) -> bool:
        """Every watched order has ended on chain."""
        return all(
            o in self.orders and self.orders[o].state in FINAL for o in self.config.order_ids
        )

    # ------------------------------------------------------------- messages

    def _refuse(self, order_id: int, reason: str, detail: str) -> str:
        self.refused[(order_id, reason)] += 1
        log.warning("order %d: refused a reading (%s): %s", order_id, reason, detail)
        return reason

    def handle(self, topic: str, payload: bytes, received_at: float | None = None) -> str:
        """Check, store and evaluate one message; ``stored``, ``duplicate`` or the reason
        it was refused."""
        with self.lock:
            return self._handle(topic, payload, received_at)

    def _handle(self, topic: str, payload: bytes, received_at: float | None) -> str:
        try:
            order_id, device, kind = parse_topic(topic)
        except WireError as exc:
            return self._refuse(0, exc.reason, str(exc))
        if kind != "telemetry":
            return "status"
        if order_id not in self.config.order_ids:
            return self._refuse(order_id, "not_watched", f"order {order_id} is not watched")
        try:
            signed = decode_message(payload, topic)
        except WireError as exc:
            return self._refuse(order_id, exc.reason, str(exc))
        signer = recover_device(signed.reading, self.domain, signed.signature)
        if signer != signed.device:
            return self._refuse(
                order_id,
                "bad_signature",
                f"seq {signed.reading.seq} of {device} signed by {signer}",
            )
        # Shipped since the last look? (read again at most every refresh_secs: a flood of
        # unbound readings costs no more chain reads)
        view = self.refresh(order_id)
        binding = view.bindings.get(signed.device)
        if binding is None:
            return self._refuse(
                order_id, "unbound_device", f"{signed.device} is not bound to order {order_id}"
            )
        digest = reading_digest(signed.reading, self.domain)
        stored, verdict = self.store.add(signed, digest, received_at)
        if verdict == "conflict":
            return self._refuse(
                order_id,
                "conflicting_seq",
                f"{signed.device} signed two readings as seq {stored.seq}",
            )
        if verdict == "duplicate":
            return verdict
        window = self.windows.setdefault((order_id, signed.device), ReadingWindow())
        head = window.head
        if head is not None and stored.seq > head.seq + 1:
            gap = (head.seq + 1, stored.seq - 1)
            self.gaps_seen.setdefault((order_id, signed.device), []).append(gap)
            log.warning("order %d: %s skipped seq %d–%d", order_id, signed.device, *gap)
        window.add(stored)
        self._evaluate(view, window, stored)
        return verdict

    # ---------------------------------------------------------------- rules

    def _evaluate(self, view: OrderView, window: ReadingWindow, r: StoredReading) -> None:
        order_id = view.order_id
        binding = view.bindings.get(r.device)
        if binding is None or not view.in_transit:
            return
        witness = binding.witness
        if not witness.counts(r.timestamp) or r.timestamp < view.shipped_at:
            return
        t = view.rules
        now = self.clock()
        # The evidence is held even when the chain already shows the breach (the record is
        # the watcher's own); whether to send it is decided when it is due.
        if order_id not in self.closed["breach"] and order_id not in self.breach:
            action: ChainAction | None = None
            if t.shock_over(r):
                action = ProveShock(order_id=order_id, reading_id=r.id, device=r.device, seq=r.seq)
            elif t.out_of_range(r):
                evidence = excursion_evidence(window.by_seq, r, t, witness.counts)
                if evidence is not None:
                    action = ProveExcursion(
                        order_id=order_id,
                        device=r.device,
                        reading_ids=tuple(x.id for x in evidence),
                        first_seq=evidence[0].seq,
                        last_seq=evidence[-1].seq,
                        started_at=evidence[0].timestamp,
                        ended_at=evidence[-1].timestamp,
                    )
            if action is not None:
                self.breach[order_id] = Pending(action, now + self.config.grace_secs)
                log.warning(
                    "order %d: breach seen (%s); the watcher proves it after %.0f s unless "
                    "the chain shows it proven",
                    order_id,
                    action.kind,
                    self.config.grace_secs,
                )
        if t.arrival_quorum > 0 and t.inside_geofence(r):
            pending = self.breach.get(order_id)
            if pending is not None and pending.due_at > now:
                # Evidence is refused once delivery is recorded: do not wait any longer.
                pending.due_at = now
                log.warning("order %d: arriving: the breach evidence goes now", order_id)
            arrival = self._arrival(view, r)
            known = self.arrival.get(order_id)
            if (
                arrival is not None
                and order_id not in self.closed["arrival"]
                and (
                    known is None
                    or (
                        isinstance(known.action, ProveArrival)
                        and arrival.earlier_than(known.action)
                    )
                )
            ):
                due = known.due_at if known else now + self.config.grace_secs
                self.arrival[order_id] = Pending(arrival, due)

    def _arrival(self, view: OrderView, r: StoredReading) -> ProveArrival | None:
        """The earliest arrival proof the readings held make (one reading of a device of
        each issuer for a quorum of 2)."""
        t = view.rules
        earliest: dict[str, StoredReading] = {}
        for (o, device), window in self.windows.items():
            b = view.bindings.get(device)
            if o != view.order_id or b is None:
                continue
            issuer = b.certificate.certificate.issuer
            for x in window.readings():
                if (
                    x.timestamp >= view.shipped_at
                    and t.inside_geofence(x)
                    and b.witness.counts(x.timestamp)
                    and (issuer not in earliest or x.timestamp < earliest[issuer].timestamp)
                ):
                    earliest[issuer] = x
        if not earliest:
            return None
        if t.arrival_quorum < 2:
            picked = [min(earliest.values(), key=lambda x: x.timestamp)]
        elif len(earliest) >= 2:
            picked = sorted(earliest.values(), key=lambda x: x.timestamp)[:2]
        else:
            return None
        return ProveArrival(
            order_id=view.order_id,
            reading_ids=tuple(x.id for x in picked),
            devices=tuple(x.device for x in picked),
            timestamp=max(x.timestamp for x in picked),
        )

    # ------------------------------------------------------------ decisions

    def tick(self) -> list[Submission]:
        """Submit what is due; the submissions made (or found unnecessary)."""
        with self.lock:
            out: list[Submission] = []
            now = self.clock()
            for order_id in self.config.order_ids:
                try:
                    self.refresh(order_id)
                except TransportError as exc:
                    log.warning("order %d: chain unreachable: %s", order_id, exc)
                    continue
                pending = self.breach.get(order_id)
                if pending is not None and pending.due_at <= now:
                    out.append(self._due(order_id, pending, "breach", self.breach_done))
                    continue  # arrival only after the breach question is settled
                pending = self.arrival.get(order_id)
                if pending is not None and pending.due_at <= now and order_id not in self.breach:
                    out.append(self._due(order_id, pending, "arrival", self.arrival_done))
            return out

    def _due(self, order_id: int, pending: Pending, what: str, done: set[int]) -> Submission:
        slot = self.breach if what == "breach" else self.arrival
        view = self.refresh(order_id, force=True)
        kind = pending.action.kind
        if order_id in done:
            s = self._note(order_id, kind, PROVEN_BY_ANOTHER, "the chain shows it done", None)
        elif not view.in_transit:
            s = self._note(
                order_id, kind, MISSED, f"the order is {view.state.label} on chain: too late", None
            )
        else:
            s = self.submit(pending.action, view)
            if s.outcome == RETRY_LATER:
                pending.due_at = self.clock() + self.config.retry_secs
                return s
        slot.pop(order_id, None)
        self.closed[what].add(order_id)
        return s

    def prove_breach_now(self, order_id: int) -> Submission:
        """Submit the held breach evidence whatever the chain shows (the ``already done``
        path; also what an impatient party would do)."""
        with self.lock:
            pending = self.breach.get(order_id)
            if pending is None:
                raise LookupError(f"no breach evidence held for order {order_id}")
            return self.submit(pending.action, self.refresh(order_id, force=True))

    def submit(self, action: ChainAction, view: OrderView) -> Submission:
        """One contract call with the watcher's key; the outcome is recorded."""
        try:
            result = self._call(action, view)
        except ContractRevert as exc:
            outcome = action_outcome(action, exc.name)
            verdict = (
                {
                    ActionOutcome.ALREADY_DONE: ALREADY_DONE,
                    ActionOutcome.RETRY_LATER: RETRY_LATER,
                }.get(outcome, REJECTED)
                if outcome is not None
                else REJECTED
            )
            return self._note(view.order_id, action.kind, verdict, exc.signature, None)
        except RETRYABLE as exc:
            return self._note(view.order_id, action.kind, RETRY_LATER, str(exc), None)
        except TransactionFailed as exc:
            return self._note(view.order_id, action.kind, REJECTED, str(exc), None)
        self.refresh(view.order_id, force=True)
        return self._note(view.order_id, action.kind, PROVEN, "submitted", result.tx_hash)

    def _call(self, action: ChainAction, view: OrderView) -> TxResult:
        qv = self.contracts.quality
        match action:
            case ProveExcursion():
                evidence = self.store.signed(list(action.reading_ids))
                cert = view.bindings[action.device].certificate
                return qv.prove_excursion(
                    view.order_id, view.terms, evidence, cert, by=self.account
                )
            case ProveShock():
                (reading,) = self.store.signed([action.reading_id])
                cert = view.bindings[action.device].certificate
                return qv.prove_shock(view.order_id, view.terms, reading, cert, by=self.account)
            case ProveArrival():
                readings = self.store.signed(list(action.reading_ids))
                certs = [view.bindings[d].certificate for d in action.devices]
                return qv.prove_arrival(view.order_id, view.terms, readings, certs, by=self.account)
        raise TypeError(f"the watcher does not submit {action.kind}")

    def _note(
        self, order_id: int, kind: str, outcome: str, detail: str, tx_hash: str | None
    ) -> Submission:
        s = Submission(order_id, kind, outcome, detail, tx_hash, self.clock())
        self.store.record(s)
        level = logging.WARNING if outcome in (REJECTED, RETRY_LATER) else logging.INFO
        log.log(level, "order %d: %s: %s (%s)", order_id, kind, outcome, detail)
        return s

    # --------------------------------------------------------------- record

    def gaps(self, order_id: int) -> dict[str, list[tuple[int, int]]]:
        """Seqs missing between the lowest and highest held, per device (now, after any
        late arrivals filled some)."""
        out: dict[str, list[tuple[int, int]]] = {}
        with self.lock:
            for (o, device), window in self.windows.items():
                if o != order_id:
                    continue
                runs = []
                for a, b in zip(window.seqs, window.seqs[1:], strict=False):
                    if b > a + 1:
                        runs.append((a + 1, b - 1))
                out[device] = runs
        return out

    def refusals(self, order_id: int) -> dict[str, int]:
        with self.lock:
            return {reason: n for (o, reason), n in self.refused.items() if o == order_id}


# ------------------------------------------------------------------ the process


class Subscriber:
    """The watcher's MQTT connection: its own login, a persistent session (so readings
    published while it is down wait at the broker), the watched orders' topics."""

    def __init__(
        self, url: BrokerURL, order_ids: Sequence[int], inbox: queue.Queue[tuple[str, bytes, float]]
    ) -> None:
        if url.username is None:
            raise ValueError("the watcher needs MQTT credentials (POST /account/mqtt-credentials)")
        self.url = url
        self.order_ids = list(order_ids)
        self.inbox = inbox
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.denied: list[str] = []
        self.client = ReadBufferedClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=url.username, protocol=mqtt.MQTTv5
        )
        url.configure(self.client)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._filters = [f for o in self.order_ids for f in order_filters(o)]

    def _on_connect(
        self, c: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode, p: object
    ) -> None:
        if rc.is_failure:
            log.error("the broker refused the watcher's login: %s", rc)
            return
        self.connected.set()
        c.subscribe([(topic, 1) for topic in self._filters])

    def _on_subscribe(
        self, c: mqtt.Client, u: object, mid: int, codes: list[mqtt.ReasonCode], p: object
    ) -> None:
        self.denied = [t for t, code in zip(self._filters, codes, strict=False) if code.is_failure]
        for t in self.denied:
            log.error("the broker denied the watcher %s", t)
        self.subscribed.set()

    def _on_message(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        self.inbox.put((m.topic, bytes(m.payload), time.time()))

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 24 * 3600
        self.client.connect_async(self.url.host, self.url.port, clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_watcher(
    watcher: Watcher,
    subscribers: Sequence[Subscriber],
    inbox: queue.Queue[tuple[str, bytes, float]],
    stop: threading.Event,
    *,
    tick_secs: float = 0.5,
) -> None:
    """Until ``stop``: hand each message to the watcher, submit what is due. The MQTT
    connections are dropped once every watched order has ended (their logins are
    revoked then); the record stays readable."""
    watcher.start()
    for sub in subscribers:
        sub.start()
    last_tick = 0.0
    listening = True
    try:
        while not stop.is_set():
            try:
                topic, payload, at = inbox.get(timeout=tick_secs)
                watcher.handle(topic, payload, at)
            except queue.Empty:
                pass
            except Exception:  # one bad message must not end the watch
                log.exception("watcher: a message could not be handled")
            if time.monotonic() - last_tick >= tick_secs:
                last_tick = time.monotonic()
                try:
                    watcher.tick()
                except Exception:
                    log.exception("watcher: a decision round failed; trying again")
                if listening and watcher.finished and inbox.empty():
                    log.info("every watched order has ended: leaving the broker")
                    for sub in subscribers:
                        sub.stop()
                    listening = False
    finally:
        if listening:
            for sub in subscribers:
                sub.stop()
