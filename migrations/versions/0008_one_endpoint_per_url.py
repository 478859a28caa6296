"""One live endpoint per URL, per-task subscriptions, and room for several rotated-out secrets.

Before: `register --webhook URL` made one endpoint, with its own secret, per (task, URL), and
`webhooks add URL` twice made two endpoints, so a receiver got every event twice. Now a URL has
one live endpoint (a partial unique index on live `url`): it is either for all tasks
(`all_tasks`) or for the tasks subscribed to it (`webhook_subscriptions`).

Existing duplicates (live endpoints with the same URL) are merged into the oldest (lowest id),
losing nothing: every delivery of the others (and so every attempt, which hangs off its
delivery) moves to it; the others are marked removed, kept for the record. The merged endpoint
keeps the oldest secret; every other secret of the group keeps signing as a rotated-out secret
for `MERGE_OVERLAP` (a message then carries one signature per secret), so each receiver can
switch to the oldest secret. It is for all tasks if any of the group was, subscribed to every
task of the group's per-task endpoints otherwise; it hears the union of their events; it is
enabled if any of them was. A pending delivery whose exact message (task, event, body) the
receiver already got, or will get, from another delivery of the group (a global endpoint and a
per-task one with one URL each got a copy) fails unsent, so each event arrives once.

Secrets are copied as they are: this migration cannot know the encryption key. Plain secrets
are encrypted by `tracker db upgrade` right after the migrations, or `tracker secrets
rotate-key` (see `tracker.webhooks.vault`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
MERGE_OVERLAP = timedelta(days=7)
ENCRYPTED_PREFIX = "fernet:"  # tracker.webhooks.vault.ENCRYPTED_PREFIX
OLD_INDEX = "uq_webhook_endpoints_task_pk_url"
NEW_INDEX = "uq_webhook_endpoints_url"
FK_TASK = "fk_webhook_endpoints_task_pk_tracked_tasks"

endpoints = sa.table(
    "webhook_endpoints",
    sa.column("id", sa.BigInteger()),
    sa.column("url", sa.String()),
    sa.column("events", sa.JSON()),
    sa.column("secret", sa.Text()),
    sa.column("previous_secret", sa.Text()),
    sa.column("previous_secret_expires_at", sa.DateTime(timezone=True)),
    sa.column("previous_secrets", sa.JSON()),
    sa.column("all_tasks", sa.Boolean()),
    sa.column("task_pk", sa.BigInteger()),
    sa.column("enabled", sa.Boolean()),
    sa.column("disabled_reason", sa.Text()),
    sa.column("failing_since", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("removed_at", sa.DateTime(timezone=True)),
)
deliveries = sa.table(
    "webhook_deliveries",
    sa.column("id", sa.BigInteger()),
    sa.column("endpoint_id", sa.BigInteger()),
    sa.column("task_pk", sa.BigInteger()),
    sa.column("event_type", sa.String()),
    sa.column("payload", sa.Text()),
    sa.column("status", sa.String()),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.column("lease_token", sa.String()),
    sa.column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.column("last_error", sa.Text()),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
subscriptions = sa.table(
    "webhook_subscriptions",
    sa.column("endpoint_id", sa.BigInteger()),
    sa.column("task_pk", sa.BigInteger()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(tzinfo=None) if op.get_bind().dialect.name == "sqlite" else now


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _until(value: datetime) -> str:
    return _aware(value).isoformat()


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("all_tasks", sa.Boolean(), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("previous_secrets", JSON, nullable=True))
    op.create_table(
        "webhook_subscriptions",
        sa.Column("endpoint_id", ID, nullable=False),
        sa.Column("task_pk", ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name="fk_webhook_subscriptions_endpoint_id_webhook_endpoints",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_pk"],
            ["tracked_tasks.id"],
            name="fk_webhook_subscriptions_task_pk_tracked_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint_id", "task_pk", name="pk_webhook_subscriptions"),
    )
    op.create_index("ix_webhook_subscriptions_task_pk", "webhook_subscriptions", ["task_pk"])
    _fill_new_columns()
    _merge_by_url()
    op.drop_index(OLD_INDEX, table_name="webhook_endpoints")
    op.drop_index("ix_webhook_endpoints_task_pk", table_name="webhook_endpoints")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_constraint(FK_TASK, type_="foreignkey")
        batch.drop_column("task_pk")
        batch.drop_column("previous_secret")
        batch.drop_column("previous_secret_expires_at")
        batch.alter_column("all_tasks", existing_type=sa.Boolean(), nullable=False)
        batch.alter_column("previous_secrets", existing_type=JSON, nullable=False)
    op.create_index(
        NEW_INDEX,
        "webhook_endpoints",
        ["url"],
        unique=True,
        postgresql_where=sa.text("removed_at IS NULL"),
        sqlite_where=sa.text("removed_at IS NULL"),
    )


def _fill_new_columns() -> None:
    """all_tasks from task_pk; the one previous secret, if any, as the first of the list."""
    bind = op.get_bind()
    for row in bind.execute(
        sa.select(
            endpoints.c.id,
            endpoints.c.task_pk,
            endpoints.c.previous_secret,
            endpoints.c.previous_secret_expires_at,
        )
    ).all():
        previous: list[dict[str, str]] = []
        if row.previous_secret:
            until = row.previous_secret_expires_at or datetime(9999, 12, 31, tzinfo=UTC)
            previous.append({"secret": row.previous_secret, "until": _until(until)})
        bind.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == row.id)
            .values(all_tasks=row.task_pk is None, previous_secrets=previous)
        )


def _merge_by_url() -> None:
    bind = op.get_bind()
    now = _now()
    rows = bind.execute(
        sa.select(endpoints).where(endpoints.c.removed_at.is_(None)).order_by(endpoints.c.id)
    ).all()
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(row.url, []).append(row)
    for group in groups.values():
        keeper, others = group[0], group[1:]
        all_tasks = any(row.all_tasks for row in group)
        if not all_tasks:
            task_pks = sorted({row.task_pk for row in group if row.task_pk is not None})
            if task_pks:
                bind.execute(
                    sa.insert(subscriptions),
                    [
                        {"endpoint_id": keeper.id, "task_pk": pk, "created_at": now}
                        for pk in task_pks
                    ],
                )
        if others:
            _merge_group(keeper, others, all_tasks=all_tasks, now=now)


def _merge_group(keeper: Any, others: list[Any], *, all_tasks: bool, now: datetime) -> None:
    bind = op.get_bind()
    group = [keeper, *others]
    events: list[str] = []
    for row in group:
        events.extend(event for event in row.events if event not in events)
    enabled = any(row.enabled for row in group)
    if enabled:
        failing = [row.failing_since for row in group if row.enabled]
        failing_since = None if None in failing else min(failing)
        disabled_reason = None
    else:
        failing_since, disabled_reason = keeper.failing_since, keeper.disabled_reason
    until = _until(now + MERGE_OVERLAP)
    previous = list(keeper.previous_secrets or [])
    for row in others:
        previous.append({"secret": row.secret, "until": until})
        previous.extend(row.previous_secrets or [])
    bind.execute(
        sa.update(endpoints)
        .where(endpoints.c.id == keeper.id)
        .values(
            events=events,
            all_tasks=all_tasks,
            enabled=enabled,
            disabled_reason=disabled_reason,
            failing_since=failing_since,
            previous_secrets=previous,
            updated_at=now,
        )
    )
    other_ids = [row.id for row in others]
    bind.execute(
        sa.update(deliveries)
        .where(deliveries.c.endpoint_id.in_(other_ids))
        .values(endpoint_id=keeper.id)
    )
    bind.execute(
        sa.update(endpoints)
        .where(endpoints.c.id.in_(other_ids))
        .values(
            removed_at=now,
            enabled=False,
            disabled_reason=f"removed: same URL as endpoint {keeper.id}, merged into it",
            updated_at=now,
        )
    )
    _fail_duplicate_messages(keeper.id, now)
    if enabled:  # held for a disabled duplicate: the URL's endpoint is enabled, so send them
        bind.execute(
            sa.update(deliveries)
            .where(
                deliveries.c.endpoint_id == keeper.id,
                deliveries.c.status == "pending",
                deliveries.c.next_attempt_at.is_(None),
            )
            .values(next_attempt_at=now, updated_at=now)
        )


def _fail_duplicate_messages(endpoint_id: int, now: datetime) -> None:
    """Of pending copies of one message (task, event, body), keep one; none if one arrived."""
    bind = op.get_bind()
    pending = bind.execute(
        sa.select(
            deliveries.c.id, deliveries.c.task_pk, deliveries.c.event_type, deliveries.c.payload
        )
        .where(deliveries.c.endpoint_id == endpoint_id, deliveries.c.status == "pending")
        .order_by(deliveries.c.id)
    ).all()
    if not pending:
        return
    delivered = {
        (row.task_pk, row.event_type, row.payload): row.id
        for row in bind.execute(
            sa.select(
                deliveries.c.id,
                deliveries.c.task_pk,
                deliveries.c.event_type,
                deliveries.c.payload,
            ).where(
                deliveries.c.endpoint_id == endpoint_id,
                deliveries.c.status == "delivered",
                deliveries.c.task_pk.in_(sorted({row.task_pk for row in pending})),
            )
        ).all()
    }
    kept: dict[tuple[int, str, str], int] = {}
    for row in pending:
        key = (row.task_pk, row.event_type, row.payload)
        original = delivered.get(key) or kept.get(key)
        if original is None:
            kept[key] = row.id
            continue
        bind.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == row.id)
            .values(
                status="failed",
                next_attempt_at=None,
                lease_token=None,
                lease_expires_at=None,
                last_error=f"the same message as delivery {original} (endpoints merged, not sent)",
                updated_at=now,
            )
        )


def downgrade() -> None:
    """Back to one endpoint per (task, URL); the merge itself is not undone.

    Refused once secrets are encrypted: tracker before 0008 reads plain secrets only.
    """
    bind = op.get_bind()
    for secret, previous in bind.execute(
        sa.select(endpoints.c.secret, endpoints.c.previous_secrets)
    ).all():
        stored = [secret, *(entry["secret"] for entry in previous or [])]
        if any(value.startswith(ENCRYPTED_PREFIX) for value in stored):
            raise RuntimeError(
                "webhook secrets are encrypted: migration 0008 cannot be undone on this "
                "database (tracker before it reads plain secrets only)"
            )
    op.drop_index(NEW_INDEX, table_name="webhook_endpoints")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(sa.Column("previous_secret", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("task_pk", ID, nullable=True))
        batch.create_foreign_key(FK_TASK, "tracked_tasks", ["task_pk"], ["id"], ondelete="CASCADE")
    _split_subscriptions()
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("all_tasks")
        batch.drop_column("previous_secrets")
    op.drop_index("ix_webhook_subscriptions_task_pk", table_name="webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
    op.create_index("ix_webhook_endpoints_task_pk", "webhook_endpoints", ["task_pk"])
    live_per_task = sa.text("task_pk IS NOT NULL AND removed_at IS NULL")
    op.create_index(
        OLD_INDEX,
        "webhook_endpoints",
        ["task_pk", "url"],
        unique=True,
        postgresql_where=live_per_task,
        sqlite_where=live_per_task,
    )


def _split_subscriptions() -> None:
    """Each subscribed task gets its own endpoint again (the first keeps the row and its
    deliveries); the latest rotated-out secret becomes `previous_secret`."""
    bind = op.get_bind()
    now = _now()
    for row in bind.execute(sa.select(endpoints)).all():
        previous = sorted(row.previous_secrets or [], key=lambda entry: entry["until"])
        values: dict[str, Any] = {}
        if previous:
            values["previous_secret"] = previous[-1]["secret"]
            expires = datetime.fromisoformat(previous[-1]["until"])
            if bind.dialect.name == "sqlite":
                expires = expires.astimezone(UTC).replace(tzinfo=None)
            values["previous_secret_expires_at"] = expires
        task_pks: list[int] = []
        if not row.all_tasks:
            task_pks = list(
                bind.scalars(
                    sa.select(subscriptions.c.task_pk)
                    .where(subscriptions.c.endpoint_id == row.id)
                    .order_by(subscriptions.c.task_pk)
                )
            )
            if task_pks:
                values["task_pk"] = task_pks[0]
            elif row.removed_at is None:  # for no task: it would become one for every task
                values.update(removed_at=now, enabled=False, disabled_reason="removed: no task")
        if values:
            bind.execute(sa.update(endpoints).where(endpoints.c.id == row.id).values(**values))
        for task_pk in task_pks[1:]:
            bind.execute(
                sa.insert(endpoints).values(
                    url=row.url,
                    events=row.events,
                    secret=row.secret,
                    previous_secret=values.get("previous_secret"),
                    previous_secret_expires_at=values.get("previous_secret_expires_at"),
                    task_pk=task_pk,
                    all_tasks=False,  # both columns are dropped next
                    previous_secrets=[],
                    enabled=row.enabled,
                    disabled_reason=row.disabled_reason,
                    failing_since=row.failing_since,
                    created_at=row.created_at,
                    updated_at=now,
                    removed_at=row.removed_at,
                )
            )
