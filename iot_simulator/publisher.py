"""Publish a fleet's messages over MQTT 5 with QoS 1, paced in wall time.

* Pacing: a message sent at scenario offset ``o`` is published at wall time
  ``start + o / speed``; timestamps inside the readings stay in scenario time.
  ``speed=math.inf`` publishes as fast as the broker acknowledges.
* Flow control: each connection has a bounded in-flight window (at most
  ``window`` QoS 1 messages without PUBACK, and never more than the broker's
  Receive Maximum). When the window is full the publisher waits for acks: a
  slow broker slows the simulator down, it never makes it drop a reading, and
  memory stays bounded.
* Reconnects: paho reconnects with exponential backoff (0.25 s .. 8 s); the
  unacknowledged messages of a connection are re-sent in order when it is back.
* Retention (``retention=Retention()``): each device keeps every reading it
  published until the oracle's storage receipt names it
  (:mod:`backend.telemetry.receipts`), not merely until the broker's PUBACK — a
  broker that crashes loses what it acknowledged but had not yet written to disk.
  Unconfirmed readings are resent when the connection comes back and when no
  receipt came within ``resend_after_s`` (doubling per attempt); at the end the
  publisher waits up to ``confirm_timeout_s`` for the last receipts. Each device
  holds at most ``max_readings``: when full, the oldest unconfirmed reading is
  dropped (counted and logged; the oracle's seq-gap check then reports it) —
  a sensor keeps measuring rather than stop (docs/simulator.md, "Retention").
* Connections: ``"device"`` opens one MQTT connection per device (username =
  its checksummed address, password from :func:`iot_simulator.keys.mqtt_password`,
  Last Will = retained ``offline`` status) — what a broker ACL needs.
  ``"shared"`` sends everything over one connection with the URL's
  credentials — for big fleets on a broker without per-device ACLs.
  ``"auto"`` picks ``device`` up to :data:`AUTO_DEVICE_LIMIT` devices.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from backend.telemetry import TrustShipError
from backend.telemetry.broker import BrokerError, BrokerURL
from backend.telemetry.broker import probe_protocol as _probe
from backend.telemetry.receipts import RECEIPT_FILTER, decode_receipt, receipt_topic
from iot_simulator.fleet import Device, Fleet, Message

log = logging.getLogger(__name__)

AUTO_DEVICE_LIMIT = 200
DEFAULT_WINDOW = 100
ConnectionMode = Literal["auto", "device", "shared"]


class PublishError(TrustShipError):
    """Raised when the fleet cannot be published (broker unreachable, credentials refused)."""


def parse_url(url: str) -> BrokerURL:
    """The broker URL, or a :class:`PublishError` naming what is wrong with it."""
    try:
        return BrokerURL.parse(url, ca_file=os.environ.get("MQTT_CA_FILE"))
    except BrokerError as exc:
        raise PublishError(str(exc)) from None


def probe_protocol(url: BrokerURL, timeout: float) -> mqtt.MQTTProtocolVersion:
    try:
        return _probe(url, timeout)
    except BrokerError as exc:
        raise PublishError(str(exc)) from None


@dataclass(frozen=True)
class Retention:
    """Keep readings until the oracle confirms them stored (module docstring)."""

    #: Readings one device holds unconfirmed at most; when full the oldest is dropped.
    max_readings: int = 10_000
    #: Wall seconds without a receipt before a reading is resent (doubling per attempt,
    #: up to 32×, so that a long oracle outage does not turn into a resend storm).
    resend_after_s: float = 10.0
    #: At the end of a run: how long to wait for the last receipts (resending).
    confirm_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_readings < 1 or not self.resend_after_s > 0:
            raise PublishError("retention needs max_readings >= 1 and resend_after_s > 0")


@dataclass
class _Held:
    topic: str
    payload: bytes
    sent_at: float
    attempts: int = 0


class RetentionBuffer:
    """One device's readings published and not yet confirmed stored, oldest first."""

    def __init__(self, device: str, max_readings: int) -> None:
        self.device = device
        self.max_readings = max_readings
        self.held: OrderedDict[tuple[int, int], _Held] = OrderedDict()
        self.bytes = 0
        self.dropped = 0

    def hold(self, order_id: int, seq: int, topic: str, payload: bytes, now: float) -> bool:
        """Keep a reading; False when the buffer was full and the oldest was dropped."""
        key = (order_id, seq)
        if key in self.held:
            return True
        full = len(self.held) >= self.max_readings
        if full:
            _, old = self.held.popitem(last=False)
            self.bytes -= len(old.topic) + len(old.payload)
            self.dropped += 1
        self.held[key] = _Held(topic, payload, now)
        self.bytes += len(topic) + len(payload)
        return not full

    def confirm(self, order_id: int, ranges: tuple[tuple[int, int], ...]) -> int:
        """Forget the readings a receipt names; returns how many were held."""
        n = 0
        for a, b in ranges:
            if b - a < len(self.held):  # walk the range, or the buffer: the shorter
                keys = [(order_id, seq) for seq in range(a, b + 1) if (order_id, seq) in self.held]
            else:
                keys = [k for k in self.held if k[0] == order_id and a <= k[1] <= b]
            for key in keys:
                old = self.held.pop(key)
                self.bytes -= len(old.topic) + len(old.payload)
            n += len(keys)
        return n

    def due(self, now: float, after_s: float, everything: bool) -> list[_Held]:
        """Readings to resend now (all of them after a reconnect); marks them sent."""
        out = []
        for h in self.held.values():
            if everything or now - h.sent_at >= after_s * 2 ** min(h.attempts, 5):
                h.sent_at = now
                h.attempts += 1
                out.append(h)
        return out


