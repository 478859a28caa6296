"""Scheduled polls: each live task's due time and lease move out of `tracked_tasks` into a narrow
table of their own.

A claim used to rewrite whole `tracked_tasks` rows (every JSON column, five indexes) and to find
them through a due index that kept every old due time until VACUUM: its time grew with the
table. `scheduled_polls` holds one small row per live task (`task_pk`, `provider`,
`next_poll_at`, `lease_token`, `lease_expires_at`) with only its primary key and its due index,
and loses the row when the task ends, so a claim touches small rows of live tasks only.

On PostgreSQL the table leaves room in each page for the new row versions that claims and polls
write (`fillfactor`), and autovacuum visits it after a fixed number of changed rows rather than a
share of the table (the share suits tables that only grow, not this one, where every row changes
every few seconds).

Existing live tasks keep their due time and lease. Downgrading copies them back.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Autovacuum every 2,000 changed rows (each claim and each poll changes one), whatever the size.
STORAGE = (
    "fillfactor = 70, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000, "
    "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000"
)


def _time(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "scheduled_polls",
        sa.Column("task_pk", ID, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        _time("next_poll_at", nullable=False),
        sa.Column("lease_token", sa.String(36), nullable=True),
        _time("lease_expires_at"),
        sa.ForeignKeyConstraint(
            ["task_pk"],
            ["tracked_tasks.id"],
            name="fk_scheduled_polls_task_pk_tracked_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_pk", name="pk_scheduled_polls"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE scheduled_polls SET ({STORAGE})")
    op.execute(
        "INSERT INTO scheduled_polls (task_pk, provider, next_poll_at, lease_token, "
        "lease_expires_at) SELECT id, provider, next_poll_at, lease_token, lease_expires_at "
        "FROM tracked_tasks WHERE next_poll_at IS NOT NULL"
    )
    op.create_index("ix_scheduled_polls_next_poll_at", "scheduled_polls", ["next_poll_at"])
    op.drop_index("ix_tracked_tasks_due", table_name="tracked_tasks")
    with op.batch_alter_table("tracked_tasks") as batch:
        batch.drop_column("next_poll_at")
        batch.drop_column("lease_token")
        batch.drop_column("lease_expires_at")


def downgrade() -> None:
    with op.batch_alter_table("tracked_tasks") as batch:
        batch.add_column(_time("next_poll_at"))
        batch.add_column(sa.Column("lease_token", sa.String(36), nullable=True))
        batch.add_column(_time("lease_expires_at"))
    op.execute(
        "UPDATE tracked_tasks SET "
        "next_poll_at = (SELECT s.next_poll_at FROM scheduled_polls s "
        "WHERE s.task_pk = tracked_tasks.id), "
        "lease_token = (SELECT s.lease_token FROM scheduled_polls s "
        "WHERE s.task_pk = tracked_tasks.id), "
        "lease_expires_at = (SELECT s.lease_expires_at FROM scheduled_polls s "
        "WHERE s.task_pk = tracked_tasks.id) "
        "WHERE id IN (SELECT task_pk FROM scheduled_polls)"
    )
    op.create_index(
        "ix_tracked_tasks_due",
        "tracked_tasks",
        ["next_poll_at"],
        postgresql_where=sa.text("next_poll_at IS NOT NULL"),
        sqlite_where=sa.text("next_poll_at IS NOT NULL"),
    )
    op.drop_index("ix_scheduled_polls_next_poll_at", table_name="scheduled_polls")
    op.drop_table("scheduled_polls")
