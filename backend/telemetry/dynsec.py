"""Changing the broker's users at run time: mosquitto's dynamic-security control topic.

The API gives a party of an order read-only MQTT credentials for that order's topics
(``POST /account/mqtt-credentials``, docs/watcher.md) and takes them away when the order
ends. It does so as the broker's ``admin`` user (:func:`backend.telemetry.access.admin_acls`)
by publishing commands to ``$CONTROL/dynamic-security/v1`` and reading the plugin's
answers on ``.../response``; the plugin saves every change to its config file, so the
credentials survive a broker restart. Deleting a client disconnects it at once.

:class:`BrokerAdmin` connects for each batch of commands (issuing credentials is rare;
a held connection would need its own reconnect logic) and waits for the answer with a
timeout. A command the plugin refuses raises :class:`DynsecError` naming the command and
the plugin's reason, except the ones the caller says it expects (``createRole`` of a role
that exists: every watcher of an order shares its role).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from backend.telemetry.access import AccessError, watcher_acls, watcher_role
from backend.telemetry.broker import BrokerURL

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
#: Watcher usernames: ``watch-<orderId>-<random>`` (each login its own: client id = username).
WATCHER_PREFIX = "watch-"


class DynsecError(AccessError):
    """Raised when the broker refuses a dynamic-security command or does not answer."""


def watcher_username(order_id: int) -> str:
    return f"{WATCHER_PREFIX}{order_id}-{secrets.token_hex(6)}"


def watcher_order(username: str) -> int | None:
    """The order a watcher username was issued for (None: not a watcher's)."""
    if not username.startswith(WATCHER_PREFIX):
        return None
    head = username[len(WATCHER_PREFIX) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True, slots=True)
class WatcherLogin:
    username: str
    password: str
    order_id: int


class BrokerAdmin:
    """Sends dynamic-security commands as the broker's admin user."""

    def __init__(self, url: BrokerURL, *, timeout: float = 10.0) -> None:
        if url.username is None or url.password is None:
            raise DynsecError("the broker admin URL needs a username and password")
        self.url = url
        self.timeout = timeout

    def run(
        self, commands: Sequence[dict[str, Any]], *, tolerate: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Send ``commands`` in one message; their responses in order. An error whose
        text is in ``tolerate`` is returned, any other raises :class:`DynsecError`."""
        tag = secrets.token_hex(8)
        tagged = [{**c, "correlationData": f"{tag}-{i}"} for i, c in enumerate(commands)]
        done = threading.Event()
        got: dict[str, dict[str, Any]] = {}
        failure: list[str] = []

        def on_connect(c: mqtt.Client, u: Any, f: Any, rc: mqtt.ReasonCode, p: Any) -> None:
            if rc.is_failure:
                failure.append(f"the broker refused the admin login: {rc}")
                done.set()
                return
            c.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(c: mqtt.Client, u: Any, mid: int, codes: Any, p: Any) -> None:
            if any(code.is_failure for code in codes):
                failure.append(f"the admin may not read {RESPONSE_TOPIC}")
                done.set()
                return
            c.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)

        def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
            try:
                body = json.loads(m.payload)
            except ValueError:
                return
            for r in body.get("responses", []):
                cid = r.get("correlationData")
                if isinstance(cid, str) and cid.startswith(tag):
                    got[cid] = r
            if len(got) == len(tagged):
                done.set()

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.url.username or "",
            protocol=mqtt.MQTTv5,
        )
        self.url.configure(client)
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(self.url.host, self.url.port)
        except OSError as exc:
            raise DynsecError(f"cannot reach the broker at {self.url.redacted()}: {exc}") from None
        client.loop_start()
        try:
            if not done.wait(self.timeout):
                raise DynsecError(
                    f"no dynamic-security answer from {self.url.redacted()} in {self.timeout:.0f}s"
                )
        finally:
            client.disconnect()
            client.loop_stop()
        if failure:
            raise DynsecError(failure[0])
        out = [got[c["correlationData"]] for c in tagged]
        for cmd, r in zip(commands, out, strict=True):
            error = r.get("error")
            if error and error not in tolerate:
                raise DynsecError(f"broker refused {cmd['command']}: {error}")
        return out

    # ---- watchers -----------------------------------------------------------------

    def issue_watcher(self, order_id: int) -> WatcherLogin:
        """A new login that may read ``order_id``'s telemetry and status, nothing else."""
        login = WatcherLogin(watcher_username(order_id), secrets.token_urlsafe(24), order_id)
        role = watcher_role(order_id)
        self.run(
            [
                {"command": "createRole", "rolename": role, "acls": watcher_acls(order_id)},
                {
                    "command": "createClient",
                    "username": login.username,
                    "password": login.password,
                    "textname": f"watcher of order {order_id}",
                    "roles": [{"rolename": role, "priority": 0}],
                },
            ],
            tolerate=("Role already exists",),
        )
        return login

    def watcher_usernames(self) -> list[str]:
        (r,) = self.run([{"command": "listClients", "verbose": False}])
        clients = r.get("data", {}).get("clients", [])
        return [c for c in clients if isinstance(c, str) and watcher_order(c) is not None]

    def revoke_order(self, order_id: int) -> list[str]:
        """Delete every watcher login of ``order_id`` (connected ones are kicked off) and
        its role; the usernames deleted."""
        names = [u for u in self.watcher_usernames() if watcher_order(u) == order_id]
        commands: list[dict[str, Any]] = [{"command": "deleteClient", "username": u} for u in names]
        commands.append({"command": "deleteRole", "rolename": watcher_role(order_id)})
        self.run(commands, tolerate=("Role not found",))
        return names
