"""The adaptive schedule: what it learned per bucket of alike tasks, and how far it has read.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "schedule_buckets",
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("resolution", sa.String(16), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("ages_s", JSON_TYPE, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "provider", "model", "resolution", "duration_s", name="pk_schedule_buckets"
        ),
    )
    op.create_table(
        "schedule_learning",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("learned_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("learned_through_id", ID, nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_schedule_learning"),
    )


def downgrade() -> None:
    op.drop_table("schedule_learning")
    op.drop_table("schedule_buckets")
