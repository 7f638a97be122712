"""The read-buffered paho client (backend.telemetry.broker.ReadBufferedClient) on a
real mosquitto: a backlog read in chunks arrives whole, in order and without waiting
for the socket to stir again; a socket closed while the buffer holds packets leaves
none of them to the next connection; after a broker crash the client reads on."""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.telemetry.broker import READ_CHUNK, ReadBufferedClient
from testkit.servers import Server, restart, start_mosquitto
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

CONF = "allow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n"
TOPIC = "test/readbuffer"


@pytest.fixture
def broker() -> Iterator[Server]:
    server = start_mosquitto(CONF)
    yield server
    server.stop()


def payloads(n: int) -> list[bytes]:
    """Sizes that cross the remaining-length encodings (1, 2 and 3 bytes) and one
    message larger than a read chunk."""
    out = [f"{i:06d}".encode() + b"x" * (i * 37 % 400) for i in range(n)]
    out[n // 2] = b"big" + os.urandom(3 * READ_CHUNK // 2)
    return out


def open_session(server: Server, client_id: str) -> None:
    """Subscribe with a persistent session, then go away: what is published next
    waits in the broker."""
    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_connect = lambda client, *_: client.subscribe(TOPIC, qos=1)
    c.on_subscribe = lambda *_: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", server.port, clean_start=True, properties=props)
    c.loop_start()
    assert subscribed.wait(10)
    c.disconnect()
    c.loop_stop()


def publish(server: Server, messages: list[bytes]) -> None:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", server.port)
    pub.loop_start()
    infos = [pub.publish(TOPIC, m, qos=1) for m in messages]
    for info in infos:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()


def receiver(client_id: str, got: list[bytes], most_buffered: list[int]) -> ReadBufferedClient:
    c = ReadBufferedClient(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )

    def on_message(client: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        got.append(bytes(m.payload))
        most_buffered[0] = max(most_buffered[0], c.buffered())

    c.on_message = on_message
    return c


def test_read_buffered_client_overrides_what_paho_has() -> None:
    """The two socket reads it overrides are paho's own: a paho that renamed them would
    leave the client reading unbuffered (or not at all) without an error."""
    for name, params in (("_sock_recv", ["self", "bufsize"]), ("_sock_close", ["self"])):
        method = getattr(mqtt.Client, name)
        assert list(inspect.signature(method).parameters) == params, name
    assert list(inspect.signature(mqtt.Client.loop_read).parameters) == ["self", "max_packets"]


def test_a_backlog_arrives_whole_in_order_and_without_a_stall(broker: Server) -> None:
    messages = payloads(3000)
    open_session(broker, "reader")
    publish(broker, messages)
    got: list[bytes] = []
    most_buffered = [0]
    c = receiver("reader", got, most_buffered)
    c.connect("127.0.0.1", broker.port, clean_start=False, keepalive=60)
    # Driven by hand, with nothing else arriving once the backlog is in: packets left
    # in the buffer after a read would wait here for the next keepalive (60 s), since
    # select() on the socket cannot see them.
    deadline = time.monotonic() + 30
    while len(got) < len(messages) and time.monotonic() < deadline:
        c.loop(timeout=0.2)
    c.disconnect()
    assert len(got) == len(messages)
    assert got == messages
    assert c.buffered() == 0
    # Several packets came in one recv: the buffer was in use.
    assert most_buffered[0] > 0


def test_a_socket_closed_mid_buffer_leaves_nothing_to_the_next_connection(
    broker: Server,
) -> None:
    """The client reconnects from inside a message callback while its buffer still
    holds packets of the old connection (``reconnect`` closes the socket there and
    then). The next packet read must be the new connection's CONNACK: packets kept
    from the old socket would be delivered as if the new connection had sent them."""
    messages = payloads(3000)
    open_session(broker, "reader")
    publish(broker, messages)
    got: list[bytes] = []
    c = receiver("reader", got, [0])
    events: list[tuple[str, int]] = []
    held_at_reconnect = [0]
    c.on_connect = lambda *_: events.append(("connack", len(got)))
    deliver = c.on_message

    def on_message(client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        deliver(client, userdata, m)
        if len(got) == 300:
            held_at_reconnect[0] = c.buffered()
            events.append(("reconnect", len(got)))
            client.reconnect()

    c.on_message = on_message
    c.connect("127.0.0.1", broker.port, clean_start=False)
    c.loop_start()
    try:
        assert wait_for(lambda: len(events) >= 3, 30), events
    finally:
        c.disconnect()
        c.loop_stop()
    assert held_at_reconnect[0] > 0  # the buffer did hold packets when the socket closed
    assert events[:3] == [("connack", 0), ("reconnect", 300), ("connack", 300)]


def test_a_connection_lost_mid_backlog_leaves_the_next_one_clean(broker: Server) -> None:
    """The broker is killed while the reader works through a backlog and started again
    (without persistence: that backlog is gone); what is published after the reader is
    back arrives whole and in order."""
    first, second = payloads(3000), [b"after-" + p for p in payloads(500)]
    open_session(broker, "reader")
    publish(broker, first)
    got: list[bytes] = []
    most_buffered = [0]
    c = receiver("reader", got, most_buffered)
    c.reconnect_delay_set(1, 1)
    connected = threading.Event()
    c.on_connect = lambda client, *_: (client.subscribe(TOPIC, qos=1), connected.set())
    c.connect("127.0.0.1", broker.port, clean_start=False)
    c.loop_start()
    try:
        assert wait_for(lambda: len(got) > 300, 30)
        connected.clear()
        os.kill(broker.proc.pid, signal.SIGKILL)
        broker.proc.wait(10)
        restart(broker)
        assert connected.wait(30)
        time.sleep(0.5)  # the SUBSCRIBE on the new connection reaches the broker
        before = len(got)
        publish(broker, second)
        assert wait_for(lambda: len(got) >= before + len(second), 30)
    finally:
        c.disconnect()
        c.loop_stop()
    assert got[before:] == second
    assert set(got[:before]) <= set(first)
