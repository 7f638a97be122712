"""Who may do what on the broker: mosquitto's dynamic-security configuration.

The broker enforces every rule below *at subscribe time* and at delivery, so no
login but an oracle's can change what the oracles receive (docs/simulator.md,
"Broker security"). mosquitto's ``acl_file`` cannot: it accepts any subscription
and only filters deliveries, so a device login that joined the oracles' shared
subscription group took its round-robin turn and the message was dropped for
the whole group. The dynamic-security plugin checks ``subscribePattern`` /
``subscribeLiteral`` rules when the SUBSCRIBE arrives and answers "not
authorized" instead.

Roles (``defaultACLAccess`` denies everything else):

* ``oracle`` — joins ``$share/<group>/`` on telemetry, or subscribes to it plainly;
  subscribes to every device's status (retained, so plainly) and to ``$SYS``.
  Publishes only storage receipts, to any device (``trustship/v1/receipts/+``,
  :mod:`backend.telemetry.receipts`).
* ``device:<address>`` — one per device: publishes (telemetry, status, its Last
  Will) only under ``trustship/v1/orders/+/devices/<address>/#``, reads back
  its own status and reads its own receipts (``trustship/v1/receipts/<address>``);
  it can publish no receipt, its own neither. The 2.0 plugin does not expand
  ``%u`` in its rules, so each device has a role naming its address.
* ``monitor`` — reads ``$SYS`` only (health checks).
* ``admin`` — manages the plugin at run time (``$CONTROL/dynamic-security/#``).
* ``watch:<orderId>`` — one per order, made at run time by the API for the order's
  parties (``POST /account/mqtt-credentials``, :mod:`backend.telemetry.dynsec`):
  subscribes plainly to that order's telemetry and status and receives nothing
  else; publishes nothing; never ``$share/`` (docs/watcher.md).

The broker must also run with ``use_username_as_clientid true``: otherwise any
login could connect with an oracle's client id, take over its persistent session
(subscription and queued messages included) and push the oracle off.

Passwords are stored as the plugin stores them: PBKDF2-HMAC-SHA512 over a random
12-byte salt, 101 iterations (the plugin's default), base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.core.errors import TrustShipError
from backend.telemetry.receipts import RECEIPT_FILTER, receipt_topic

#: The share group the oracles join by default (OracleConfig / ORACLE_SHARE_GROUP).
DEFAULT_SHARE_GROUP = "trustship-oracle"
TELEMETRY_FILTER = "trustship/v1/orders/+/devices/+/telemetry"
STATUS_FILTER = "trustship/v1/orders/+/devices/+/status"
PBKDF2_ITERATIONS = 101

ORACLE_ROLE = "oracle"
MONITOR_ROLE = "monitor"
ADMIN_ROLE = "admin"


class AccessError(TrustShipError):
    """Raised when a broker access configuration cannot be built or written."""


def device_role(address: str) -> str:
    return f"device:{address}"


def device_prefix(address: str) -> str:
    """The topics a device owns: its telemetry and status on every order."""
    return f"trustship/v1/orders/+/devices/{address}/#"


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def oracle_acls(share_group: str = DEFAULT_SHARE_GROUP) -> list[dict[str, Any]]:
    return [
        _acl("subscribePattern", f"$share/{share_group}/{TELEMETRY_FILTER}"),
        _acl("subscribePattern", TELEMETRY_FILTER),
        _acl("subscribePattern", STATUS_FILTER),
        _acl("subscribePattern", "$SYS/#"),
        _acl("publishClientReceive", "trustship/v1/#"),
        _acl("publishClientReceive", "$SYS/#"),
        _acl("publishClientSend", RECEIPT_FILTER),
    ]


def device_acls(address: str) -> list[dict[str, Any]]:
    status = f"trustship/v1/orders/+/devices/{address}/status"
    receipts = receipt_topic(address)
    return [
        _acl("publishClientSend", device_prefix(address)),
        _acl("subscribePattern", status),
        _acl("publishClientReceive", status),
        _acl("subscribeLiteral", receipts),
        _acl("publishClientReceive", receipts),
    ]


def watcher_role(order_id: int) -> str:
    return f"watch:{order_id}"


def order_filters(order_id: int) -> tuple[str, str]:
    """The telemetry and status filters of one order (what its watchers may read)."""
    base = f"trustship/v1/orders/{order_id}/devices/+"
    return f"{base}/telemetry", f"{base}/status"


def watcher_acls(order_id: int) -> list[dict[str, Any]]:
    """Read-only access to one order: a plain subscription to its telemetry and status,
    and deliveries of those topics only (no publishing, no share group)."""
    telemetry, status = order_filters(order_id)
    return [
        _acl("subscribePattern", telemetry),
        _acl("subscribePattern", status),
        _acl("publishClientReceive", telemetry),
        _acl("publishClientReceive", status),
    ]


def monitor_acls() -> list[dict[str, Any]]:
    return [_acl("subscribePattern", "$SYS/#"), _acl("publishClientReceive", "$SYS/#")]


def admin_acls() -> list[dict[str, Any]]:
    control = "$CONTROL/dynamic-security/#"
    return [
        _acl("publishClientSend", control),
        _acl("publishClientReceive", control),
        _acl("subscribePattern", control),
        _acl("subscribePattern", "$SYS/#"),
        _acl("publishClientReceive", "$SYS/#"),
    ]


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """The plugin's stored form of a password: ``{"password", "salt", "iterations"}``."""
    if not password:
        raise AccessError("a broker password cannot be empty")
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
    }


