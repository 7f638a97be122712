"""The chain indexer: contract events → the database, so the API answers from it.

It reads ``eth_getLogs`` over the three contracts in pages of blocks, from the
deployment block (or where ``indexer_cursor`` says it stopped), up to the head
minus ``confirmations``. For each page, in one transaction: the decoded events go
to ``chain_events`` (idempotent on (block, log index)), every order an event
touches is re-read with ``getOrder`` at the page's last block and upserted into
``orders`` (the terms from ``OrderCreated``: the contract keeps only their digest),
``DeviceBound`` fills ``devices`` (with the certificate, decoded from the
``shipOrder`` transaction), ``DeviceRevoked`` marks the issuer's bindings of the
device revoked from that time, ``FleetRootCommitted`` marks the fleet batch done
with its place in the committer's log, a delivery with a dispute window queues the
``settle`` action, and the cursor advances. A crash mid-page redoes the page; nothing doubles.

Before each pass the :class:`~backend.chain.guard.ChainGuard` checks the deployment
is still on the chain (a reset node stops the indexer for good:
:class:`~backend.chain.guard.ChainReset`),
and the indexer compares the newest block hash it remembers with the chain's: when a
reorganisation replaced blocks it rewinds to the newest remembered block the chain
still has (its events, block hashes and device bindings after that block are
forgotten, the orders indexed from them read again) and reads forward from there.
``confirmations`` (0 on dev chains) holds back the newest blocks for networks that
reorganise often.

The indexer is a stage of its own: :class:`IndexerThread` polls it, and ingest,
which may see a device publish before its binding is indexed, asks it to
:meth:`~ChainIndexer.catch_up` (the :class:`backend.oracle.ingest.ChainFollower`
interface). What it indexed that others keep in memory (device bindings, order
terms, a rewind) it announces through the ``on_*`` callbacks it is built with.
:meth:`~ChainIndexer.status` says how far it got, for ``/health``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from eth_typing import HexStr
from eth_utils import to_checksum_address
from sqlalchemy import Engine

from backend.chain.connection import Chain
from backend.chain.contracts import Contracts, Order, Terms, terms_from_abi
from backend.chain.decoding import DecodedEvent
from backend.chain.errors import ContractRevert
from backend.chain.guard import ChainGuard, ChainReset
from backend.domain.actions import Settle
from backend.indexer.metrics import IndexerMetrics
from backend.store import repositories as repo
from backend.store.db import session_factory
from backend.store.locks import INDEXER, lock_for_transaction
from backend.telemetry.certificates import DeviceCertificate, SignedCertificate

log = logging.getLogger(__name__)

_JSON_SAFE_INT = 2**53


def json_safe(value: Any) -> Any:
    """Event arguments as JSON: bytes as 0x-hex, integers beyond 2**53 as strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) >= _JSON_SAFE_INT else value
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


#: States that end with the whole deposit back to the buyer (if the order was funded).
REFUNDED = ("CANCELLED", "EXPIRED")
#: States whose ``Order.timestamp`` is the delivery time.
AFTER_DELIVERY = ("DELIVERED", "DISPUTED", "RESOLVED")


