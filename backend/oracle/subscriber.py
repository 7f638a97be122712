"""The MQTT side of ingest: a paho MQTT 5 subscriber with a persistent session.

* ``clean_start=False`` with a Session Expiry Interval, so the broker keeps the
  subscription and queues QoS 1 messages while the oracle is away;
* a shared subscription ``$share/{group}/trustship/v1/orders/+/devices/+/telemetry``
  so several oracle processes split the load (``group=None`` subscribes plainly);
* ``manual_ack=True``: paho does not acknowledge on its own; the ingest worker
  calls :meth:`TelemetrySubscriber.ack` after the message's batch is committed.
  An unacknowledged message is redelivered when the session reconnects.

Callbacks only wrap the message and hand it to ``sink`` (a queue's put).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from backend.core.errors import ConfigurationError
from backend.oracle.ingest import Inbound

log = logging.getLogger(__name__)

TELEMETRY_FILTER = "trustship/v1/orders/+/devices/+/telemetry"


@dataclass(frozen=True)
class SubscriberConfig:
    url: str = "mqtt://127.0.0.1:1883"
    #: Must be stable across restarts: the broker keeps the session under this id.
    client_id: str = "trustship-oracle-1"
    #: Shared-subscription group; None for a plain subscription.
    group: str | None = "trustship-oracle"
    topic_filter: str = TELEMETRY_FILTER
    #: How long the broker keeps the session (and queues messages) while we are away.
    session_expiry_secs: int = 7 * 24 * 3600
    #: How many unacknowledged QoS 1 messages the broker may have in flight to us.
    receive_maximum: int = 2000
    keepalive: int = 30

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{self.topic_filter}" if self.group else self.topic_filter


def parse_mqtt_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """(host, port, tls, username, password) of ``mqtt://`` / ``mqtts://`` URLs."""
    parts = urlparse(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigurationError(f"MQTT_URL={url!r}: use mqtt://host:port or mqtts://host:port")
    tls = parts.scheme in ("mqtts", "ssl")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return host, port, tls, user, password


class TelemetrySubscriber:
    """Receives telemetry and passes each message to ``sink``; acks on request."""

    def __init__(self, config: SubscriberConfig, sink: Callable[[Inbound], None]) -> None:
        self.config = config
        self.sink = sink
        self.host, self.port, tls, user, password = parse_mqtt_url(config.url)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 30)
        #: Bumped on every connection: an ack is only sent on the connection that
        #: delivered the message (after a reconnect the broker redelivers it anyway).
        self.generation = 0
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.received = 0

    # ---- lifecycle ---------------------------------------------------------

    def start(self) -> None:
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
        self.client.loop_start()

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
        client.subscribe(self.config.subscription, options=SubscribeOptions(qos=1))

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reason_codes: Any, _props: Any
    ) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("subscription to %s refused: %s", self.config.subscription, failed)
            return
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

    def ack(self, msg: Inbound) -> None:
        if msg.qos > 0 and msg.generation == self.generation:
            self.client.ack(msg.mid, msg.qos)
