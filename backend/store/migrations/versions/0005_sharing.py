"""sharing: grants and the hash-chained disclosure log (docs/sharing.md)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("sensitivity", sa.String(8), nullable=False),
        sa.Column("grantee", sa.String(64), nullable=False),
        sa.Column("grantee_address", sa.String(42), nullable=False),
        sa.Column("grantee_jurisdiction", sa.String(2), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_as", sa.String(16), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
    )
    op.create_index("ix_grants_order_id_grantee_address", "grants", ["order_id", "grantee_address"])
    op.create_table(
        "disclosures",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("viewer", sa.String(64), nullable=False),
        sa.Column("viewer_address", sa.String(42), nullable=False),
        sa.Column("viewer_jurisdiction", sa.String(2), nullable=False),
        sa.Column("owner_jurisdiction", sa.String(2), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("sensitivity", sa.String(8), nullable=False),
        sa.Column("grant_id", sa.BigInteger(), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_disclosures")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_disclosures_prev_hash")),
    )
    op.create_index("ix_disclosures_order_id", "disclosures", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_disclosures_order_id", table_name="disclosures")
    op.drop_table("disclosures")
    op.drop_index("ix_grants_order_id_grantee_address", table_name="grants")
    op.drop_table("grants")
