"""The MQTT side of ingest: a paho MQTT 5 subscriber with a persistent session.

* ``clean_start=False`` with a Session Expiry Interval, so the broker keeps the
  subscription and queues QoS 1 messages while the oracle is away;
* a shared subscription ``$share/{group}/trustship/v1/orders/+/devices/+/telemetry``
  so several oracle processes split the load (``group=None`` subscribes plainly);
* a plain subscription to every device's status (retained messages are not sent to
  shared subscriptions, and every oracle should know each device's newest seq);
* ``manual_ack=True``: paho does not acknowledge on its own; the ingest worker
  calls :meth:`TelemetrySubscriber.ack` after the message's batch is committed.
  An unacknowledged message is redelivered when the session reconnects.

Callbacks only wrap the message and hand it to ``sink`` (a queue's put).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from backend.core.errors import ConfigurationError
from backend.oracle.ingest import Inbound
from backend.telemetry.access import DEFAULT_SHARE_GROUP, STATUS_FILTER, TELEMETRY_FILTER
from backend.telemetry.broker import BrokerError, BrokerURL, ReadBufferedClient, probe_protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubscriberConfig:
    url: str = "mqtt://127.0.0.1:1883"
    #: Must be stable across restarts: the broker keeps the session under this id.
    client_id: str = "trustship-oracle-1"
    #: Shared-subscription group; None for a plain subscription.
    group: str | None = DEFAULT_SHARE_GROUP
    topic_filter: str = TELEMETRY_FILTER
    #: Device status messages (plain subscription); None to skip them.
    status_filter: str | None = STATUS_FILTER
    #: How long the broker keeps the session (and queues messages) while we are away.
    session_expiry_secs: int = 7 * 24 * 3600
    #: How many unacknowledged QoS 1 messages the broker may have in flight to us.
    receive_maximum: int = 2000
    #: Our own QoS 1 publishes (storage receipts) in flight to the broker at once
    #: (deploy/mosquitto.conf accepts 100 per client) ...
    publish_inflight: int = 100
    #: ... and at most this many sent or waiting to be sent: past it a receipt is
    #: dropped and counted, not queued without bound (the device resends). 10,000 is
    #: ten seconds of receipts of a 1,000-device fleet.
    publish_queue: int = 10_000
    keepalive: int = 30
    #: CA file for an ``mqtts://`` URL without ``?ca=`` (None: the system's CAs).
    ca_file: str | None = None

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{self.topic_filter}" if self.group else self.topic_filter


@dataclass(frozen=True)
class SubscriberStatus:
    """The subscriber's connection, for ``/health`` (:meth:`TelemetrySubscriber.status`)."""

    #: ``host:port`` of the broker.
    broker: str
    connected: bool
    #: The broker acknowledged the subscriptions on this connection.
    subscribed: bool


def parse_mqtt_url(url: str, ca_file: str | None = None) -> BrokerURL:
    """The broker of ``MQTT_URL`` (``mqtt://`` / ``mqtts://``), or a ConfigurationError."""
    try:
        return BrokerURL.parse(url, ca_file=ca_file)
    except BrokerError as exc:
        raise ConfigurationError(f"MQTT_URL: {exc}") from None