def order_values(
    order: Order, terms: Terms, block: int, known: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``orders`` row of an order: its terms (from ``OrderCreated``: the contract keeps
    only their digest), its state and flags, and the phase times: ``known`` holds what
    earlier events said (created, shipped, delivered, disputed), ``order.timestamp``
    the time of the phase it is in now."""
    if order.terms_digest != terms.digest():
        raise ValueError(f"order {order.order_id}: the indexed terms do not hash to its digest")
    times = {
        k: (known or {}).get(k) for k in ("created_at", "shipped_at", "delivered_at", "disputed_at")
    }
    state = order.state.name
    if state in ("CREATED", "ACCEPTED", "FUNDED"):
        times["created_at"] = order.timestamp
    elif state == "SHIPPED":
        times["shipped_at"] = order.timestamp
    elif state in AFTER_DELIVERY:
        times["delivered_at"] = order.timestamp
    refund: dict[str, Any] = {}
    if state in REFUNDED:
        refund = {"buyer_amount": terms.price if order.funded else 0, "supplier_amount": 0}
    return {
        **refund,
        "id": order.order_id,
        "state": order.state.label,
        **terms.values(),
        "funded": order.funded,
        "breached": order.breached,
        **{k: v or None for k, v in times.items()},
        "updated_block": block,
    }


def certificate_from_abi(value: Any) -> SignedCertificate:
    """A ``SignedCertificate`` from decoded calldata (tuples or web3's dicts)."""
    cert, signature = value.values() if isinstance(value, dict) else value
    fields = tuple(cert.values()) if isinstance(cert, dict) else tuple(cert)
    order_id, device, issuer, valid_from, valid_until = fields
    return SignedCertificate(
        DeviceCertificate(
            order_id=int(order_id),
            device=to_checksum_address(device),
            issuer=to_checksum_address(issuer),
            valid_from=int(valid_from),
            valid_until=int(valid_until),
        ),
        bytes(signature),
    )


def binding_row(
    order_id: int,
    device: str,
    event: DecodedEvent,
    shipped_at: int | None,
    cert: SignedCertificate | None,
) -> dict[str, Any]:
    """A ``devices`` row from ``DeviceBound`` (and the certificate from the shipment)."""
    row: dict[str, Any] = {
        "order_id": order_id,
        "device": device,
        "bound_block": event.block_number,
        "bound_at": shipped_at,
        "issuer": str(event.args["issuer"]),
    }
    if cert is not None:
        row.update(
            valid_from=cert.certificate.valid_from,
            valid_until=cert.certificate.valid_until,
            certificate_signature=cert.signature,
        )
    return row


@dataclass(frozen=True)
class IndexerStatus:
    """How far the indexer got (:meth:`ChainIndexer.status`)."""

    #: The newest block indexed in this process (None before the first pass).
    block: int | None
    #: That block's time.
    chain_time: int | None
    #: Passes completed.
    passes: int
    #: Why the last pass failed (None when it succeeded).
    error: str | None
    #: Reorganisations it rewound.
    rewinds: int


class ChainIndexer:
    """Follows the three contracts' events into the database (module docstring)."""

    def __init__(
        self,
        engine: Engine,
        chain: Chain,
        contracts: Contracts,
        *,
        start_block: int,
        name: str = "chain",
        page_size: int = 2000,
        confirmations: int = 0,
        metrics: IndexerMetrics | None = None,
        on_bindings: Callable[[Iterable[tuple[int, str]]], None] | None = None,
        on_orders: Callable[[Iterable[int]], None] | None = None,
        on_rewind: Callable[[int], None] | None = None,
        guard: ChainGuard | None = None,
    ) -> None:
        self.sessions = session_factory(engine)
        self.chain = chain
        self.contracts = contracts
        self.start_block = start_block
        self.name = name
        self.page_size = page_size
        self.confirmations = confirmations
        self.metrics = metrics if metrics is not None else IndexerMetrics()
        self.on_bindings = on_bindings
        self.on_orders = on_orders
        self.on_rewind = on_rewind
        self.guard = guard
        #: Which deployment the database must be indexing (see :meth:`_check_database`).
        self.deployment_id = (
            f"{chain.chain_id}:{contracts.purchase_orders.address}:"
            f"{guard.deployment.block_hash or guard.deployment.block_number}"
            if guard is not None
            else None
        )
        self._database_checked = False
        #: Orders to read again at the next page (their state came from replaced blocks).
        self._stale_orders: set[int] = set()
        self.rewinds = 0
        self.addresses = [
            contracts.purchase_orders.address,
            contracts.quality.address,
            contracts.escrow.address,
        ]
        #: The newest chain time seen (the ingest clock takes the later of this and the wall clock).
        self.chain_time: int | None = None
        #: The newest block a pass read up to (head minus confirmations).
        self.indexed_block: int | None = None
        self.passes = 0
        self._error: str | None = None
        self._run_lock = threading.Lock()

    def _rpc(self, what: str, fn: Callable[[], Any]) -> Any:
        return self.chain._rpc(what, fn)

    def run_once(self) -> int:
        """Index everything up to the head; returns the number of events stored.

        Thread-safe: the indexer thread polls it while ingest may ask it to
        :meth:`catch_up`.
        """
        with self._run_lock:
            try:
                stored = self._run_once()
            except Exception as exc:
                self._error = f"{type(exc).__name__}: {exc}"[:300]
                raise
            self._error = None
            self.passes += 1
            return stored

    def catch_up(self) -> bool:
        """Index up to the head now; True when this read blocks not read before.

        The :class:`backend.oracle.ingest.ChainFollower` interface: ingest calls it
        before refusing a reading whose device binding (or chain time) it may simply
        not have seen yet.
        """
        before = self.indexed_block
        self.run_once()
        return self.indexed_block is not None and (before is None or self.indexed_block > before)

    def status(self) -> IndexerStatus:
        return IndexerStatus(
            block=self.indexed_block,
            chain_time=self.chain_time,
            passes=self.passes,
            error=self._error,
            rewinds=self.rewinds,
        )

    def _run_once(self) -> int:
        if self.guard is not None:
            self.guard.check()
            self.guard.require_usable()
            self._check_database()
        w3 = self.chain.w3
        head_block = self._rpc("eth_getBlockByNumber", lambda: w3.eth.get_block("latest"))
        self.chain_time = int(head_block["timestamp"])
        head = int(head_block["number"]) - self.confirmations
        with self.sessions() as s:
            cursor = repo.get_cursor(s, self.name)
        if cursor is not None:
            fork = self._fork_point(head)
            if fork is not None:
                cursor = self._rewind(fork)
        start = self.start_block if cursor is None else cursor + 1
        stored = 0
        while start <= head:
            end = min(head, start + self.page_size - 1)
            stored += self._page(start, end)
            start = end + 1
        if start > head and self._stale_orders:  # rewound, and no new block to read yet
            self._reread_stale(head)
        self.indexed_block = head
        return stored

    def _check_database(self) -> None:
        """The database must index this deployment: an old chain's rows would be mixed in."""
        if self._database_checked or self.guard is None:
            return
        with self.sessions() as s:
            recorded = repo.get_cursor_deployment(s, self.name)
            cursor = repo.get_cursor(s, self.name)
        if recorded is not None and recorded != self.deployment_id:
            self.guard.declare_reset(
                f"the database indexes deployment {recorded}, not this one "
                f"({self.deployment_id}): point DATABASE_URL at a fresh database"
            )
            self.guard.require_usable()
        if cursor is not None and recorded is None:
            with self.sessions() as s, s.begin():
                repo.set_cursor(s, self.name, cursor, deployment=self.deployment_id)
        self._database_checked = True

    def _fork_point(self, head: int) -> int | None:
        """None when the newest remembered block is still on the chain; else the newest
        remembered block that is (where to rewind to), or the block before the start."""
        with self.sessions() as s:
            known = repo.block_hashes(s, self.name)
        if not known:
            return None
        number, h = known[0]
        if number <= head and self.chain.block_hash(number) == "0x" + h.hex():
            return None
        for number, h in known[1:]:
            if number <= head and self.chain.block_hash(number) == "0x" + h.hex():
                return number
        return self.start_block - 1

    def _rewind(self, fork: int) -> int:
        with self.sessions() as s, s.begin():
            lock_for_transaction(s, INDEXER, [0])
            cursor = repo.get_cursor(s, self.name)
            stale = repo.rewind_index(s, self.name, fork)
        self._stale_orders.update(stale)
        self.rewinds += 1
        self.metrics.indexer_rewinds.inc()
        log.warning(
            "chain reorganisation: blocks after %d were replaced (indexed up to %s); "
            "rewinding the index to %d and reading %d order(s) again",
            fork, cursor, fork, len(stale),
        )  # fmt: skip
        if self.on_rewind is not None:
            self.on_rewind(fork)
        return fork

    def _reread_stale(self, block: int) -> None:
        with self.sessions() as s, s.begin():
            self._upsert_orders(s, sorted(self._stale_orders), [], block)
        self._stale_orders.clear()

    def _read_orders(self, order_ids: Iterable[int], block: int) -> dict[int, Order | None]:
        """``getOrder`` at ``block``; None for an order the chain does not have (it was
        created in blocks a reorganisation removed)."""
        out: dict[int, Order | None] = {}
        for o in order_ids:
            try:
                out[o] = self.contracts.purchase_orders.get_order(o, block=block)
            except ContractRevert as exc:
                if exc.name != "PurchaseOrdersUnknownOrder":
                    raise
                out[o] = None
        return out

    def _terms(self, s: Any, order_id: int, events: list[DecodedEvent]) -> Terms:
        """An order's terms: from its ``OrderCreated`` in this page, else the stored row,
        else the event on the chain (the wrapper's look-up)."""
        created = [
            e for e in events if e.name == "OrderCreated" and int(e.args["orderId"]) == order_id
        ]
        row = None if created else repo.get_order(s, order_id)
        if created:
            terms = terms_from_abi(tuple(created[-1].args["terms"]))
        elif row is not None:
            terms = Terms.of(row)
        else:
            terms = self.contracts.purchase_orders.terms_of(order_id)
        self.contracts.purchase_orders.remember_terms(order_id, terms)
        return terms

    @staticmethod
    def _known_times(
        s: Any, order_id: int, events: list[DecodedEvent], times: dict[int, int]
    ) -> dict[str, Any]:
        row = repo.get_order(s, order_id)
        known: dict[str, Any] = {}
        if row is not None:
            known = {
                "created_at": row.created_at,
                "shipped_at": row.shipped_at,
                "delivered_at": row.delivered_at,
                "disputed_at": row.disputed_at,
            }
        for e in events:
            if e.args.get("orderId") != order_id:
                continue
            if e.name == "OrderCreated":
                known["created_at"] = times.get(e.block_number)
            elif e.name == "OrderShipped":
                known["shipped_at"] = int(e.args["shippedAt"])
            elif e.name == "OrderDelivered":
                known["delivered_at"] = int(e.args["deliveredAt"])
            elif e.name == "DisputeOpened":
                known["disputed_at"] = times.get(e.block_number)
        return known

    def _upsert_orders(
        self,
        s: Any,
        order_ids: list[int],
        events: list[DecodedEvent],
        block: int,
        times: dict[int, int] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """Upsert the orders' rows; returns each order's new values."""
        orders: dict[int, dict[str, Any]] = {}
        for order_id, order in self._read_orders(order_ids, block).items():
            if order is None:
                repo.delete_order(s, order_id)
                continue
            terms = self._terms(s, order_id, events)
            known = self._known_times(s, order_id, events, times or {})
            values = order_values(order, terms, block, known)
            values.update(self._settlement_fields(order_id, events))
            repo.upsert_order(s, values)
            orders[order_id] = values
        return orders

    def _certificates(self, tx_hash: str) -> dict[str, SignedCertificate]:
        """The certificates a ``shipOrder`` transaction carried, by device (empty when the
        transaction is not a direct ``shipOrder`` call, e.g. from a contract wallet)."""
        w3 = self.chain.w3
        tx = self._rpc("eth_getTransactionByHash", partial(w3.eth.get_transaction, HexStr(tx_hash)))
        po = self.contracts.purchase_orders
        try:
            fn, params = po.contract.decode_function_input(tx["input"])
        except ValueError:
            return {}
        if fn.fn_name != "shipOrder":
            return {}
        return {c.device: c for c in (certificate_from_abi(v) for v in params["certificates"])}

    def _page(self, start: int, end: int) -> int:
        w3 = self.chain.w3
        params = {"fromBlock": start, "toBlock": end, "address": self.addresses}
        logs = self._rpc("eth_getLogs", lambda: w3.eth.get_logs(params))  # type: ignore[arg-type]
        events = self.chain.registry.decode_logs(logs)
        times: dict[int, int] = {}
        hashes: dict[int, bytes] = {}
        for number in sorted({e.block_number for e in events} | {end}):
            block = self._rpc("eth_getBlockByNumber", partial(w3.eth.get_block, number))
            times[number] = int(block["timestamp"])
            hashes[number] = bytes(block["hash"])
        touched = sorted(
            {int(e.args["orderId"]) for e in events if "orderId" in e.args} | self._stale_orders
        )
        with self.sessions() as s, s.begin():
            # several oracles: one writes a page at a time; a page another process has
            # indexed meanwhile is not written again (what it says still reaches the caches)
            lock_for_transaction(s, INDEXER, [0])
            done = repo.get_cursor(s, self.name)
            if done is not None and done >= end:
                return self._announce(start, end, [], events, [])
            repo.insert_events(s, [self._event_row(e, times) for e in events])
            orders = self._upsert_orders(s, touched, events, end, times)
            certificates: dict[str, dict[str, SignedCertificate]] = {}
            rows: list[dict[str, Any]] = []
            revocations: list[DecodedEvent] = []
            for e in events:
                if e.name == "DeviceBound":
                    o, d = int(e.args["orderId"]), str(e.args["device"])
                    if e.tx_hash not in certificates:
                        certificates[e.tx_hash] = self._certificates(e.tx_hash)
                    cert = certificates[e.tx_hash].get(d)
                    if o in orders:
                        rows.append(binding_row(o, d, e, orders[o].get("shipped_at"), cert))
                elif e.name == "DeviceRevoked":
                    revocations.append(e)
                elif e.name == "FleetRootCommitted":
                    repo.set_commitment_status(
                        s,
                        int(e.args["batchSeq"]),
                        "done",
                        bytes.fromhex(e.tx_hash.removeprefix("0x")),
                        committer=str(e.args["committer"]),
                        log_index=int(e.args["logIndex"]),
                    )
                elif e.name == "OrderDelivered":
                    self._queue_settle(s, orders.get(int(e.args["orderId"])))
            repo.bind_devices(s, rows)
            for e in revocations:  # after the page's bindings: they may name the same device
                repo.record_revocation(
                    s,
                    issuer=str(e.args["issuer"]),
                    device=str(e.args["device"]),
                    revoked_at=int(e.args["revokedAt"]),
                    block=e.block_number,
                )
            repo.record_block_hashes(s, self.name, hashes)
            repo.set_cursor(s, self.name, end, deployment=self.deployment_id)
        self._stale_orders.clear()
        for e in events:
            self.metrics.indexer_events.labels(event=e.name).inc()
        return self._announce(start, end, events, events, touched)

    def _announce(
        self,
        start: int,
        end: int,
        stored: list[DecodedEvent],
        seen: list[DecodedEvent],
        touched: list[int],
    ) -> int:
        """Tell the caches what a page holds (``seen``: also a page another oracle
        process wrote); returns how many events this process stored."""
        self.metrics.indexer_block.set(end)
        bound = [(int(e.args["orderId"]), str(e.args["device"])) for e in seen
                 if e.name == "DeviceBound"]  # fmt: skip
        if bound and self.on_bindings is not None:
            self.on_bindings(bound)
        touched = sorted(
            set(touched) | {int(e.args["orderId"]) for e in seen if "orderId" in e.args}
        )
        if touched and self.on_orders is not None:
            self.on_orders(touched)
        if stored:
            log.info("indexed %d events in blocks %d–%d", len(stored), start, end)
        return len(stored)

    @staticmethod
    def _event_row(e: DecodedEvent, times: dict[int, int]) -> dict[str, Any]:
        order_id = e.args.get("orderId")
        return {
            "block_number": e.block_number,
            "block_timestamp": times.get(e.block_number),
            "tx_hash": bytes.fromhex(e.tx_hash.removeprefix("0x")),
            "log_index": e.log_index,
            "contract": e.contract or "",
            "event": e.name,
            "order_id": int(order_id) if order_id is not None else None,
            "args": json_safe(e.args),
        }

    @staticmethod
    def _settlement_fields(order_id: int, events: list[DecodedEvent]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in events:
            if e.args.get("orderId") != order_id:
                continue
            if e.name in ("OrderSettled", "DisputeResolved"):
                out["buyer_amount"] = int(e.args["buyerAmount"])
                out["supplier_amount"] = int(e.args["supplierAmount"])
            elif e.name == "OrderDelivered":
                out["late_seconds"] = int(e.args["lateSeconds"])
                out["delivery_confirmed_by"] = str(e.args["confirmedBy"])
        return out

    def _queue_settle(self, session: Any, order: dict[str, Any] | None) -> None:
        """With a dispute window, someone must call settleOrder once it closes: the oracle does."""
        if order is None or order["dispute_window_secs"] == 0 or order["state"] != "Delivered":
            return
        closes = int(order["delivered_at"] or 0) + int(order["dispute_window_secs"])
        wait = max(0, closes - (self.chain_time or 0)) + 1
        repo.enqueue(
            session,
            Settle(order_id=int(order["id"]), dispute_window_closes_at=closes),
            not_before=time.time() + wait,
        )


class IndexerThread(threading.Thread):
    """Runs :meth:`ChainIndexer.run_once` every ``poll_secs``."""

    def __init__(self, indexer: ChainIndexer, poll_secs: float = 1.0) -> None:
        super().__init__(name="trustship-indexer", daemon=True)
        self.indexer = indexer
        self.poll_secs = poll_secs
        self._stop_event = threading.Event()
        self.passes = 0

    def stop(self, timeout: float = 30.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.indexer.run_once()
            except ChainReset:
                pass  # said once by the guard; /health reports it
            except Exception:
                log.exception("indexing failed; trying again in %.1f s", self.poll_secs)
            self.passes += 1
            self._stop_event.wait(self.poll_secs)