@dataclass
class PublishStats:
    """What a publish run did."""

    messages: int = 0
    telemetry: int = 0
    status: int = 0
    acked: int = 0
    refused: int = 0  # PUBACK with a failure reason code (e.g. ACL: not authorized)
    skipped: int = 0  # messages of spoofers whose connection the broker refused
    wills: int = 0  # simulated connection drops (Last Will published by the broker)
    reconnects: int = 0
    wall_s: float = 0.0
    refused_devices: list[str] = field(default_factory=list)
    # retention (publish(retention=...)): receipts received, readings resent, the most
    # held at once (readings, bytes of topic + payload), dropped from a full buffer,
    # and still unconfirmed at the end
    receipts: int = 0
    resent: int = 0
    held_peak: int = 0
    held_peak_bytes: int = 0
    retention_dropped: int = 0
    unconfirmed: int = 0

    @property
    def readings_per_s(self) -> float:
        return self.telemetry / self.wall_s if self.wall_s > 0 else 0.0


class _Connection:
    """One paho client with a bounded window of unacknowledged QoS 1 publishes."""

    def __init__(
        self,
        url: BrokerURL,
        client_id: str,
        username: str | None,
        password: str | None,
        window: int,
        stats: PublishStats,
        will: tuple[str, bytes] | None = None,
        label: str = "",
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
        retention: Retention | None = None,
        receipts_filter: str | None = None,
    ) -> None:
        self.url, self.window, self.stats, self.label = url, window, stats, label or client_id
        self.retention = retention
        #: The receipts this connection subscribes to (its device's, or every device's).
        self.receipts_filter = receipts_filter if retention is not None else None
        #: Per device on this connection: what it holds unconfirmed.
        self.buffers: dict[str, RetentionBuffer] = {}
        #: Readings and bytes (topic + payload) held over all of them.
        self.held = 0
        self.held_bytes = 0
        #: Set on a reconnect: resend everything unconfirmed.
        self.resend_all = False
        self.limit = window
        self.cond = threading.Condition()
        self.inflight: set[int] = set()
        self.early: set[int] = set()
        self.connected = False
        self.ever_connected = False
        self.refused: str | None = None  # CONNACK failure reason
        self.client_id, self.username, self.password, self.will = (
            client_id,
            username,
            password,
            will,
        )
        self.protocol = protocol
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol
        )
        client.max_inflight_messages_set(self.window)
        client.reconnect_delay_set(min_delay=1, max_delay=8)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.will is not None:
            client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        if self.url.tls:
            client.tls_set(ca_certs=self.url.ca_certs)
            if self.url.insecure:
                client.tls_insecure_set(True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # -- paho callbacks (network thread): only update state and notify ---------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        with self.cond:
            if rc.is_failure:
                self.refused = str(rc)
                self.connected = False
            else:
                if self.ever_connected:
                    self.stats.reconnects += 1
                    # back after a drop: what the broker may have lost goes again
                    self.resend_all = self.receipts_filter is not None
                self.connected = self.ever_connected = True
                self.refused = None
                server_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
                self.limit = min(self.window, server_max) if server_max else self.window
            self.cond.notify_all()
        if not rc.is_failure and self.receipts_filter is not None:
            client.subscribe(self.receipts_filter, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        if any(rc.is_failure for rc in codes):
            log.warning(
                "%s: the broker refused the receipts subscription %s (%s): readings are "
                "resent on timeouts until the end of the run",
                self.label,
                self.receipts_filter,
                ", ".join(str(rc) for rc in codes),
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            receipt = decode_receipt(bytes(message.payload), message.topic)
        except TrustShipError as exc:
            log.warning("%s: ignored a receipt: %s", self.label, exc)
            return
        with self.cond:
            buffer = self.buffers.get(receipt.device)
            if buffer is not None:
                before = buffer.bytes
                self.held -= buffer.confirm(receipt.order_id, receipt.stored)
                self.held_bytes -= before - buffer.bytes
            self.stats.receipts += 1
            self.cond.notify_all()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        with self.cond:
            self.connected = False
            self.cond.notify_all()
        if rc.is_failure:
            log.warning("%s: disconnected (%s); reconnecting with backoff", self.label, rc)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        with self.cond:
            if mid in self.inflight:
                self.inflight.discard(mid)
            else:
                self.early.add(mid)  # acked before publish() returned
            if rc.is_failure:
                self.stats.refused += 1
                log.warning("%s: broker refused message %d: %s", self.label, mid, rc)
            else:
                self.stats.acked += 1
            self.cond.notify_all()

    # -- publisher thread ------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self.url.host, self.url.port, keepalive=30)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.connected or self.refused is not None, timeout)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        with self.cond:
            self.cond.wait_for(lambda: len(self.inflight) < self.limit)
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublishError(f"{self.label}: publish failed: {mqtt.error_string(info.rc)}")
        with self.cond:  # MQTT_ERR_NO_CONN: queued by paho, sent on reconnect
            if info.mid in self.early:
                self.early.discard(info.mid)
            else:
                self.inflight.add(info.mid)

    def hold(self, msg: Message, now: float) -> None:
        """Keep a published reading until a receipt names it (retention on)."""
        if self.retention is None or msg.reading is None:
            return
        with self.cond:
            buffer = self.buffers.get(msg.device)
            if buffer is None:
                buffer = self.buffers[msg.device] = RetentionBuffer(
                    msg.device, self.retention.max_readings
                )
            n, before = len(buffer.held), buffer.bytes
            kept = buffer.hold(msg.reading.reading.order_id, msg.reading.reading.seq,
                               msg.topic, msg.payload, now)  # fmt: skip
            self.held += len(buffer.held) - n
            self.held_bytes += buffer.bytes - before
            if not kept:
                self.stats.retention_dropped += 1
                if buffer.dropped == 1:
                    log.warning(
                        "%s: retention buffer full (%d readings): dropping the oldest "
                        "unconfirmed readings",
                        self.label,
                        buffer.max_readings,
                    )
            self.stats.held_peak = max(self.stats.held_peak, self.held)
            self.stats.held_peak_bytes = max(self.stats.held_peak_bytes, self.held_bytes)

    @property
    def unconfirmed(self) -> int:
        with self.cond:
            return self.held

    def resend_due(self, now: float) -> int:
        """Resend what is due (all of it after a reconnect); only while connected."""
        if self.retention is None:
            return 0
        with self.cond:
            if not self.connected:
                return 0
            everything, self.resend_all = self.resend_all, False
            due = [
                h
                for b in self.buffers.values()
                for h in b.due(now, self.retention.resend_after_s, everything)
            ]
        for h in due:
            self.publish(h.topic, h.payload, False)
        self.stats.resent += len(due)
        return len(due)

    def settle(self, timeout: float) -> bool:
        """Wait for the receipts of everything held, resending what is due."""
        return settle([self], timeout)

    def drain(self, timeout: float | None = None) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: not self.inflight, timeout)

    def drop_with_will(self) -> bool:
        """Simulate a lost connection: the broker publishes the Last Will.

        MQTT 5 only (DISCONNECT reason 0x04); returns False on MQTT 3.1.1,
        where the caller publishes the offline status itself.
        """
        if self.protocol != mqtt.MQTTv5:
            return False
        self.drain(60)
        self.client.disconnect(
            reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
        )
        self.client.loop_stop()
        with self.cond:
            self.connected = False
        return True

    def reconnect(self, timeout: float) -> None:
        # connect_async: paho's loop retries with backoff while the broker is down
        # (a synchronous reconnect() would raise ConnectionRefusedError)
        self.client.connect_async(self.url.host, self.url.port, keepalive=30)
        self.client.loop_start()
        if not self.wait_connected(timeout):
            log.warning(
                "%s: not reconnected after %.0fs; messages wait in the window", self.label, timeout
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settle(conns: list[_Connection], timeout: float) -> bool:
    """Wait until no connection holds an unconfirmed reading, resending what is due on
    each of them meanwhile; False when some are still unconfirmed after ``timeout``."""
    deadline = time.monotonic() + timeout
    while any(c.unconfirmed for c in conns) and time.monotonic() < deadline:
        for c in conns:
            c.resend_due(time.monotonic())
        time.sleep(0.1)
    return not any(c.unconfirmed for c in conns)


def _client_id(prefix: str, fleet: Fleet) -> str:
    return f"{prefix}-{fleet.scenario.name[:20]}-{os.getpid()}"


def choose_mode(fleet: Fleet, mode: ConnectionMode) -> Literal["device", "shared"]:
    env = os.environ.get("TRUSTSHIP_SIM_CONNECTION")
    if mode == "auto" and env in {"device", "shared"}:
        return env  # type: ignore[return-value]
    if mode == "auto":
        return "device" if len(fleet.all_devices) <= AUTO_DEVICE_LIMIT else "shared"
    return mode


def publish(
    fleet: Fleet,
    mqtt_url: str,
    speed: float | None = None,
    progress: bool = True,
    *,
    connection: ConnectionMode = "auto",
    window: int = DEFAULT_WINDOW,
    connect_timeout: float = 15.0,
    drain_timeout: float = 60.0,
    messages: Iterator[Message] | None = None,
    retention: Retention | None = None,
) -> PublishStats:
    """Publish every message of ``fleet`` to the broker at ``mqtt_url``.

    ``speed`` defaults to the scenario's; ``math.inf`` means no pacing.
    ``retention``: devices keep their readings until the oracle's receipts confirm
    them stored, resend the rest, and wait for the last receipts at the end
    (``stats.unconfirmed`` says how many never came); None: a reading is done when
    the broker acknowledges it.
    Returns :class:`PublishStats`; raises :class:`PublishError` when the broker
    cannot be reached or refuses a bound device's credentials.
    """
    url = parse_url(mqtt_url)
    speed = fleet.scenario.speed if speed is None else speed
    if not speed > 0:
        raise PublishError(f"speed must be positive, got {speed}")
    mode = choose_mode(fleet, connection)
    protocol = probe_protocol(url, connect_timeout)
    stats = PublishStats()
    conns: dict[str, _Connection] = {}
    if mode == "device":
        for dev in fleet.all_devices:
            conns[dev.address] = _Connection(
                url,
                f"dev-{dev.address}",
                dev.mqtt_username,
                dev.mqtt_password,
                window,
                stats,
                will=None if dev.spoofer else (dev.status_topic(), dev.will_payload()),
                label=f"device {dev.label} ({dev.address})",
                protocol=protocol,
                # spoofers' readings are refused by the oracle: they never get receipts
                retention=None if dev.spoofer else retention,
                receipts_filter=receipt_topic(dev.address),
            )
    else:
        shared = _Connection(
            url,
            _client_id("trustship-sim", fleet),
            url.username,
            url.password,
            window,
            stats,
            protocol=protocol,
            retention=retention,
            receipts_filter=RECEIPT_FILTER,
        )
        for dev in fleet.all_devices:
            conns[dev.address] = shared
    unique = list({id(c): c for c in conns.values()}.values())
    by_addr: dict[str, Device] = {d.address: d for d in fleet.all_devices}
    log.info(
        "publishing %s over %d connection(s) to %s",
        fleet.scenario.name,
        len(unique),
        url.redacted(),
    )
    for c in unique:
        c.start()
    try:
        deadline = time.monotonic() + connect_timeout
        for c in unique:
            if not c.wait_connected(max(0.1, deadline - time.monotonic())):
                raise PublishError(
                    f"cannot reach the MQTT broker at {url.redacted()}"
                    f" within {connect_timeout:.0f}s"
                )
        for addr, c in list(conns.items()):
            if c.refused is None:
                continue
            dev = by_addr[addr]
            if mode == "device" and dev.spoofer is not None:
                log.warning(
                    "broker refused spoofer %s (%s): its messages are skipped", dev.label, c.refused
                )
                stats.refused_devices.append(addr)
                c.client.loop_stop()
                continue
            who = (
                f"device {dev.label} ({dev.address})"
                if mode == "device"
                else "the shared connection"
            )
            raise PublishError(
                f"broker at {url.redacted()} refused {who}: {c.refused}. "
                + (
                    "Write its password with `python -m iot_simulator.credentials`"
                    " (docs/simulator.md)."
                    if mode == "device"
                    else "Check the user and password in MQTT_URL."
                )
            )
        _run(
            fleet,
            conns,
            stats,
            speed,
            progress,
            messages,
            set(stats.refused_devices),
            mode == "device",
        )
        for c in unique:
            if c.refused is None and not c.drain(drain_timeout):
                raise PublishError(
                    f"{c.label}: {len(c.inflight)} message(s) still unacknowledged"
                    f" after {drain_timeout:.0f}s"
                )
        if retention is not None:
            settle([c for c in unique if c.refused is None], retention.confirm_timeout_s)
            stats.unconfirmed = sum(c.unconfirmed for c in unique if c.refused is None)
            if stats.unconfirmed:
                log.warning(
                    "%d reading(s) not confirmed stored by the oracle after %.0f s",
                    stats.unconfirmed,
                    retention.confirm_timeout_s,
                )
    finally:
        for c in unique:
            if c.refused is None:
                c.close()
    return stats


def _run(
    fleet: Fleet,
    conns: dict[str, _Connection],
    stats: PublishStats,
    speed: float,
    progress: bool,
    messages: Iterator[Message] | None,
    skip: set[str],
    per_device: bool,
) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    total = max(1, fleet.scenario.end_offset_s)
    start = time.monotonic()
    dropped: set[str] = set()
    unique = list({id(c): c for c in conns.values()}.values())
    spoofers = {d.address for d in fleet.spoofers}
    last_resend = start
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("day {task.fields[day]:.1f}/{task.fields[days]:.1f}"),
        TextColumn("{task.fields[sent]} sent, {task.fields[acked]} acked"),
        TimeElapsedColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task(
            fleet.scenario.name, total=total, day=0.0, days=total / 86400, sent=0, acked=0
        )
        last_update = 0.0
        for msg in messages if messages is not None else fleet.messages():
            if msg.device in skip:
                stats.skipped += 1
                continue
            if math.isfinite(speed):
                delay = start + msg.offset_s / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            conn = conns[msg.device]
            if msg.device in dropped:  # first message after a simulated drop: reconnect
                conn.reconnect(15.0)
                dropped.discard(msg.device)
            if msg.will and per_device and conn.drop_with_will():
                dropped.add(msg.device)
                stats.wills += 1
                continue
            # (shared connection: the offline status the will would carry is published)
            conn.publish(msg.topic, msg.payload, msg.retain)
            if msg.kind == "telemetry" and msg.device not in spoofers:
                conn.hold(msg, time.monotonic())
            stats.messages += 1
            if msg.kind == "telemetry":
                stats.telemetry += 1
            else:
                stats.status += 1
            now = time.monotonic()
            if now - last_resend > 0.25:
                for c in unique:
                    c.resend_due(now)
                last_resend = now
            if now - last_update > 0.1:
                bar.update(
                    task,
                    completed=msg.offset_s,
                    day=msg.offset_s / 86400,
                    sent=stats.messages,
                    acked=stats.acked,
                )
                last_update = now
        bar.update(task, completed=total, day=total / 86400, sent=stats.messages, acked=stats.acked)
    stats.wall_s = time.monotonic() - start