class TelemetrySubscriber:
    """Receives telemetry and passes each message to ``sink``; acks on request."""

    def __init__(self, config: SubscriberConfig, sink: Callable[[Inbound], None]) -> None:
        self.config = config
        self.sink = sink
        self.url = parse_mqtt_url(config.url, config.ca_file)
        self.host, self.port = self.url.host, self.url.port
        self.protocol = mqtt.MQTTv5
        self.client = self._make_client()
        #: Bumped on every connection: an ack is only sent on the connection that
        #: delivered the message (after a reconnect the broker redelivers it anyway).
        self.generation = 0
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.received = 0

    def _make_client(self) -> mqtt.Client:
        v5 = self.protocol == mqtt.MQTTv5
        client = ReadBufferedClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            # MQTT 3.1.1 has no session expiry: a persistent session is clean_session=False
            # (MQTT 5 sets clean_start=False at connect instead, and refuses clean_session)
            clean_session=None if v5 else False,
            protocol=self.protocol,
            manual_ack=True,
        )
        self.url.configure(client)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(1, 30)
        client.max_inflight_messages_set(self.config.publish_inflight)
        client.max_queued_messages_set(self.config.publish_queue)
        return client

    @property
    def subscription(self) -> str:
        """The telemetry subscription: shared on MQTT 5; plain on a 3.1.1-only broker."""
        if self.protocol == mqtt.MQTTv5:
            return self.config.subscription
        return self.config.topic_filter

    @property
    def subscriptions(self) -> list[str]:
        """Telemetry, then device status (when configured)."""
        status = [self.config.status_filter] if self.config.status_filter else []
        return [self.subscription, *status]

    # ---- lifecycle ---------------------------------------------------------

    def start(self, probe_timeout: float = 10.0) -> None:
        try:
            protocol = probe_protocol(self.url, probe_timeout, anonymous=True)
        except BrokerError as exc:
            # not reachable now: connect in the background as MQTT 5 and keep retrying
            log.warning("%s; retrying in the background", exc)
            protocol = mqtt.MQTTv5
        if protocol != self.protocol:
            self.protocol = protocol
            self.client = self._make_client()
            log.warning(
                "broker %s speaks MQTT 3.1.1 only: plain persistent subscription to %s "
                "(no shared subscription, so run one oracle per broker)",
                self.url.redacted(),
                self.config.topic_filter,
            )
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.config.session_expiry_secs
            props.ReceiveMaximum = self.config.receive_maximum
            self.client.connect_async(
                self.host,
                self.port,
                keepalive=self.config.keepalive,
                clean_start=False,
                properties=props,
            )
        else:
            self.client.connect_async(self.host, self.port, keepalive=self.config.keepalive)
        self.client.loop_start()

    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected())

    def status(self) -> SubscriberStatus:
        return SubscriberStatus(
            broker=f"{self.host}:{self.port}",
            connected=self.connected,
            subscribed=self.subscribed.is_set(),
        )

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        return self.subscribed.wait(timeout)

    def stop(self) -> None:
        """Disconnect (the session and any unacknowledged messages stay with the broker)."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # ---- callbacks (network thread) ------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason_code: Any, _props: Any
    ) -> None:
        if reason_code.is_failure:
            log.error(
                "MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason_code
            )
            return
        self.generation += 1
        self.session_present = bool(getattr(flags, "session_present", False))
        log.info(
            "connected to MQTT %s:%d as %s (session %s)",
            self.host,
            self.port,
            self.config.client_id,
            "resumed" if self.session_present else "new",
        )
        if self.protocol == mqtt.MQTTv5:
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.subscriptions])
        else:
            client.subscribe([(t, 1) for t in self.subscriptions])

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reason_codes: Any, _props: Any
    ) -> None:
        refused = [
            f"{topic}: {rc}"
            for topic, rc in zip(self.subscriptions, reason_codes, strict=False)
            if rc.is_failure
        ]
        if refused:
            log.error(
                "the broker refused the oracle's subscription (%s): does this MQTT user have "
                "the oracle role (python -m iot_simulator.credentials --oracle USER:PASSWORD)?",
                "; ".join(refused),
            )
            return
        log.info("subscribed to %s", ", ".join(self.subscriptions))
        self.subscribed.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any
    ) -> None:
        self.subscribed.clear()
        if reason_code.is_failure:
            log.warning("MQTT connection lost (%s); paho reconnects", reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = repr(message._topic)  # refused later as bad_topic
        self.received += 1
        self.sink(
            Inbound(
                topic,
                bytes(message.payload),
                time.time(),
                message.mid,
                message.qos,
                self.generation,
            )
        )

    # ---- acknowledgement (worker thread) -------------------------------------

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish with QoS 1 on this connection (storage receipts); False when not
        connected or when ``publish_queue`` messages wait for the broker already (the
        message is not queued: :mod:`backend.oracle.receipts`)."""
        if not self.client.is_connected():
            return False
        info = self.client.publish(topic, payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def ack(self, msg: Inbound) -> None:
        if msg.qos > 0 and msg.generation == self.generation:
            self.client.ack(msg.mid, msg.qos)
