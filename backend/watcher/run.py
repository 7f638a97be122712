"""Building a watcher from the command line's options (``trustship watch``)."""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from backend.chain.connection import Chain, connect
from backend.chain.contracts import Contracts, Escrow, PurchaseOrders, QualityVerification
from backend.core.errors import ConfigurationError
from backend.telemetry.address import parse_address
from backend.telemetry.broker import BrokerURL
from backend.watcher.chain_view import ChainView
from backend.watcher.http import serve_in_background
from backend.watcher.service import Subscriber, Watcher, WatcherConfig, run_watcher
from backend.watcher.store import WatcherStore

log = logging.getLogger(__name__)


@dataclass
class WatchOptions:
    order_ids: list[int]
    rpc_url: str
    deployment_file: Path
    private_key: str
    db: Path
    #: mqtt://host:port (credentials come from ``credentials`` or ``username``/``password``)
    mqtt_url: str
    credentials: list[Path] = field(default_factory=list)
    username: str | None = None
    password: str | None = None
    grace_secs: float = 300.0
    serve_port: int | None = None
    serve_host: str = "127.0.0.1"


def read_credentials(path: Path) -> tuple[int, str, str]:
    """(order id, username, password) from the API's ``POST /account/mqtt-credentials``
    answer saved to a file."""
    try:
        body = json.loads(path.read_text())
        return int(body["order_id"]), str(body["username"]), str(body["password"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"{path}: not the API's MQTT credentials answer ({type(exc).__name__}: {exc})"
        ) from None


def contracts_of(chain: Chain, path: Path) -> tuple[Contracts, int]:
    """The contracts and the block to read events from, given PurchaseOrders' address in
    a deployment manifest or the API's ``GET /deployment`` answer: QualityVerification
    and Escrow are what PurchaseOrders itself names on chain (it is fixed at deployment),
    so a manifest can point the watcher at nothing the orders do not use."""
    try:
        body = json.loads(path.read_text())
        names = body.get("addresses") or body["contracts"]
        po_address = parse_address(names["PurchaseOrders"], "PurchaseOrders")
        start = int(body.get("block_number", body.get("start_block", 0)))
        chain_id = int(body["chain_id"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(
            f"{path}: not a deployment manifest nor GET /deployment's answer "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if chain_id != chain.chain_id:
        raise ConfigurationError(f"{path} is for chain {chain_id}, the RPC serves {chain.chain_id}")
    if not chain.code_at(po_address):
        raise ConfigurationError(f"no contract at PurchaseOrders' address {po_address}")
    po = PurchaseOrders(chain, po_address)
    qv = QualityVerification(chain, po.quality_verification())
    escrow = Escrow(chain, po.escrow())
    for name, wrapper in (("QualityVerification", qv), ("Escrow", escrow)):
        listed = names.get(name)
        if listed is not None and parse_address(listed, name) != wrapper.address:
            raise ConfigurationError(
                f"{path} names {listed} as {name}; PurchaseOrders uses {wrapper.address}"
            )
    return Contracts(purchase_orders=po, quality=qv, escrow=escrow), start


def account_of(private_key: str) -> LocalAccount:
    try:
        account: LocalAccount = Account.from_key(private_key.strip())
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"the watcher's private key is not a key: {exc}") from None
    return account


def subscribers(
    options: WatchOptions, inbox: queue.Queue[tuple[str, bytes, float]]
) -> list[Subscriber]:
    """One MQTT connection per credentials file (each login reads one order), or one for
    every order with ``username``/``password``."""
    base = BrokerURL.parse(options.mqtt_url).without_credentials()
    out: list[Subscriber] = []
    covered: set[int] = set()
    for path in options.credentials:
        order_id, user, password = read_credentials(path)
        if order_id not in options.order_ids:
            raise ConfigurationError(f"{path} is for order {order_id}, which is not watched")
        url = BrokerURL(
            base.host, base.port, user, password, base.tls, base.ca_certs, base.insecure
        )
        out.append(Subscriber(url, [order_id], inbox))
        covered.add(order_id)
    rest = [o for o in options.order_ids if o not in covered]
    if rest:
        if options.username is None:
            raise ConfigurationError(
                f"no MQTT credentials for order(s) {rest}: pass --credentials (the API's "
                "answer) or --mqtt-username/--mqtt-password"
            )
        url = BrokerURL(
            base.host, base.port, options.username, options.password, base.tls,
            base.ca_certs, base.insecure,
        )  # fmt: skip
        out.append(Subscriber(url, rest, inbox))
    return out


def build(
    options: WatchOptions,
) -> tuple[Watcher, list[Subscriber], queue.Queue[tuple[str, bytes, float]]]:
    if not options.order_ids:
        raise ConfigurationError("name at least one order to watch (--order)")
    chain = connect(rpc_url=options.rpc_url)
    contracts, start_block = contracts_of(chain, options.deployment_file)
    account = account_of(options.private_key)
    store = WatcherStore(options.db)
    watcher = Watcher(
        ChainView(chain, contracts, from_block=start_block),
        contracts,
        account,
        store,
        WatcherConfig(tuple(options.order_ids), grace_secs=options.grace_secs),
    )
    inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
    return watcher, subscribers(options, inbox), inbox


def watch(options: WatchOptions, stop: threading.Event | None = None) -> None:
    watcher, subs, inbox = build(options)
    log.info(
        "watcher for order(s) %s as %s; record in %s",
        options.order_ids,
        watcher.account.address,
        options.db,
    )
    if options.serve_port is not None:
        server = serve_in_background(
            watcher,
            options.serve_host,
            options.serve_port,
            ready=lambda: all(s.subscribed.is_set() and not s.denied for s in subs),
        )
        log.info("serving the record on http://%s:%d", options.serve_host, server.server_port)
    run_watcher(watcher, subs, inbox, stop or threading.Event())
