"""Seed an API test database directly through the store's models.

The rows look like what the indexer and the oracle write: orders of the dev
parties, signed readings (real EIP-712 signatures), a Merkle commitment over
them (a fleet root), device bindings with their certificates, contract events and alerts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.api.parties import PartyRegistry
from backend.chain.testing import Stack, certify, default_terms, device_key, issuer_key
from backend.indexer import ChainIndexer
from backend.indexer.metrics import IndexerMetrics
from backend.store import repositories as repo
from backend.store.models import (
    AlertRow,
    ChainEventRow,
    CommitmentRow,
    DeviceRow,
    OrderRow,
    ReadingRow,
)
from backend.telemetry import (
    Domain,
    Reading,
    SignedReading,
    device_address,
    reading_digest,
    sign_reading,
)
from backend.telemetry.fleet import fleet_tree

DOMAIN = Domain(chain_id=31337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
ETHER = 10**18
T0 = 1_800_000_000


def order_values(
    order_id: int, buyer: str, supplier: str, arbiter: str, **kw: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": order_id,
        "state": "Shipped",
        # the chain layer's test terms, as the indexer stores them
        **asdict(default_terms(T0, arbiter, buyer=buyer, supplier=supplier)),
        "funded": True,
        "breached": False,
        "created_at": T0,
        "shipped_at": T0 + 60,
        "updated_block": 10,
    }
    values.update(kw)
    return values


def reading_row(
    r: Reading,
    device: str,
    key: str,
    domain: Domain,
    *,
    received_at: float,
    batch_seq: int | None,
) -> ReadingRow:
    """The row ingest stores for ``r``, signed with the device's ``key``."""
    signed = SignedReading(r, device, sign_reading(r, domain, key))
    columns = repo.reading_row(signed, reading_digest(r, domain), received_at)
    return ReadingRow(**columns, batch_seq=batch_seq)


def indexed(engine: Engine, stack: Stack) -> ChainIndexer:
    """An indexer of ``stack``'s contracts into ``engine``, caught up with the chain."""
    indexer = ChainIndexer(
        engine,
        stack.chain,
        stack.contracts,
        start_block=stack.deployment.block_number,
        metrics=IndexerMetrics(),
    )
    indexer.run_once()
    return indexer


#: The oracle whose fleet log holds the seeded root.
COMMITTER = "0x" + "0C" * 20


def commitment_row(
    batch: list[ReadingRow], now: float, *, committer: str = COMMITTER
) -> CommitmentRow:
    """Fleet batch 1 over the (flushed) rows of ``batch``, committed on chain (entry 0 of
    ``committer``'s fleet log, :data:`COMMITTER` unless named)."""
    return CommitmentRow(
        batch_seq=1,
        committer=committer,
        log_index=0,
        root=fleet_tree([(r.order_id, r.device, r.digest) for r in batch]).root,
        reading_count=len(batch),
        first_reading_id=batch[0].id,
        last_reading_id=batch[-1].id,
        reading_ids=[r.id for r in batch],
        tx_hash=b"\x11" * 32,
        status="done",
        created_at=now,
        updated_at=now,
    )


@dataclass
class Seeded:
    """What :func:`seed` wrote (for assertions)."""

    own_order: int  # buyer / supplier / arbiter are its parties
    other_order: int  # the stranger's order with someone else
    device: str
    device_key: str
    readings: list[Reading] = field(default_factory=list)
    committed: int = 0  # how many readings are in batch 1


def seed(
    factory: sessionmaker[Session],
    parties: PartyRegistry,
    *,
    readings: int = 12,
    committed: int = 8,
) -> Seeded:
    buyer = parties.by_name("buyer").address
    supplier = parties.by_name("supplier").address
    arbiter = parties.by_name("arbiter").address
    stranger = parties.by_name("stranger").address
    key = device_key(1)
    dev = device_address(key)
    out = Seeded(own_order=1, other_order=2, device=dev, device_key=key, committed=committed)
    now = time.time()
    with factory.begin() as s:
        s.add(OrderRow(**order_values(1, buyer, supplier, arbiter)))
        # The stranger's order, with itself as supplier and arbiter too.
        s.add(OrderRow(**order_values(2, stranger, stranger, stranger, state="Created")))
        cert = certify(DOMAIN, 1, dev, issuer_key(1))
        s.add(
            DeviceRow(
                order_id=1,
                device=dev,
                bound_block=9,
                bound_at=T0 + 60,
                issuer=cert.issuer,
                valid_from=cert.certificate.valid_from,
                valid_until=cert.certificate.valid_until,
                certificate_signature=cert.signature,
            )
        )
        rows = []
        for i in range(readings):
            r = Reading(
                order_id=1,
                seq=i,
                timestamp=T0 + 120 + 60 * i,
                temperature_centi_c=450 + i,
                humidity_permille=500,
                shock_milli_g=10,
                latitude_e6=50_000_000,
                longitude_e6=3_000_000,
                flags=0,
            )
            out.readings.append(r)
            row = reading_row(
                r, dev, key, DOMAIN, received_at=now, batch_seq=1 if i < committed else None
            )
            s.add(row)
            rows.append(row)
        s.flush()
        # what ingest records with the readings it stores
        repo.record_progress(
            s,
            [
                repo.DeviceProgress(
                    1, dev, len(rows), rows[0].seq, rows[-1].seq, rows[-1].timestamp, now
                )
            ],
        )
        s.add(commitment_row(rows[:committed], now))
        for i, (event, order_id, args) in enumerate(
            [
                ("OrderCreated", 1, {"orderId": "1", "buyer": buyer, "supplier": supplier}),
                ("OrderShipped", 1, {"orderId": "1", "deviceCount": 1, "shippedAt": T0 + 60}),
                ("OrderCreated", 2, {"orderId": "2", "buyer": stranger, "supplier": stranger}),
                (
                    "FundsCredited",
                    1,
                    {
                        "orderId": "1",
                        "account": supplier,
                        "token": "0x0000000000000000000000000000000000000000",
                        "amount": str(7 * ETHER),
                    },
                ),
            ]
        ):
            s.add(
                ChainEventRow(
                    block_number=5 + i,
                    block_timestamp=T0 + i,
                    tx_hash=bytes([i + 1]) * 32,
                    log_index=0,
                    contract="PurchaseOrders",
                    event=event,
                    order_id=order_id,
                    args=args,
                )
            )
        for order_id, kind in ((1, "trend"), (2, "silence")):
            s.add(
                AlertRow(
                    order_id=order_id,
                    device=dev if order_id == 1 else None,
                    kind=kind,
                    severity="warning",
                    message=f"{kind} on order {order_id}",
                    at=T0 + 500,
                    data={"order": order_id},
                    created_at=now,
                )
            )
    return out
