"""terms name the device issuers and the arrival quorum; devices keep their certificate
and revocation; commitments are fleet batches (one root per window over every order)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ZERO = "0x0000000000000000000000000000000000000000"

_DEVICE_COLUMNS = (
    ("issuer", sa.String(length=42)),
    ("valid_from", sa.BigInteger()),
    ("valid_until", sa.BigInteger()),
    ("certificate_signature", sa.LargeBinary(length=65)),
    ("revoked_at", sa.BigInteger()),
    ("revoked_block", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("device_issuer", sa.String(length=42), server_default=_ZERO, nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "second_device_issuer", sa.String(length=42), server_default=_ZERO, nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("arrival_quorum", sa.SmallInteger(), server_default="1", nullable=False)
        )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        for name in ("device_issuer", "second_device_issuer", "arrival_quorum"):
            batch_op.alter_column(name, server_default=None)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        for name, type_ in _DEVICE_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("commitments", schema=None) as batch_op:
        batch_op.drop_constraint("uq_commitments_order_id_batch_seq", type_="unique")
        batch_op.drop_column("order_id")
        batch_op.add_column(sa.Column("committer", sa.String(length=42), nullable=True))
        batch_op.add_column(sa.Column("log_index", sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint(op.f("uq_commitments_batch_seq"), ["batch_seq"])
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_uncommitted")
        batch_op.create_index(
            "ix_readings_uncommitted",
            ["id"],
            unique=False,
            sqlite_where=sa.text("batch_seq IS NULL"),
            postgresql_where=sa.text("batch_seq IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_uncommitted")
        batch_op.create_index(
            "ix_readings_uncommitted",
            ["order_id", "id"],
            unique=False,
            sqlite_where=sa.text("batch_seq IS NULL"),
            postgresql_where=sa.text("batch_seq IS NULL"),
        )
    with op.batch_alter_table("commitments", schema=None) as batch_op:
        batch_op.drop_constraint("uq_commitments_batch_seq", type_="unique")
        batch_op.drop_column("log_index")
        batch_op.drop_column("committer")
        batch_op.add_column(
            sa.Column("order_id", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.create_unique_constraint(
            "uq_commitments_order_id_batch_seq", ["order_id", "batch_seq"]
        )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        for name, _ in reversed(_DEVICE_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("orders", schema=None) as batch_op:
        for name in ("arrival_quorum", "second_device_issuer", "device_issuer"):
            batch_op.drop_column(name)
