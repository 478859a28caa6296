"""`scheduled_polls` keeps half of each page free for the claims' row versions.

A claim now writes only a row's lease (`tracker/db/leasing.py`, `keep_due`), which PostgreSQL
updates in place on the row's page when the page has room (a HOT update: no index entry is
written). The rows due at one tick lie together (`tracker/tasks/rescheduling.py`), so one claim
gives every row of a page a new version at once: the page needs room for as many again.
`fillfactor = 50` leaves it, for the pages written from now on. SQLite has no such setting.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE scheduled_polls SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE scheduled_polls SET (fillfactor = 70)")
