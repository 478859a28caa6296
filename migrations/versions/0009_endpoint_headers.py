"""Per-endpoint custom headers, and deliveries without a task (the `webhook.test` event).

`webhook_endpoints.headers` holds the endpoint's own headers (a JSON object, `{}` by default),
sent with every attempt. `webhook_deliveries.task_pk` becomes nullable: a test event announces
no task.

On SQLite the nullability change rebuilds `webhook_deliveries` (batch mode): `env.py` turns
foreign keys off for migrations, so dropping the old table does not cascade into
`delivery_attempts`, and the partial due index is recreated with its condition. With foreign
keys off nothing cascades on SQLite, so the downgrade deletes the attempts of the test
deliveries it drops itself (on PostgreSQL the cascade would).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE_INDEX = "ix_webhook_deliveries_due"
DUE_WHERE = "next_attempt_at IS NOT NULL"
JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")


def _set_task_nullable(nullable: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.alter_column(
            "webhook_deliveries", "task_pk", existing_type=sa.BigInteger(), nullable=nullable
        )
        return
    op.drop_index(DUE_INDEX, table_name="webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries", recreate="always") as batch:
        batch.alter_column("task_pk", existing_type=sa.Integer(), nullable=nullable)
    op.create_index(
        DUE_INDEX,
        "webhook_deliveries",
        ["next_attempt_at"],
        sqlite_where=sa.text(DUE_WHERE),
    )


def upgrade() -> None:
    # A plain ADD COLUMN: no need to rebuild the endpoints table.
    op.add_column(
        "webhook_endpoints",
        sa.Column("headers", JSON_TYPE, nullable=False, server_default=sa.text("'{}'")),
    )
    _set_task_nullable(True)


def downgrade() -> None:
    # A test event has no task to hang off; it cannot survive the NOT NULL.
    op.execute(
        "DELETE FROM delivery_attempts WHERE delivery_id IN "
        "(SELECT id FROM webhook_deliveries WHERE task_pk IS NULL)"
    )
    op.execute("DELETE FROM webhook_deliveries WHERE task_pk IS NULL")
    _set_task_nullable(False)
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+): no rebuild either.
    op.execute("ALTER TABLE webhook_endpoints DROP COLUMN headers")
