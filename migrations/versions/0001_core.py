"""Core schema: tracked tasks, their transitions, provider-wide pauses.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tracked_tasks",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result_urls", JSON, nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("task_metadata", JSON, nullable=False),
        sa.Column("upstream_message", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        _time("completed_at", nullable=True),
        _time("last_polled_at", nullable=True),
        _time("next_poll_at", nullable=True),
        sa.Column("lease_token", sa.String(36), nullable=True),
        _time("lease_expires_at", nullable=True),
        _time("not_found_since", nullable=True),
        sa.Column("poll_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("consecutive_errors", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tracked_tasks"),
        sa.UniqueConstraint("provider", "task_id", name="uq_tracked_tasks_provider_task_id"),
    )
    op.create_index(
        "ix_tracked_tasks_due",
        "tracked_tasks",
        ["next_poll_at"],
        postgresql_where=sa.text("next_poll_at IS NOT NULL"),
        sqlite_where=sa.text("next_poll_at IS NOT NULL"),
    )
    op.create_index("ix_tracked_tasks_status_created_at", "tracked_tasks", ["status", "created_at"])
    op.create_index("ix_tracked_tasks_created_at", "tracked_tasks", ["created_at"])

    op.create_table(
        "task_transitions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("task_pk", ID, nullable=False),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        _time("occurred_at", nullable=False),
        sa.Column("upstream_payload", JSON, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_pk"],
            ["tracked_tasks.id"],
            name="fk_task_transitions_task_pk_tracked_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_task_transitions"),
    )
    op.create_index("ix_task_transitions_task_pk", "task_transitions", ["task_pk"])

    op.create_table(
        "provider_pauses",
        sa.Column("provider", sa.String(32), nullable=False),
        _time("paused_until", nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _time("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("provider", name="pk_provider_pauses"),
    )


def downgrade() -> None:
    op.drop_table("provider_pauses")
    op.drop_index("ix_task_transitions_task_pk", table_name="task_transitions")
    op.drop_table("task_transitions")
    op.drop_index("ix_tracked_tasks_created_at", table_name="tracked_tasks")
    op.drop_index("ix_tracked_tasks_status_created_at", table_name="tracked_tasks")
    op.drop_index("ix_tracked_tasks_due", table_name="tracked_tasks")
    op.drop_table("tracked_tasks")
