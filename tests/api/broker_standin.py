"""A stand-in for the broker's dynamic-security admin (backend.telemetry.dynsec.BrokerAdmin):
it records the logins the API issues and revokes. The real broker:
tests/integration/test_watcher.py."""

from __future__ import annotations

from backend.telemetry.dynsec import DynsecError, WatcherLogin, watcher_username


class FakeAdmin:
    """Records what the API asks of the broker."""

    def __init__(self) -> None:
        self.logins: dict[str, int] = {}
        self.revoked: list[int] = []
        self.fail = False

    def issue_watcher(self, order_id: int) -> WatcherLogin:
        if self.fail:
            raise DynsecError("no dynamic-security answer in 10s")
        login = WatcherLogin(watcher_username(order_id), "pw", order_id)
        self.logins[login.username] = order_id
        return login

    def watcher_usernames(self) -> list[str]:
        return list(self.logins)

    def revoke_order(self, order_id: int) -> list[str]:
        self.revoked.append(order_id)
        gone = [u for u, o in self.logins.items() if o == order_id]
        for u in gone:
            del self.logins[u]
        return gone
