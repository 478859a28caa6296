"""Process heartbeats: beat ticks and worker batches, a row per process.

Each long-running process (beat, each worker) upserts its row at most every
TRACKER_HEARTBEAT_INTERVAL_S; `tracker doctor`, `/readyz` and the overdue notes of `tracker
status` and `list` read them (tracker.ops.heartbeats).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def _time(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "process_heartbeats",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(255), nullable=True),
        _time("started_at", nullable=False),
        _time("last_seen_at", nullable=False),
        _time("last_batch_at", nullable=True),
        sa.Column("last_batch", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_process_heartbeats"),
        sa.UniqueConstraint("host", "pid", "kind", name="uq_process_heartbeats_host_pid_kind"),
    )
    op.create_index("ix_process_heartbeats_last_seen_at", "process_heartbeats", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_process_heartbeats_last_seen_at", table_name="process_heartbeats")
    op.drop_table("process_heartbeats")
