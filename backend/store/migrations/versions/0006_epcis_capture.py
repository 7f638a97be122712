"""epcis events: partners' EPCIS 2.0 events captured for an order

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "epcis_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=512), nullable=False),
        sa.Column("hash_id", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("biz_step", sa.String(length=512), nullable=True),
        sa.Column("event_time", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("prefixes", sa.JSON(), nullable=False),
        sa.Column("captured_by", sa.String(length=42), nullable=False),
        sa.Column("captured_by_name", sa.String(length=64), nullable=False),
        sa.Column("captured_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_epcis_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_epcis_events_event_id")),
    )
    op.create_index(
        "ix_epcis_events_order_id_event_time",
        "epcis_events",
        ["order_id", "event_time"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_epcis_events_order_id_event_time", table_name="epcis_events")
    op.drop_table("epcis_events")
