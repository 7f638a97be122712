"""Parties' own broker logins: read-only, one order each, gone when the order ends.

``POST /account/mqtt-credentials`` asks :class:`BrokerLogins` for a login that may read
one order's telemetry and status (:func:`backend.telemetry.access.watcher_acls`), made
at run time through the broker's dynamic-security plugin as its admin user
(``MQTT_ADMIN_URL``). Nothing is stored here: the broker holds the logins (the plugin
saves them), the username names the order (``watch-<order>-<random>``), and the
password is shown to the party once.

Revocation: the chain indexer tells :meth:`orders_indexed` which orders changed;
a worker thread deletes the logins of those that ended (Settled, Cancelled, Resolved,
Expired) — deleting a client disconnects it — and :meth:`sweep` does the same for every
login the broker holds (at start, so a login outliving a restart is caught too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.domain.order import OrderState
from backend.store.models import OrderRow
from backend.telemetry.dynsec import BrokerAdmin, DynsecError, WatcherLogin, watcher_order

log = logging.getLogger(__name__)

#: Orders in these states have nothing left to watch.
ENDED = tuple(
    s.label
    for s in (OrderState.SETTLED, OrderState.CANCELLED, OrderState.RESOLVED, OrderState.EXPIRED)
)


class BrokerLogins:
    def __init__(
        self, admin: BrokerAdmin, sessions: sessionmaker[Session], *, poll_secs: float = 2.0
    ) -> None:
        self.admin = admin
        self.sessions = sessions
        self.poll_secs = poll_secs
        self._changed: set[int] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.revoked: list[str] = []

    def issue(self, order_id: int) -> WatcherLogin:
        return self.admin.issue_watcher(order_id)

    def _ended(self, order_ids: Iterable[int]) -> set[int]:
        ids = list(order_ids)
        if not ids:
            return set()
        with self.sessions() as s:
            rows = s.execute(select(OrderRow.id, OrderRow.state).where(OrderRow.id.in_(ids)))
            return {int(i) for i, state in rows if state in ENDED}

    def revoke_ended(self, order_ids: Iterable[int]) -> list[str]:
        """Delete the logins of those of ``order_ids`` that have ended."""
        out: list[str] = []
        for order_id in sorted(self._ended(order_ids)):
            names = self.admin.revoke_order(order_id)
            if names:
                log.info("order %d ended: broker logins %s deleted", order_id, names)
            out += names
        self.revoked += out
        return out

    def sweep(self) -> list[str]:
        """Revoke every login the broker holds for an order that has ended."""
        held = {o for u in self.admin.watcher_usernames() if (o := watcher_order(u)) is not None}
        return self.revoke_ended(held)

    # ---- the indexer's hook ------------------------------------------------------

    def orders_indexed(self, order_ids: Iterable[int]) -> None:
        with self._cond:
            self._changed.update(order_ids)
            self._cond.notify()

    def _run(self) -> None:
        try:
            self.sweep()
        except DynsecError as exc:
            log.warning("broker logins: the first sweep failed: %s", exc)
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._changed or self._stop.is_set(), self.poll_secs)
                changed, self._changed = self._changed, set()
            if not changed:
                continue
            try:
                self.revoke_ended(changed)
            except DynsecError as exc:
                log.warning("broker logins: revocation failed, retrying: %s", exc)
                with self._cond:
                    self._changed |= changed
                self._stop.wait(self.poll_secs)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="broker-logins", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
