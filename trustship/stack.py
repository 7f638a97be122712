"""The stacks a scenario runs against, and the drivers that act as its parties.

Two ways to reach a stack, one interface (:class:`Driver`):

* :class:`DirectDriver` — in this process: the contracts through
  ``backend.chain`` as the dev buyer/supplier accounts, with the oracle
  running in-process (:func:`local_stack`). The chain, broker and database are
  the configured ones (``RPC_URL``, ``MQTT_URL``, ``DATABASE_URL``) or, where
  unset, the embedded defaults: eth-tester, an in-process amqtt broker and a
  SQLite file in a temp dir.
* :class:`ApiDriver` — a running ``trustship serve`` reached over HTTP
  (``TRUSTSHIP_API_URL``) with the dev API keys; the oracle is that server's.

Either way the telemetry travels over MQTT from the simulator, and the driver
only reads outcomes: the oracle (not the driver) proves breaches and arrival
and settles.

Time: readings carry scenario time ``t0 + offset``. On a dev chain (eth-tester,
anvil) the driver moves the chain clock to the end of the voyage before the
telemetry is published, so readings from a five-day voyage replayed in seconds
are never "in the future" for the contracts or the oracle. On a real network
there is no such control, and a scenario must be replayed at ``speed=1``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from backend.chain.connection import Chain, connect
from backend.chain.contracts import ETH, Contracts, OrderState, Terms, terms_from_abi
from backend.chain.deploy import Deployment, deploy_all, load_deployment
from backend.chain.errors import ContractRevert
from backend.core.errors import ConfigurationError, TrustShipError
from backend.core.settings import Settings
from backend.domain.order import TERMS_BODY_ATTRS
from backend.telemetry import Domain
from iot_simulator import Fleet, Scenario
from iot_simulator.fleet import issuer_addresses

if TYPE_CHECKING:
    import httpx

    from backend.runtime import Runtime

log = logging.getLogger(__name__)

TERMINAL = {"Settled", "Resolved", "Cancelled", "Expired"}
#: Alerts the rules raise with a breach proof queued (backend/oracle/rules.py).
BREACH_ALERTS = frozenset({"breach_detected", "shock"})
Note = Callable[[str], None]

#: Display decimals of the scenario tokens (amounts are compared in base units).
DECIMALS = {"ETH": 18, "TUSD": 6}


def format_amount(value: int | None, token: str, *, unit: bool = True) -> str:
    """Base units as token units, exact (no rounding), e.g. ``19,200.5 TUSD``."""
    if value is None:
        return "—"
    decimals = DECIMALS.get(token, 0)
    whole, frac = divmod(value, 10**decimals)
    text = f"{whole:,}"
    if frac:
        text += "." + f"{frac:0{decimals}d}".rstrip("0")
    return f"{text} {token}" if unit and token else text


class ReplayError(TrustShipError):
    """Raised when a scenario cannot be run against the stack (not when it settles wrongly)."""


@dataclass(frozen=True)
class Outcome:
    """How an order ended, read back from the chain (or the API's indexed copy of it)."""

    order_id: int
    state: str
    buyer_amount: int | None
    supplier_amount: int | None
    breached: bool
    delivered_at: int | None
    deadline: int

    @property
    def late_s(self) -> int | None:
        if self.delivered_at is None:
            return None
        return max(0, self.delivered_at - self.deadline)

    @property
    def final(self) -> bool:
        """Terminal, with its credited split known."""
        return self.state in TERMINAL and self.buyer_amount is not None


class Driver(Protocol):
    chain: Chain
    domain: Domain
    mqtt_url: str

    def open_orders(self, scenario: Scenario, fleet_t0: int, note: Note) -> dict[str, int]:
        """Create and fund every order as the buyer; the supplier accepts each, except
        an order the buyer is to cancel (the buyer may cancel only before acceptance)."""
        ...

    def ship(self, fleet: Fleet, note: Note, names: Sequence[str]) -> None:
        """Ship the named orders with their fleet's devices bound."""
        ...

    def act(self, order_id: int, action: PartyAction, note: Note) -> None:
        """One party's step beyond the telemetry: cancel, dispute, rule or expire."""
        ...

    def outcome(self, order_id: int) -> Outcome: ...

    def evidence_settled(self, order_id: int, published: int) -> bool:
        """Every published reading of the order is stored, and a breach the rules found
        (an alert of :data:`BREACH_ALERTS`) is proven on chain."""
        ...

    def diagnose(self, order_id: int) -> str:
        """Why an order may not have ended as expected: the chain's view, the oracle's
        refusals and gaps for its devices, its last alert."""
        ...

    def wait_for_oracle_clock(self, target: int, timeout: float) -> None: ...


@dataclass(frozen=True)
class PartyAction:
    """``kind`` by ``party`` (buyer, supplier or arbiter); ``buyer_amount`` for a ruling."""

    kind: str  # cancel | dispute | rule | expire
    party: str
    buyer_amount: int | None = None

    def describe(self, order_id: int) -> str:
        what = {
            "cancel": "cancelled the order",
            "dispute": "opened a dispute",
            "rule": f"ruled {self.buyer_amount} to the buyer, the rest to the supplier",
            "expire": "reclaimed the undelivered order (expireOrder)",
        }[self.kind]
        return f"order {order_id}: the {self.party} {what}"


def _terms(scenario: Scenario, name: str, t0: int, token: str, parties: Mapping[str, str]) -> Terms:
    """The order's terms between ``parties`` (buyer, supplier, arbiter addresses), its
    devices certified by the scenario's issuers (keys from the seed)."""
    order = scenario.order(name)
    raw = order.terms.to_contract(
        t0=t0,
        destination_e6=order.destination_e6,
        token_address=token,
        arbiter=parties["arbiter"],
        buyer=parties["buyer"],
        supplier=parties["supplier"],
        issuers=issuer_addresses(scenario, name),
    )
    return terms_from_abi(tuple(raw.values()))


#: What the contract answers a device no issuer of the terms certified.
UNCERTIFIED = "QualityVerificationUncertifiedDevice"


def _refused_as_uncertified(
    note: Note, refused: str, took: str, send: Callable[..., object], *args: Any, **kw: Any
) -> None:
    """``send(*args, **kw)``, which the contract must refuse as :data:`UNCERTIFIED`, and note
    ``refused``; any other revert propagates, and acceptance is a :class:`ReplayError`
    (``took``)."""
    try:
        send(*args, **kw)
    except ContractRevert as exc:
        if exc.name != UNCERTIFIED:
            raise
        note(refused)
    else:
        raise ReplayError(took)


# ---------------------------------------------------------------------------
# in-process: the contracts through backend.chain
# ---------------------------------------------------------------------------


class DirectDriver:
    """Acts as the dev buyer and supplier through the contract wrappers."""

    def __init__(
        self,
        chain: Chain,
        deployment: Deployment,
        mqtt_url: str,
        *,
        contracts: Contracts | None = None,
        oracle_clock: Callable[[], int] | None = None,
        sessions: Callable[[], Any] | None = None,
        refusals: Callable[[int], Sequence[Any]] | None = None,
    ) -> None:
        self.chain = chain
        self.deployment = deployment
        self.contracts = (
            contracts if contracts is not None else Contracts.from_deployment(chain, deployment)
        )
        self.domain = self.contracts.quality.domain()
        self.mqtt_url = mqtt_url
        self.buyer = chain.accounts.require("buyer")
        self.supplier = chain.accounts.require("supplier")
        self.arbiter = chain.accounts.require("arbiter")
        #: The in-process oracle's clock, database sessions and refusal tally
        #: (:func:`local_stack`); None without one.
        self.oracle_clock = oracle_clock
        self.sessions = sessions
        self.refusals = refusals

    def wait_for_oracle_clock(self, target: int, timeout: float) -> None:
        """Wait until the oracle has seen the chain reach ``target`` (its indexer polls)."""
        if self.oracle_clock is None:
            return
        deadline = time.monotonic() + timeout
        while self.oracle_clock() < target:
            if time.monotonic() > deadline:
                raise ReplayError(
                    f"the oracle's clock is still at {self.oracle_clock()} after {timeout:.0f}s; "
                    f"expected {target}: is its chain indexer running?"
                )
            time.sleep(0.05)

    def _token(self, symbol: str) -> str:
        """``ETH``, ``TUSD`` (the deployment's test stablecoin) or an explicit address."""
        if symbol == "ETH":
            return ETH
        if symbol.startswith("0x"):
            return symbol
        if self.contracts.token is None:
            raise ReplayError(f"the scenario pays in {symbol}, but no test stablecoin is deployed")
        return self.contracts.token.address

    def _fund(self, token: str, amount: int) -> None:
        """The buyer holds ``amount`` of ``token`` and the escrow may pull it: the test
        stablecoin is minted; any other ERC-20 must already be in the buyer's wallet."""
        from backend.chain.contracts import Stablecoin

        coin = Stablecoin(self.chain, token)
        test_coin = self.contracts.token
        if test_coin is not None and test_coin.address == token:
            test_coin.mint(self.buyer.address, amount, by=self.buyer)
        else:
            held = coin.balance_of(self.buyer.address)
            if held < amount:
                raise ReplayError(
                    f"the buyer {self.buyer.address} holds {held} of token {token}, the order "
                    f"needs {amount}: fund the buyer's wallet first"
                )
        coin.approve(self.contracts.escrow.address, amount, by=self.buyer)

    def open_orders(self, scenario: Scenario, fleet_t0: int, note: Note) -> dict[str, int]:
        """Create, fund and accept every order of the scenario; returns name → order id."""
        po = self.contracts.po
        ids: dict[str, int] = {}
        for order in scenario.orders:
            token = self._token(order.terms.token)
            parties = {
                "buyer": self.buyer.address,
                "supplier": self.supplier.address,
                "arbiter": self.arbiter.address,
            }
            terms = _terms(scenario, order.name, fleet_t0, token, parties)
            if token != ETH:
                self._fund(token, terms.price)
            created = po.create_and_fund_order(terms, by=self.buyer)
            order_id = int(created.value)
            accepted = order.actions.cancel != "buyer"
            if accepted:
                po.accept_order(order_id, by=self.supplier)
            ids[order.name] = order_id
            note(
                f"order {order_id} ({order.name}): created and funded by the buyer "
                f"({format_amount(terms.price, order.terms.token)} in escrow)"
                + ("; accepted by the supplier" if accepted else "")
            )
        return ids

    def ship(self, fleet: Fleet, note: Note, names: Sequence[str]) -> None:
        po, qv = self.contracts.po, self.contracts.quality
        for name in names:
            order_id = fleet.order_ids[name]
            certs = fleet.certificates_of(name)
            terms = po.terms_of(order_id)
            rogues = fleet.rogues_of(name)
            for rogue in rogues:
                # The supplier offers its own device, vouching for it itself: refused.
                own = fleet.self_certificate(rogue, self.supplier.key)
                _refused_as_uncertified(
                    note,
                    f"order {order_id}: the supplier's own device {rogue.address} refused",
                    f"order {order_id}: the contract bound a rogue device",
                    po.ship_order,
                    order_id,
                    [*certs, own],
                    terms=terms,
                    by=self.supplier,
                )
            po.ship_order(order_id, certs, terms=terms, by=self.supplier)
            note(f"order {order_id}: shipped with {len(certs)} certified device(s) bound")
            for rogue in rogues:
                fake = fleet.rogue_arrival(rogue)
                if fake is None:
                    continue
                own = fleet.self_certificate(rogue, self.supplier.key)
                _refused_as_uncertified(
                    note,
                    f"order {order_id}: the supplier's fake arrival refused ({UNCERTIFIED})",
                    f"order {order_id}: the contract took a fake arrival",
                    qv.prove_arrival,
                    order_id,
                    terms,
                    [fake],
                    [own],
                    by=self.supplier,
                )

    def act(self, order_id: int, action: PartyAction, note: Note) -> None:
        po = self.contracts.po
        by = self.chain.accounts.require(action.party)
        terms = po.terms_of(order_id)
        simple = {"cancel": po.cancel_order, "dispute": po.open_dispute, "expire": po.expire_order}
        if action.kind in simple:
            simple[action.kind](order_id, terms=terms, by=by)
        elif action.kind == "rule":
            assert action.buyer_amount is not None
            po.resolve_dispute(order_id, action.buyer_amount, terms=terms, by=by)
        else:
            raise ReplayError(f"unknown party action {action.kind!r}")
        note(action.describe(order_id))

    def evidence_settled(self, order_id: int, published: int) -> bool:
        if self.sessions is None:
            return True
        from backend.store import repositories as repo

        with self.sessions() as s:
            stored = sum(d.reading_count for d in repo.devices_of_order_rows(s, order_id))
            kinds = {a.kind for a in repo.alerts_for(s, order_id, limit=10_000)}
        if stored < published:
            return False
        return not (kinds & BREACH_ALERTS) or self.contracts.po.get_order(order_id).breached

    def diagnose(self, order_id: int) -> str:
        order = self.contracts.po.get_order(order_id)
        state = OrderState(order.state).name.capitalize()
        parts = [
            f"chain: {state}, {'breached' if order.breached else 'no breach proven'}, "
            + (f"delivered at {order.delivered_at}" if order.delivered_at else "not delivered")
        ]
        if self.sessions is not None:
            from backend.store import repositories as repo

            with self.sessions() as s:
                devices = repo.devices_of_order_rows(s, order_id)
                alerts = repo.alerts_for(s, order_id, limit=10_000)
            stored = sum(d.reading_count for d in devices)
            missing = sum(d.missing() for d in devices)
            parts.append(
                f"oracle: {stored} reading(s) stored from {len(devices)} bound device(s)"
                + (f", {missing} missing (seq gaps)" if missing else "")
            )
            if alerts:
                last = alerts[-1]
                parts.append(f"last alert: {last.kind}: {last.message}")
        if self.refusals is not None:
            parts.append(
                describe_refusals(
                    [(dict(r.by_reason), r.last_message) for r in self.refusals(order_id)]
                )
            )
        return "; ".join(parts)

    def _split(self, order_id: int, state: str) -> tuple[int | None, int | None]:
        """The credited split, from the final event (OrderSettled / DisputeResolved).

        With the oracle's database at hand, its indexed copy of that event is read
        (eth-tester's eth_getLogs scans every block, which starves the oracle on a long
        replay); otherwise the chain's logs.
        """
        if self.sessions is not None:
            from backend.store import repositories as repo

            with self.sessions() as s:
                row = repo.get_order(s, order_id)
                if row is None or row.state != state:
                    return None, None  # not indexed yet
                return row.buyer_amount, row.supplier_amount
        event = "OrderSettled" if state == "Settled" else "DisputeResolved"
        logs = getattr(self.contracts.po.contract.events, event).get_logs(
            from_block=self.deployment.block_number, argument_filters={"orderId": order_id}
        )
        for entry in logs:
            return int(entry["args"]["buyerAmount"]), int(entry["args"]["supplierAmount"])
        return None, None

    def outcome(self, order_id: int) -> Outcome:
        order = self.contracts.po.get_order(order_id)
        terms = self.contracts.po.terms_of(order_id)
        state = OrderState(order.state).name.capitalize()
        buyer_amount = supplier_amount = None
        if state in ("Settled", "Resolved"):
            buyer_amount, supplier_amount = self._split(order_id, state)
        elif state in ("Cancelled", "Expired"):  # the whole deposit back to the buyer
            buyer_amount, supplier_amount = (terms.price if order.funded else 0), 0
        return Outcome(
            order_id=order_id,
            state=state,
            buyer_amount=buyer_amount,
            supplier_amount=supplier_amount,
            breached=bool(order.breached),
            delivered_at=order.delivered_at,
            deadline=int(terms.delivery_deadline),
        )


def describe_refusals(refusals: Sequence[tuple[dict[str, int], str]]) -> str:
    """``refused 12 (future_timestamp: 10, unknown_device: 2), the last because …`` from
    (counts by reason, last message) per device."""
    counts: dict[str, int] = {}
    last = ""
    for by_reason, last_message in refusals:
        for reason, n in by_reason.items():
            counts[reason] = counts.get(reason, 0) + n
        last = last_message
    if not counts:
        return "refused: none"
    total = sum(counts.values())
    by = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"refused {total} ({by}), the last because {last}"


# ---------------------------------------------------------------------------
# over HTTP: a running `trustship serve`
# ---------------------------------------------------------------------------

#: The API keys `trustship serve` seeds in dev mode (docs/api.md).
DEV_API_KEYS = {"buyer": "dev-buyer", "supplier": "dev-supplier", "arbiter": "dev-arbiter"}


class ApiDriver:
    """Acts as buyer and supplier through the REST API of a running `trustship serve`.

    The chain connection (``RPC_URL``) is used only for what a dev chain's operator
    does outside the API: move the clock, and mint the test stablecoin the buyer pays
    ERC-20 orders with (as the deployer, an account the API's parties do not send from
    in a replay, so its nonces never race the server's).

    A scenario's orders are opened and shipped concurrently (up to
    :attr:`concurrency` requests in flight): on an interval-mined chain
    (``--block-time 1``) each write waits for its block, so one order after the
    other would take a block per call.
    """

    #: Concurrent API writes while opening and shipping a scenario's orders.
    concurrency = 16
    #: How long a GET rides out a server that does not answer (restarting, say, while
    #: the devices publish): a GET is retried on transport errors, a POST never is.
    get_retry_s = 60.0

    def __init__(
        self,
        api_url: str,
        chain: Chain,
        mqtt_url: str,
        keys: dict[str, str],
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: a
        # request on a connection the server is closing fails with "connection reset",
        # and a POST is not retried (it may have created an order).
        self.http = httpx.Client(
            base_url=api_url.rstrip("/"),
            timeout=120.0,
            limits=httpx.Limits(max_connections=self.concurrency + 4, keepalive_expiry=2.0),
            transport=transport,
        )
        self.chain = chain
        self.mqtt_url = mqtt_url
        self.keys = keys
        info = self._call("GET", "/deployment", None)
        self.domain = Domain(int(info["chain_id"]), info["contracts"]["QualityVerification"])
        self.token: str | None = info.get("token")
        if self.domain.chain_id != chain.chain_id:
            raise ReplayError(
                f"the API serves chain {self.domain.chain_id}, RPC_URL is chain {chain.chain_id}"
            )
        self.address = {
            role: self._call("GET", "/account", role)["party"]["address"]
            for role in ("buyer", "supplier", "arbiter")
        }

    def _call(self, method: str, path: str, role: str | None, body: Any = None) -> Any:
        import httpx

        headers = {"X-API-Key": self.keys[role]} if role else {}
        what = f"{method} {path}" + (f" as {role}" if role else "")
        deadline = time.monotonic() + (self.get_retry_s if method == "GET" else 0.0)
        while True:
            try:
                response = self.http.request(method, path, json=body, headers=headers)
                break
            except httpx.TransportError as exc:
                if time.monotonic() >= deadline:
                    raise ReplayError(
                        f"{what}: no answer from the TrustShip API at {self.http.base_url}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
                log.info("%s: %s: %s; retrying", what, type(exc).__name__, exc)
                time.sleep(0.5)
        if response.status_code >= 400:
            raise ReplayError(f"{what}: {response.status_code} {response.text}")
        return response.json()

    def wait_for_oracle_clock(self, target: int, timeout: float) -> None:
        """Wait until the server's oracle has seen the chain reach ``target``."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self._call("GET", "/deployment", None).get("oracle_clock")
            if seen is not None and int(seen) >= target:
                return
            if time.monotonic() > deadline:
                raise ReplayError(
                    f"the server's oracle clock is at {seen} after {timeout:.0f}s, "
                    f"expected {target}"
                )
            time.sleep(0.1)

    def _token_address(self, symbol: str, order_name: str) -> str:
        if symbol == "ETH":
            return ETH
        if symbol.startswith("0x"):
            return symbol
        if self.token:
            return self.token
        raise ReplayError(f"{order_name} pays in {symbol}: the deployment has no test token")

    def _fund_buyer(self, scenario: Scenario) -> None:
        """Mint the test stablecoin the buyer still lacks for the scenario's ERC-20 orders."""
        need = sum(o.terms.price for o in scenario.orders if o.terms.token == "TUSD")
        if not need or not self.token:
            return
        from backend.chain.contracts import Stablecoin

        coin = Stablecoin(self.chain, self.token)
        buyer = self.address["buyer"]
        short = need - coin.balance_of(buyer)
        if short > 0:
            try:
                minter = self.chain.accounts.require("admin")
            except ConfigurationError as exc:
                raise ReplayError(
                    f"the buyer {buyer} needs {short} more test-token base units: {exc}"
                ) from None
            coin.mint(buyer, short, by=minter)

    def _parallel(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Run ``calls`` concurrently; results in order; the first failure is raised."""
        from concurrent.futures import ThreadPoolExecutor

        if len(calls) <= 1:
            return [c() for c in calls]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(calls))) as pool:
            futures = [pool.submit(c) for c in calls]
            return [f.result() for f in futures]

    def open_orders(self, scenario: Scenario, fleet_t0: int, note: Note) -> dict[str, int]:
        """Create-and-fund (as the buyer), then accept (as the supplier), every order.

        Orders paying in ETH are created concurrently. Orders paying in an ERC-20 are
        created one after the other, beside them: funding one is an ``approve`` then the
        escrow's ``transferFrom``, and the API lets one such pair per buyer and token
        run at a time (``approve`` sets the allowance, it does not add to it).
        """
        self._fund_buyer(scenario)

        def create(name: str, token: str) -> int:
            terms = _terms(scenario, name, fleet_t0, token, self.address)
            body = {
                "supplier": self.address["supplier"],
                "terms": {
                    field: (
                        str(getattr(terms, field)) if field == "price" else getattr(terms, field)
                    )
                    for field in TERMS_BODY_ATTRS
                },
                "fund": True,
            }
            return int(self._call("POST", "/orders", "buyer", body)["order"]["id"])

        ids: dict[str, int] = {}
        by_token: dict[str, list[str]] = {}
        for order in scenario.orders:
            by_token.setdefault(self._token_address(order.terms.token, order.name), []).append(
                order.name
            )

        def create_all(token: str, names: list[str]) -> None:
            for name in names:
                ids[name] = create(name, token)

        def create_one(name: str) -> None:
            ids[name] = create(name, ETH)

        # the sequential ERC-20 chains first, so that they start at once
        calls: list[Callable[[], Any]] = [
            partial(create_all, token, names) for token, names in by_token.items() if token != ETH
        ]
        calls += [partial(create_one, name) for name in by_token.get(ETH, [])]
        self._parallel(calls)
        accepted = [o for o in scenario.orders if o.actions.cancel != "buyer"]
        self._parallel(
            [
                partial(self._call, "POST", f"/orders/{ids[o.name]}/accept", "supplier")
                for o in accepted
            ]
        )
        for order in scenario.orders:
            note(
                f"order {ids[order.name]} ({order.name}): created and funded over the API"
                + ("; accepted" if order in accepted else "")
            )
        return {o.name: ids[o.name] for o in scenario.orders}

    def act(self, order_id: int, action: PartyAction, note: Note) -> None:
        path, body = {
            "cancel": ("cancel", None),
            "dispute": ("dispute", None),
            "rule": ("ruling", {"buyer_amount": str(action.buyer_amount)}),
            "expire": ("expire", None),
        }[action.kind]
        self._call("POST", f"/orders/{order_id}/{path}", action.party, body)
        note(action.describe(order_id))

    def evidence_settled(self, order_id: int, published: int) -> bool:
        devices = self._call("GET", f"/orders/{order_id}/devices", "buyer")["data"]
        if sum(int(d["reading_count"]) for d in devices) < published:
            return False
        kinds = "&".join(f"kind={k}" for k in sorted(BREACH_ALERTS))
        alerts = self._call("GET", f"/alerts?order_id={order_id}&{kinds}&limit=1", "buyer")
        if not alerts["count"]:
            return True
        return bool(self._call("GET", f"/orders/{order_id}", "buyer")["breached"])

    def diagnose(self, order_id: int) -> str:
        try:
            body = self._call("GET", f"/orders/{order_id}", "buyer")
            devices = self._call("GET", f"/orders/{order_id}/devices", "buyer")["data"]
            alerts = self._call("GET", f"/orders/{order_id}/alerts?limit=1", "buyer")["data"]
        except ReplayError as exc:
            return f"the API does not answer: {exc}"
        parts = [
            f"chain: {body['state']}, "
            f"{'breached' if body['breached'] else 'no breach proven'}, "
            + (f"delivered at {body['delivered_at']}" if body["delivered_at"] else "not delivered"),
            f"oracle: {sum(int(d['reading_count']) for d in devices)} reading(s) stored from "
            f"{len(devices)} bound device(s)"
            + (
                f", {missing} missing (seq gaps)"
                if (missing := sum(int(d["missing_readings"]) for d in devices))
                else ""
            ),
        ]
        if alerts:
            parts.append(f"last alert: {alerts[0]['kind']}: {alerts[0]['message']}")
        try:
            refused = self._call("GET", f"/orders/{order_id}/refusals", "buyer")["data"]
        except ReplayError:
            refused = None  # no oracle in the API's process
        if refused is not None:
            parts.append(describe_refusals([(r["by_reason"], r["last_message"]) for r in refused]))
        return "; ".join(parts)

    def ship(self, fleet: Fleet, note: Note, names: Sequence[str]) -> None:
        """Ship the named orders (as the supplier) with their certified devices, concurrently.

        A rogue device (its key the supplier's) is offered first, with a certificate
        signed by a key the supplier holds: the API must refuse it by name."""
        for name in names:
            for rogue in fleet.rogues_of(name):
                own = fleet.self_certificate(rogue, rogue.private_key)
                certs = [*fleet.certificates_of(name), own]
                body = {"certificates": [c.as_json() for c in certs]}
                try:
                    self._call("POST", f"/orders/{fleet.order_ids[name]}/ship", "supplier", body)
                except ReplayError as exc:
                    if UNCERTIFIED not in str(exc):
                        raise
                    note(f"order {fleet.order_ids[name]}: rogue device {rogue.address} refused")
                else:
                    raise ReplayError(f"order {fleet.order_ids[name]}: the API bound a rogue")
        orders = [(fleet.order_ids[n], fleet.certificates_of(n)) for n in names]
        self._parallel(
            [
                partial(
                    self._call,
                    "POST",
                    f"/orders/{oid}/ship",
                    "supplier",
                    {"certificates": [c.as_json() for c in certs]},
                )
                for oid, certs in orders
            ]
        )
        for oid, certs in orders:
            note(f"order {oid}: shipped over the API with {len(certs)} certified device(s)")

    def outcome(self, order_id: int) -> Outcome:
        body = self._call("GET", f"/orders/{order_id}", "buyer")
        split = body.get("settlement") or {}

        def _int(v: Any) -> int | None:
            return None if v is None else int(v)

        return Outcome(
            order_id=order_id,
            state=str(body["state"]),
            buyer_amount=_int(split.get("buyer_amount")),
            supplier_amount=_int(split.get("supplier_amount")),
            breached=bool(body["breached"]),
            delivered_at=_int(body.get("delivered_at")),
            deadline=int(body["terms"]["delivery_deadline"]),
        )


# ---------------------------------------------------------------------------
# the in-process stack
# ---------------------------------------------------------------------------


@dataclass
class LocalStack:
    settings: Settings
    driver: DirectDriver
    #: The wired chain, database, indexer and oracle (backend.runtime).
    runtime: Runtime
    database_url: str
    mqtt_url: str
    embedded: dict[str, bool]


@contextlib.contextmanager
def local_stack(
    settings: Settings, *, note: Note = lambda _m: None, oracle_client_id: str | None = None
) -> Iterator[LocalStack]:
    """Chain, broker, database and the oracle in this process; stops all on exit.

    The parts that are the local stack's own (the embedded chain's deployment, the
    in-process broker, a SQLite file in a temp dir, the oracle's session and faster
    polls) are made here; :func:`backend.runtime.build` wires the rest.
    """
    from backend.oracle.service import OracleConfig
    from backend.runtime import build

    cleanup: list[Callable[[], None]] = []
    workdir = Path(tempfile.mkdtemp(prefix="trustship-"))
    cleanup.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
    resources = contextlib.ExitStack()
    try:
        chain = connect(settings)
        embedded_chain = chain.kind == "eth-tester"
        deployment = None
        if not embedded_chain and settings.DEPLOYMENT_FILE.exists():
            try:
                deployment = load_deployment(settings.DEPLOYMENT_FILE, chain)
                note(f"using the deployment in {settings.DEPLOYMENT_FILE}")
            except TrustShipError as exc:
                note(f"not using {settings.DEPLOYMENT_FILE}: {exc}")
        if deployment is None:
            deployment = deploy_all(
                chain, write_to=None if embedded_chain else settings.DEPLOYMENT_FILE
            )
            where = "in-process eth-tester" if embedded_chain else chain.rpc_url
            note(f"contracts deployed on {where} (chain id {chain.chain_id})")

        mqtt_url = settings.MQTT_URL
        if not mqtt_url:
            from iot_simulator.broker import start_embedded_broker

            mqtt_url, stop_broker = start_embedded_broker()
            cleanup.append(stop_broker)
            note(f"embedded MQTT broker at {mqtt_url}")

        database_url = settings.DATABASE_URL
        if not database_url:
            if not embedded_chain:
                raise ConfigurationError(
                    "RPC_URL is set but DATABASE_URL is not: the oracle's database must outlive "
                    "this run like the chain does; set DATABASE_URL (sqlite:///path or PostgreSQL)"
                )
            database_url = f"sqlite:///{workdir / 'trustship.db'}"

        # faster polls and batches than a long-running oracle (unless the settings say)
        config = OracleConfig.from_settings(
            settings, indexer_poll_secs=0.2, outbox_poll_secs=0.1, commit_max_age_secs=2.0
        )
        config.subscriber = dataclasses.replace(
            config.subscriber,
            url=mqtt_url,
            client_id=oracle_client_id or f"trustship-oracle-{os.getpid()}",
            # a run of demo/replay is ephemeral: its session must not outlive it on the broker
            session_expiry_secs=300,
        )
        cleanup.append(resources.close)  # the database engine
        runtime = build(
            settings,
            resources,
            chain=chain,
            deployment=deployment,
            database_url=database_url,
            oracle_config=config,
        )
        runtime.start()
        cleanup.append(runtime.stop)
        driver = DirectDriver(
            chain,
            deployment,
            mqtt_url,
            contracts=runtime.contracts,
            oracle_clock=runtime.oracle.ingestor.clock,
            sessions=runtime.sessions,
            refusals=runtime.oracle.ingestor.refusals.for_order,
        )
        note("oracle running: MQTT ingest, rules, outbox, chain indexer")
        yield LocalStack(
            settings=settings,
            driver=driver,
            runtime=runtime,
            database_url=database_url,
            mqtt_url=mqtt_url,
            embedded={
                "chain": embedded_chain,
                "broker": not settings.MQTT_URL,
                "database": not settings.DATABASE_URL,
            },
        )
    finally:
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception:  # pragma: no cover - best effort on the way out
                log.exception("cleanup step failed")


def wait_until_final(
    driver: Driver, order_ids: list[int], timeout: float, poll: float = 0.5
) -> dict[int, Outcome]:
    """Poll until every order is in a terminal state or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    outcomes: dict[int, Outcome] = {}
    while True:
        pending = [oid for oid in order_ids if not (oid in outcomes and outcomes[oid].final)]
        for oid in pending:
            outcomes[oid] = driver.outcome(oid)
        if all(outcomes[oid].final for oid in order_ids) or time.monotonic() > deadline:
            return outcomes
        time.sleep(poll)
