"""readings unique per (order, device, seq); device progress and status; indexed
block hashes and the deployment a database indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PROGRESS = (
    ("first_seq", sa.BigInteger()),
    ("last_seq", sa.BigInteger()),
    ("last_timestamp", sa.BigInteger()),
    ("last_received_at", sa.Float()),
    ("status", sa.String(length=16)),
    ("status_at", sa.BigInteger()),
    ("battery_permille", sa.Integer()),
    ("reported_first_seq", sa.BigInteger()),
    ("reported_last_seq", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_constraint("uq_readings_device_seq", type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_readings_order_id_device_seq"), ["order_id", "device", "seq"]
        )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reading_count", sa.BigInteger(), server_default="0", nullable=False)
        )
        for name, type_ in _PROGRESS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("indexer_cursor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deployment", sa.String(length=200), nullable=True))
    op.create_table(
        "indexed_blocks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("name", "number", name=op.f("pk_indexed_blocks")),
    )
    # Devices bound before this migration: their progress from the stored readings.
    op.execute(
        """
        UPDATE devices SET
          reading_count = (SELECT count(*) FROM readings r
                           WHERE r.order_id = devices.order_id AND r.device = devices.device),
          first_seq = (SELECT min(seq) FROM readings r
                       WHERE r.order_id = devices.order_id AND r.device = devices.device),
          last_seq = (SELECT max(seq) FROM readings r
                      WHERE r.order_id = devices.order_id AND r.device = devices.device),
          last_timestamp = (SELECT max(timestamp) FROM readings r
                            WHERE r.order_id = devices.order_id AND r.device = devices.device),
          last_received_at = (SELECT max(received_at) FROM readings r
                              WHERE r.order_id = devices.order_id AND r.device = devices.device)
        """
    )


def downgrade() -> None:
    op.drop_table("indexed_blocks")
    with op.batch_alter_table("indexer_cursor", schema=None) as batch_op:
        batch_op.drop_column("deployment")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        for name, _ in reversed(_PROGRESS):
            batch_op.drop_column(name)
        batch_op.drop_column("reading_count")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_readings_order_id_device_seq"), type_="unique")
        batch_op.create_unique_constraint("uq_readings_device_seq", ["device", "seq"])
