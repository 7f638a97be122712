"""MQTT broker addresses and protocol negotiation, shared by devices and the oracle.

``MQTT_URL`` is ``mqtt://[user:pass@]host[:port]`` or
``mqtts://...[?ca=FILE&insecure=1]`` (without ``ca=``, the ``ca_file`` the caller
read from its configuration, e.g. ``MQTT_CA_FILE``). :func:`probe_protocol` connects once to
learn whether the broker speaks MQTT 5 (mosquitto) or only 3.1.1 (amqtt, the
embedded demo broker), so both sides can fall back.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from backend.core.errors import TrustShipError

log = logging.getLogger(__name__)


class BrokerError(TrustShipError):
    """Raised when an MQTT URL is malformed or the broker cannot be reached."""


#: Bytes one ``recv`` may take from the socket (:class:`ReadBufferedClient`).
READ_CHUNK = 64 * 1024


class ReadBufferedClient(mqtt.Client):
    """A paho client that reads its socket in chunks, for the clients that receive
    a stream (the oracle, the watcher).

    Stock paho reads a packet with three or four ``recv`` calls (the command byte,
    each byte of the remaining length, the rest) after a ``select`` of its own: four
    or five system calls per reading. This client takes what the socket holds, up to
    :data:`READ_CHUNK`, in one ``recv`` and serves paho's reads from that buffer;
    :meth:`loop_read` goes on while bytes wait in it, since a ``select`` on the
    socket cannot see them. A closed socket drops the buffer (a new connection starts
    clean). The methods overridden are paho's own socket reads (``_sock_recv``,
    ``_sock_close``), present in paho 2.x (the range in pyproject.toml; the test
    ``test_read_buffered_client_overrides_what_paho_has`` checks they exist).
    docs/oracle.md has the receive cost measured with and without it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_pos = 0

    def buffered(self) -> int:
        """Bytes received from the socket that paho has not read yet."""
        return len(self._read_buffer) - self._read_pos

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_pos >= len(self._read_buffer):
            data = super()._sock_recv(max(bufsize, READ_CHUNK))
            if len(data) <= bufsize:  # all of it asked for, or the connection's end (b"")
                self._read_buffer, self._read_pos = b"", 0
                return data
            self._read_buffer, self._read_pos = data, 0
        start = self._read_pos
        self._read_pos = min(start + bufsize, len(self._read_buffer))
        return self._read_buffer[start : self._read_pos]

    def _sock_close(self) -> None:
        self._read_buffer, self._read_pos = b"", 0
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.buffered() and self._sock is not None:
            rc = super().loop_read(max_packets)
        return rc


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_certs: str | None
    insecure: bool

    @classmethod
    def parse(cls, url: str, *, ca_file: str | None = None) -> BrokerURL:
        """``url``'s parts; ``ca_file`` is the CA file when the URL names none."""
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
            raise BrokerError(f"MQTT URL {url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise BrokerError(f"MQTT URL {url!r} has no host")
        tls = parts.scheme in {"mqtts", "ssl"}
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise BrokerError(f"MQTT URL {url!r}: {exc}") from None
        query = parse_qs(parts.query)
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_certs=(query.get("ca") or [ca_file or ""])[0] or None,
            insecure=(query.get("insecure") or ["0"])[0] in {"1", "true", "yes"},
        )

    def without_credentials(self) -> BrokerURL:
        return replace(self, username=None, password=None)

    def redacted(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"

    def configure(self, client: mqtt.Client) -> None:
        """Credentials and TLS of this URL on a paho client."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(ca_certs=self.ca_certs)
            if self.insecure:
                client.tls_insecure_set(True)


def probe_protocol(
    url: BrokerURL, timeout: float, *, anonymous: bool = False
) -> mqtt.MQTTProtocolVersion:
    """MQTT 5 unless the broker refuses it (amqtt is 3.1.1 only); raises when unreachable.

    The probe connects without a will: amqtt answers a v5 CONNECT that has one
    by hanging instead of refusing it. ``anonymous`` probes without the URL's
    credentials: on a broker that makes the client id the username
    (``use_username_as_clientid``), a probe with the oracle's login would take over
    the oracle's persistent session and, connecting with a clean start, end it —
    losing everything queued for it. A refused anonymous CONNECT still tells v5
    (a v5 reason code) from 3.1.1-only ("Unsupported protocol version").
    """
    result: dict[str, Any] = {}
    got = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"trustship-probe-{os.getpid()}-{threading.get_ident()}",
        protocol=mqtt.MQTTv5,
    )
    (url.without_credentials() if anonymous else url).configure(client)

    def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        result["rc"] = rc
        got.set()

    client.on_connect = on_connect
    try:
        try:
            client.connect(url.host, url.port, keepalive=10)
        except OSError as exc:  # refused, unknown host, TLS failure: say so now
            raise BrokerError(
                f"cannot reach the MQTT broker at {url.redacted()}: {exc.strerror or exc}"
            ) from None
        client.loop_start()
        if not got.wait(timeout):
            raise BrokerError(
                f"cannot reach the MQTT broker at {url.redacted()} within {timeout:.0f}s"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    if str(result["rc"]) == "Unsupported protocol version":
        log.info("broker at %s has no MQTT 5: using MQTT 3.1.1", url.redacted())
        return mqtt.MQTTv311
    return mqtt.MQTTv5
