"""handoff: readings and statuses stored by one oracle process for the order's owner

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "handoff",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("device", sa.String(42), nullable=False),
        sa.Column("reading_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoff")),
    )
    op.create_index("ix_handoff_order_id", "handoff", ["order_id"], unique=False)
    op.create_index("ix_handoff_reading_id", "handoff", ["reading_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_handoff_reading_id", "handoff")
    op.drop_index("ix_handoff_order_id", "handoff")
    op.drop_table("handoff")
