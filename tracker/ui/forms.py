"""What the dashboard's filters and forms accept: parsing with one-line messages for people.

Times come from `<input type="datetime-local">` (no zone: read as UTC) or as ISO 8601 with an
offset. Anything else raises `InvalidInput`, which the page shows with 422.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TypeVar

from tracker.errors import InvalidInput
from tracker.tasks.ids import validate_provider
from tracker.upstream.names import PROVIDERS

__all__ = ["parse_choice", "parse_id", "parse_moment", "parse_provider", "time_value"]

_E = TypeVar("_E", bound=enum.Enum)
MAX_ID = 2**63 - 1


def parse_moment(raw: str | None, *, name: str) -> datetime | None:
    """A time, or None when the field is empty; naive times are UTC."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise InvalidInput(
            f"{name}: {text[:40]!r} is not a time; use 2026-12-06T17:30 (UTC) or ISO 8601"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59-01:00 is past the year 9999 in UTC
        raise InvalidInput(f"{name}: {text[:40]!r} is outside the years 1 to 9999 in UTC") from None


def time_value(moment: datetime | None) -> str:
    """`moment` in UTC as a datetime-local input shows it (`2026-12-06T17:30`)."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def parse_choice(raw: str | None, kind: type[_E], *, name: str) -> _E | None:
    if raw is None or not raw.strip():
        return None
    try:
        return kind(raw.strip())
    except ValueError:
        valid = ", ".join(str(item.value) for item in kind)
        raise InvalidInput(f"{name}: {raw[:40]!r} is not one of {valid}") from None


def parse_provider(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    if raw.strip() not in PROVIDERS:
        raise InvalidInput(f"provider: {raw[:40]!r} is not one of {', '.join(PROVIDERS)}")
    return validate_provider(raw.strip())


def parse_id(raw: str | None, *, name: str) -> int | None:
    """A positive row ID, or None when empty."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_ID:
        raise InvalidInput(f"{name}: {text[:40]!r} is not an ID (a whole number from 1)")
    return int(text)
