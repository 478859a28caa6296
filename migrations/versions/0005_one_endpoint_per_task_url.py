"""One live per-task webhook endpoint per (task, URL), enforced by a partial unique index.

Two registrations adding the same webhook URL to the same task at once could both insert an
endpoint, so the task's events went out twice, under two webhook-ids and two secrets. Existing
duplicates are merged first, losing nothing: in each (task, URL) group the oldest live endpoint
(the lowest id) is kept, every delivery of the others (and so every attempt, which hangs off
its delivery) is moved to it, and the others are marked removed, kept for the record.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_webhook_endpoints_task_pk_url"
LIVE_PER_TASK = "task_pk IS NOT NULL AND removed_at IS NULL"

endpoints = sa.table(
    "webhook_endpoints",
    sa.column("id", sa.BigInteger()),
    sa.column("task_pk", sa.BigInteger()),
    sa.column("url", sa.String()),
    sa.column("enabled", sa.Boolean()),
    sa.column("disabled_reason", sa.Text()),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("removed_at", sa.DateTime(timezone=True)),
)
deliveries = sa.table(
    "webhook_deliveries",
    sa.column("id", sa.BigInteger()),
    sa.column("endpoint_id", sa.BigInteger()),
    sa.column("status", sa.String()),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.column("lease_token", sa.String()),
    sa.column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.column("last_error", sa.Text()),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def _merge_duplicates() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # tracker stores naive UTC on SQLite
    live = sa.and_(endpoints.c.task_pk.is_not(None), endpoints.c.removed_at.is_(None))
    groups = bind.execute(
        sa.select(endpoints.c.task_pk, endpoints.c.url)
        .where(live)
        .group_by(endpoints.c.task_pk, endpoints.c.url)
        .having(sa.func.count() > 1)
    ).all()
    for task_pk, url in groups:
        keeper, *others = bind.scalars(
            sa.select(endpoints.c.id)
            .where(live, endpoints.c.task_pk == task_pk, endpoints.c.url == url)
            .order_by(endpoints.c.id)
        ).all()
        # Each duplicate got its own copy of every event: the keeper's pending copies will be
        # sent, so the duplicates' pending copies would be the same message under another
        # webhook-id. They fail, unsent; finished ones move to the keeper, for the record.
        bind.execute(
            sa.update(deliveries)
            .where(deliveries.c.endpoint_id.in_(others), deliveries.c.status == "pending")
            .values(
                status="failed",
                next_attempt_at=None,
                lease_token=None,
                lease_expires_at=None,
                last_error=f"a duplicate of a delivery of endpoint {keeper} (merged, not sent)",
                updated_at=now,
            )
        )
        bind.execute(
            sa.update(deliveries)
            .where(deliveries.c.endpoint_id.in_(others))
            .values(endpoint_id=keeper)
        )
        bind.execute(
            sa.update(endpoints)
            .where(endpoints.c.id.in_(others))
            .values(
                removed_at=now,
                enabled=False,
                disabled_reason=f"removed: a duplicate of endpoint {keeper}, merged into it",
                updated_at=now,
            )
        )


def upgrade() -> None:
    _merge_duplicates()
    op.create_index(
        INDEX,
        "webhook_endpoints",
        ["task_pk", "url"],
        unique=True,
        postgresql_where=sa.text(LIVE_PER_TASK),
        sqlite_where=sa.text(LIVE_PER_TASK),
    )


def downgrade() -> None:
    # The merge is not undone: the removed duplicates stay removed, their deliveries stay moved.
    op.drop_index(INDEX, table_name="webhook_endpoints")
