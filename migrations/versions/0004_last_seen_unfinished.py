"""When a poll last saw each task unfinished: bounds how late its end was noticed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tracked_tasks") as batch:
        batch.add_column(
            sa.Column("last_seen_unfinished_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("tracked_tasks") as batch:
        batch.drop_column("last_seen_unfinished_at")
