"""Webhook deliveries over time: how many were written each hour of the last day, by status.

The database groups them (an hour's index from the start of the window), so a day of many
deliveries returns at most `hours` x 3 rows; the same statement runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, cast, extract, func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from tracker.db.models import WebhookDelivery
from tracker.states import DeliveryStatus

__all__ = ["HourOutcomes", "outcomes_by_hour"]

MAX_HOURS = 24 * 14


@dataclass(frozen=True, slots=True)
class HourOutcomes:
    """The deliveries written in the hour starting at `hour` (UTC), by their status now."""

    hour: datetime
    counts: Mapping[DeliveryStatus, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _hours_since(moment: Any, start: datetime, dialect: str) -> ColumnElement[int]:
    if dialect == "sqlite":  # UTC datetimes stored as ISO text
        days = func.julianday(moment) - func.julianday(literal(start.strftime("%Y-%m-%d %H:%M:%S")))
        return cast(days * 24.0, Integer)
    seconds = cast(extract("epoch", moment - literal(start)), Float)
    return cast(func.floor(seconds / 3600.0), Integer)


def outcomes_by_hour(session: Session, *, now: datetime, hours: int = 24) -> list[HourOutcomes]:
    """The last `hours` whole hours up to and including the current one, oldest first; every
    hour is listed, empty ones with zeros."""
    if not 1 <= hours <= MAX_HOURS:
        raise ValueError(f"hours must be between 1 and {MAX_HOURS}, got {hours}")
    now = now.astimezone(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    dialect = session.get_bind().dialect.name
    index = _hours_since(WebhookDelivery.created_at, start, dialect).label("hour_index")
    rows = session.execute(
        select(index, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.created_at >= start)
        .group_by(index, WebhookDelivery.status)
    ).all()
    counts = [dict.fromkeys(DeliveryStatus, 0) for _ in range(hours)]
    for hour_index, status, count in rows:
        if 0 <= int(hour_index) < hours:  # a row written after `now` by a skewed clock: left out
            counts[int(hour_index)][DeliveryStatus(status)] += int(count)
    return [HourOutcomes(start + timedelta(hours=i), counts[i]) for i in range(hours)]
