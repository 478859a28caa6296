"""Provider-wide pauses: after no credits (9000) or a 429 with Retry-After, no task of that
provider is claimed until the pause ends.

One upsert, so two batches that hit the same pause at once never collide: the row is inserted
or, when it exists, moved to the later of the two ends (a shorter pause never cuts a longer one).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func
from sqlalchemy.orm import Session

from tracker.db.models import ProviderPauseRow
from tracker.db.upsert import insert_for
from tracker.tasks.decide import ProviderPause

__all__ = ["pause_provider"]


def pause_provider(session: Session, provider: str, pause: ProviderPause, *, at: datetime) -> None:
    """Pause polling of `provider` until `pause.until`, unless a longer pause already holds."""
    dialect_name = session.get_bind().dialect.name
    statement = insert_for(session, ProviderPauseRow).values(
        provider=provider, paused_until=pause.until, reason=pause.reason, updated_at=at
    )
    current, proposed = ProviderPauseRow.__table__.c, statement.excluded
    later = (func.greatest if dialect_name == "postgresql" else func.max)(
        current.paused_until, proposed.paused_until
    )
    longer = proposed.paused_until > current.paused_until
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["provider"],
            set_={
                "paused_until": later,
                "reason": case((longer, proposed.reason), else_=current.reason),
                "updated_at": case((longer, proposed.updated_at), else_=current.updated_at),
            },
        )
    )
