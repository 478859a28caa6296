"""Provider pauses with a cause code; unreachable streaks; what retention records.

- `provider_pauses` gains `cause` (a short code: no_credits, rate_limited, unauthorized,
  unreachable) beside the human `reason`, `started_at` (when this pause began: one WARNING per
  pause) and `probe_until` (while the one probe poll after a pause's end is in flight).
  Existing rows get their cause from their reason, and `started_at` from `updated_at`.
- `provider_failures`: per provider, since when every request has failed to connect.
- `retention_runs`: one row per maintenance job (`prune`): when it last ran, and how many tasks
  it has removed in all (the API's /metrics reads the total).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("provider_pauses") as batch:
        batch.add_column(
            sa.Column("cause", sa.String(32), nullable=False, server_default="no_credits")
        )
        batch.add_column(_time("started_at"))
        batch.add_column(_time("probe_until"))
    pauses = sa.table(
        "provider_pauses",
        sa.column("reason", sa.Text()),
        sa.column("cause", sa.String()),
        sa.column("started_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        pauses.update().where(pauses.c.reason.like("throttled%")).values(cause="rate_limited")
    )
    op.execute(pauses.update().values(started_at=pauses.c.updated_at))

    op.create_table(
        "provider_failures",
        sa.Column("provider", sa.String(32), nullable=False),
        _time("unreachable_since", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("provider", name="pk_provider_failures"),
    )
    op.create_table(
        "retention_runs",
        sa.Column("job", sa.String(32), nullable=False),
        _time("started_at"),
        _time("finished_at"),
        sa.Column("last_removed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("removed_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("job", name="pk_retention_runs"),
    )


def downgrade() -> None:
    op.drop_table("retention_runs")
    op.drop_table("provider_failures")
    with op.batch_alter_table("provider_pauses") as batch:
        batch.drop_column("probe_until")
        batch.drop_column("started_at")
        batch.drop_column("cause")
