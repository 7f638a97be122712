"""The oracle's database: SQLAlchemy 2 typed models (DESIGN.md §6).

Conventions (docs/oracle.md, "Storage"):

* Device and chain times are unix seconds in ``BigInteger`` columns; the oracle's
  own wall-clock stamps (``received_at``, ``created_at``, ``updated_at``) are unix
  seconds as ``Float``.
* Money (``uint256``) is :class:`~backend.store.types.Uint256`: ``NUMERIC(78,0)``
  on PostgreSQL, a zero-padded decimal string on SQLite, an ``int`` in Python.
* Order ids are ``BigInteger``: PurchaseOrders numbers orders 1, 2, 3 ... so an
  id never comes near 2**63; a reading that names a larger order id cannot be
  bound to an order and is refused before it reaches the database.
* Addresses are checksummed strings, hashes and signatures raw bytes.
* JSON columns hold only JSON-safe values; integers that may exceed 2**53 (money,
  order ids in event arguments) are written as decimal strings.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from backend.store.types import BigIntPK, Uint256

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADDRESS = String(42)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ReadingRow(Base):
    """A signed reading that passed every check, exactly as the device signed it."""

    __tablename__ = "readings"
    __table_args__ = (
        # A device's seq is unique per order: the signature binds the order id, so a
        # logger reused on a later order may start its counter again (DESIGN.md §3).
        UniqueConstraint("order_id", "device", "seq"),
        Index("ix_readings_order_id_timestamp", "order_id", "timestamp"),
        # Readings not yet in a fleet commitment, in leaf order (every order's).
        Index(
            "ix_readings_uncommitted",
            "id",
            sqlite_where=text("batch_seq IS NULL"),
            postgresql_where=text("batch_seq IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    device: Mapped[str] = mapped_column(ADDRESS)
    seq: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    temperature_centi_c: Mapped[int] = mapped_column(Integer)
    humidity_permille: Mapped[int] = mapped_column(Integer)
    shock_milli_g: Mapped[int] = mapped_column(BigInteger)
    latitude_e6: Mapped[int] = mapped_column(Integer)
    longitude_e6: Mapped[int] = mapped_column(Integer)
    flags: Mapped[int] = mapped_column(SmallInteger)
    signature: Mapped[bytes] = mapped_column(LargeBinary(65))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    received_at: Mapped[float] = mapped_column(Float)
    #: The Merkle batch that commits this reading (NULL until committed).
    batch_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DeviceRow(Base):
    """A device bound to an order (from QualityVerification's ``DeviceBound`` events),
    with what ingest has stored of it and what the device last said of itself.

    ``reading_count``, ``first_seq`` and ``last_seq`` are kept by ingest in the
    transaction that stores the readings (so several oracle processes agree):
    ``last_seq - first_seq + 1 - reading_count`` readings are missing inside the
    range seen. The ``reported_*`` and status columns come from the device's
    (unsigned) status messages: they can reveal readings that never arrived, never
    stand as evidence.
    """

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("order_id", "device"), Index("ix_devices_device", "device"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    device: Mapped[str] = mapped_column(ADDRESS)
    bound_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bound_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The certificate it was bound with (DeviceBound names the issuer; the rest is read
    # from the shipOrder calldata): evidence carries it again.
    issuer: Mapped[str | None] = mapped_column(ADDRESS, nullable=True)
    valid_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    valid_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    certificate_signature: Mapped[bytes | None] = mapped_column(LargeBinary(65), nullable=True)
    #: When its issuer revoked it (``DeviceRevoked``): later readings are no evidence.
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Stored readings of this device on this order
    reading_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    first_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_received_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The device's latest status message (retained on the broker)
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    battery_permille: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The first and the newest seq the device says it has sent on this order.
    reported_first_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reported_last_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    def expected_seqs(self) -> tuple[int, int]:
        """The seq range this device's readings should fill: from the lower of the
        first stored and the first reported seq to the higher of the last ones
        (empty, ``hi < lo``, while nothing is known)."""
        firsts = [s for s in (self.first_seq, self.reported_first_seq) if s is not None]
        lasts = [s for s in (self.last_seq, self.reported_last_seq) if s is not None]
        if not firsts and lasts:
            firsts = [min(lasts)]  # only a status: nothing is known to be missing below it
        if not firsts or not lasts:
            return 0, -1
        return min(firsts), max(lasts)

    def missing(self) -> int:
        """How many readings inside :meth:`expected_seqs` are not stored."""
        lo, hi = self.expected_seqs()
        return max(0, hi - lo + 1 - (self.reading_count or 0))


class OrderRow(Base):
    """An order's chain state as the indexer last saw it (terms never change)."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_buyer", "buyer"),
        Index("ix_orders_supplier", "supplier"),
        Index("ix_orders_state", "state"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(16))
    # Terms (IPurchaseOrders.Terms, from OrderCreated: the contract stores only their digest)
    buyer: Mapped[str] = mapped_column(ADDRESS)
    supplier: Mapped[str] = mapped_column(ADDRESS)
    token: Mapped[str] = mapped_column(ADDRESS)
    price: Mapped[int] = mapped_column(Uint256)
    delivery_deadline: Mapped[int] = mapped_column(BigInteger)
    expiry_grace_secs: Mapped[int] = mapped_column(BigInteger)
    dest_lat_e6: Mapped[int] = mapped_column(Integer)
    dest_lon_e6: Mapped[int] = mapped_column(Integer)
    geofence_e6: Mapped[int] = mapped_column(BigInteger)
    min_temp_centi_c: Mapped[int] = mapped_column(Integer)
    max_temp_centi_c: Mapped[int] = mapped_column(Integer)
    max_humidity_permille: Mapped[int] = mapped_column(Integer)
    max_shock_milli_g: Mapped[int] = mapped_column(BigInteger)
    tolerated_excursion_secs: Mapped[int] = mapped_column(BigInteger)
    late_penalty_bps_per_hour: Mapped[int] = mapped_column(Integer)
    late_penalty_cap_bps: Mapped[int] = mapped_column(Integer)
    breach_refund_bps: Mapped[int] = mapped_column(Integer)
    dispute_window_secs: Mapped[int] = mapped_column(BigInteger)
    arbiter: Mapped[str] = mapped_column(ADDRESS)
    device_issuer: Mapped[str] = mapped_column(ADDRESS)
    second_device_issuer: Mapped[str] = mapped_column(ADDRESS)
    arrival_quorum: Mapped[int] = mapped_column(SmallInteger)
    # Progress
    funded: Mapped[bool] = mapped_column(Boolean, default=False)
    breached: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    shipped_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    delivered_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disputed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    late_seconds: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    delivery_confirmed_by: Mapped[str | None] = mapped_column(ADDRESS, nullable=True)
    buyer_amount: Mapped[int | None] = mapped_column(Uint256, nullable=True)
    supplier_amount: Mapped[int | None] = mapped_column(Uint256, nullable=True)
    updated_block: Mapped[int] = mapped_column(BigInteger, default=0)


class ChainEventRow(Base):
    """A decoded contract event; (block, log index) identifies a log on the chain."""

    __tablename__ = "chain_events"
    __table_args__ = (
        UniqueConstraint("block_number", "log_index"),
        Index("ix_chain_events_order_id_block_number", "order_id", "block_number"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tx_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    log_index: Mapped[int] = mapped_column(Integer)
    contract: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)


class IndexerCursorRow(Base):
    """How far an indexer has read the chain (the last block fully stored)."""

    __tablename__ = "indexer_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_block: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[float] = mapped_column(Float)
    #: Which deployment this database indexes (chain id, PurchaseOrders, deployment block
    #: hash): a database of another deployment is refused rather than mixed in.
    deployment: Mapped[str | None] = mapped_column(String(200), nullable=True)


class IndexedBlockRow(Base):
    """The hash of a block the indexer read (page ends and blocks with events), the
    newest few hundred kept: after a reorganisation the newest one whose hash the chain
    still has is where the indexer rewinds to."""

    __tablename__ = "indexed_blocks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CommitmentRow(Base):
    """A fleet batch: one Merkle root over a window of every order's readings
    (``commitFleetRoot``); ``reading_ids`` is the leaf order (leaf ``i`` binds the
    reading's order, device, digest and ``i``). ``log_index`` is the root's place in
    the committer's fleet log (from ``FleetRootCommitted``)."""

    __tablename__ = "commitments"
    __table_args__ = (UniqueConstraint("batch_seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    batch_seq: Mapped[int] = mapped_column(BigInteger)
    committer: Mapped[str | None] = mapped_column(ADDRESS, nullable=True)
    log_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    reading_count: Mapped[int] = mapped_column(Integer)
    first_reading_id: Mapped[int] = mapped_column(BigInteger)
    last_reading_id: Mapped[int] = mapped_column(BigInteger)
    reading_ids: Mapped[list[int]] = mapped_column(JSON)
    tx_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    #: pending (outbox entry waiting) → done (on chain) | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class OutboxRow(Base):
    """A chain action the oracle decided on, stored with the readings that caused it.

    ``status``: pending → sent → done, or → failed (a revert that is not "already
    done", or too many attempts). ``rank`` orders an order's actions (breach
    evidence before arrival before settlement); ``next_attempt_at`` delays retries.
    ``done_block`` is the chain head when the entry was done: a reorganisation that
    replaces blocks after it puts the entry back to pending (docs/oracle.md).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("dedup_key"),
        Index("ix_outbox_status_order_id", "status", "order_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[int] = mapped_column(BigInteger)
    dedup_key: Mapped[str] = mapped_column(String(160))
    rank: Mapped[int] = mapped_column(SmallInteger, default=0)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    tx_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    done_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class AlertRow(Base):
    """An early warning or notable event for people (not an on-chain action)."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("dedup_key"),
        Index("ix_alerts_order_id_at", "order_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    device: Mapped[str | None] = mapped_column(ADDRESS, nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    #: When it happened: the reading's timestamp, or the oracle's clock for silence.
    at: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Makes re-evaluation after a restart idempotent; NULL = no deduplication.
    dedup_key: Mapped[str | None] = mapped_column(String(160), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class RiskSnapshotRow(Base):
    """A shipment's risk picture at one time (backend/risk, docs/risk.md): the oracle
    keeps one whenever the score or its reasons change (and at least hourly while
    readings come in); the newest is the live score, the rest its history."""

    __tablename__ = "risk_snapshots"
    __table_args__ = (Index("ix_risk_snapshots_order_id_id", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    #: Scenario time it describes: the newest reading's timestamp, or the silence timer's.
    at: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[float] = mapped_column(Float)
    #: [{kind, value, weight, strength, points, text}], strongest first
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    #: {timestamp, confidence, late_secs, penalty_bps, penalty_amount, ...} or null
    eta: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    breach_in_secs: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: the risk model's open episodes (alert deduplication survives a restart)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)


class EpcisEventRow(Base):
    """A partner's EPCIS 2.0 event captured for an order (``POST /epcis/capture``,
    docs/epcis.md): the event as it came (with its ``eventID``, ours when it had none),
    the prefixes its document declared, and who captured it. ``event_id`` is unique:
    capturing the same event again stores nothing."""

    __tablename__ = "epcis_events"
    __table_args__ = (
        UniqueConstraint("event_id"),
        Index("ix_epcis_events_order_id_event_time", "order_id", "event_time"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(512))
    #: Our CBV event hash ID of the event (equals ``event_id`` when the partner gave none).
    hash_id: Mapped[str] = mapped_column(String(128))
    order_id: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    biz_step: Mapped[str | None] = mapped_column(String(512), nullable=True)
    #: The event's ``eventTime`` (unix seconds, UTC).
    event_time: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    prefixes: Mapped[dict[str, str]] = mapped_column(JSON)
    captured_by: Mapped[str] = mapped_column(ADDRESS)
    captured_by_name: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[float] = mapped_column(Float)


class GrantRow(Base):
    """A grant of one class of one order's data to a party elsewhere
    (:class:`backend.domain.sharing.Grant`; docs/sharing.md)."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_order_id_grantee_address", "order_id", "grantee_address"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    sensitivity: Mapped[str] = mapped_column(String(8))
    grantee: Mapped[str] = mapped_column(String(64))
    grantee_address: Mapped[str] = mapped_column(ADDRESS)
    grantee_jurisdiction: Mapped[str] = mapped_column(String(2))
    reason: Mapped[str] = mapped_column(Text)
    #: requested | approved | denied | revoked (expired is computed when read)
    state: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[int] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_as: Mapped[str | None] = mapped_column(String(16), nullable=True)
    decided_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DisclosureRow(Base):
    """One entry of the append-only, hash-chained disclosure log
    (:class:`backend.domain.sharing.Disclosure`; backend/sharing/disclosures.py)."""

    __tablename__ = "disclosures"
    # Two appends racing for the same place in the chain: one wins, the other retries.
    __table_args__ = (UniqueConstraint("prev_hash"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[int] = mapped_column(BigInteger)
    viewer: Mapped[str] = mapped_column(String(64))
    viewer_address: Mapped[str] = mapped_column(ADDRESS)
    viewer_jurisdiction: Mapped[str] = mapped_column(String(2))
    owner_jurisdiction: Mapped[str] = mapped_column(String(2))
    order_id: Mapped[int] = mapped_column(BigInteger, index=True)
    sensitivity: Mapped[str] = mapped_column(String(8))
    grant_id: Mapped[int] = mapped_column(BigInteger)
    route: Mapped[str] = mapped_column(String(200))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# The tables, for SQLAlchemy Core statements: hot read and write paths skip building
# ORM instances (a Core ``Row`` has the same attributes, ``row.price``, column types
# applied, at about half the cost).
ALERTS = _table(AlertRow)
EVENTS = _table(ChainEventRow)
DEVICES = _table(DeviceRow)
ORDERS = _table(OrderRow)
OUTBOX = _table(OutboxRow)
READINGS = _table(ReadingRow)
RISK = _table(RiskSnapshotRow)

__all__ = [
    "ALERTS",
    "DEVICES",
    "EVENTS",
    "ORDERS",
    "OUTBOX",
    "READINGS",
    "RISK",
    "AlertRow",
    "Base",
    "ChainEventRow",
    "DisclosureRow",
    "GrantRow",
    "CommitmentRow",
    "DeviceRow",
    "EpcisEventRow",
    "IndexedBlockRow",
    "IndexerCursorRow",
    "OrderRow",
    "OutboxRow",
    "ReadingRow",
    "RiskSnapshotRow",
]


class HandoffRow(Base):
    """Work for the oracle process that evaluates an order (backend/oracle/ownership.py):
    a reading another process stored, or a device status it recorded. The owner takes
    the rows in the transaction that evaluates them; a reading with a row here has not
    been evaluated yet (docs/oracle.md, "Several oracles")."""

    __tablename__ = "handoff"
    __table_args__ = (
        Index("ix_handoff_order_id", "order_id"),
        Index("ix_handoff_reading_id", "reading_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    device: Mapped[str] = mapped_column(ADDRESS)
    #: the stored reading to evaluate; NULL: the device's status changed
    reading_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


HANDOFF = _table(HandoffRow)