def _check_name(name: str) -> str:
    if not name or any(c in name for c in "\n\r\0/+#") or len(name) > 128:
        raise AccessError(f"broker user {name!r}: 1-128 characters, none of / + # or newlines")
    return name


@dataclass
class BrokerAccess:
    """The broker's users and what each may do; :meth:`config` is the plugin's JSON."""

    share_group: str = DEFAULT_SHARE_GROUP

    def __post_init__(self) -> None:
        self._clients: dict[str, dict[str, Any]] = {}
        self._roles: dict[str, list[dict[str, Any]]] = {
            ORACLE_ROLE: oracle_acls(self.share_group),
            MONITOR_ROLE: monitor_acls(),
            ADMIN_ROLE: admin_acls(),
        }

    def _client(self, username: str, password: str, role: str, text: str) -> None:
        _check_name(username)
        if username in self._clients:
            raise AccessError(f"broker user {username!r} is defined twice")
        self._clients[username] = {
            "username": username,
            "textName": text,
            **hash_password(password),
            "roles": [{"rolename": role, "priority": 0}],
        }

    def add_oracle(self, username: str, password: str) -> None:
        """An oracle process (each process its own user: client id = username)."""
        self._client(username, password, ORACLE_ROLE, "TrustShip oracle")

    def add_device(self, address: str, password: str) -> None:
        role = device_role(address)
        self._roles[role] = device_acls(address)
        self._client(address, password, role, "TrustShip device")

    def add_devices(self, devices: Mapping[str, str]) -> None:
        for address, password in devices.items():
            self.add_device(address, password)

    def add_monitor(self, username: str, password: str) -> None:
        self._client(username, password, MONITOR_ROLE, "health checks ($SYS only)")

    def add_admin(self, username: str, password: str) -> None:
        self._client(username, password, ADMIN_ROLE, "dynamic-security administrator")

    @property
    def usernames(self) -> list[str]:
        return list(self._clients)

    def config(self) -> dict[str, Any]:
        return {
            "clients": list(self._clients.values()),
            "groups": [],
            "roles": [{"rolename": name, "acls": acls} for name, acls in self._roles.items()],
            "defaultACLAccess": {
                "publishClientSend": False,
                "publishClientReceive": False,
                "subscribe": False,
                "unsubscribe": True,
            },
        }

    def write(self, path: Path, *, uid: int | None = None, gid: int | None = None) -> None:
        """Write the plugin's config to ``path`` atomically, mode 0600.

        The plugin rewrites the file whenever it is changed at run time, so the broker
        must own it: pass the broker's ``uid``/``gid`` (1883 in the eclipse-mosquitto
        image) when this runs as another user, e.g. root in a set-up container.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dynsec-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:  # mkstemp: mode 0600
                json.dump(self.config(), fh, indent=1)
            if uid is not None or gid is not None:
                os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
            os.replace(tmp, path)
        except OSError as exc:
            raise AccessError(f"cannot write the broker's access file {path}: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
