"""The shapes of path and query parameters, stated in the OpenAPI document exactly as checked.

- `TaskIdPath` / `task_id_schema()`: a task ID's length and the characters it may not hold
  (`tracker.tasks.ids`), as `minLength`, `maxLength` and `pattern`. The server's own check
  (`validate_task_id`) gives the message; the pattern is derived from the same predicate.
- `Timestamp`: a date-time query parameter, RFC 3339 (ISO 8601 with a timezone) only:
  `2026-12-02T10:00:00Z`, `2026-12-02T11:00:00.5+01:00`. Numbers (`0.5`, epoch seconds),
  dates alone and times without a timezone are refused with 422, where pydantic's own datetime
  would read `0.5` as a Unix time.
- cursor parameters: the forms of `tracker.tasks.pagination`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from tracker.tasks.ids import MAX_TASK_ID_LENGTH, task_id_pattern

__all__ = [
    "EXAMPLE_TASK_ID",
    "TIMESTAMP_FORM",
    "Timestamp",
    "parse_timestamp",
    "task_id_schema",
]

EXAMPLE_TASK_ID = "20251129_9f3c2a7e"
TIMESTAMP_FORM = "ISO 8601 with a timezone, e.g. 2026-12-02T10:00:00Z or 2026-12-02T11:00:00+01:00"
TASK_ID_RULES = (
    f"1 to {MAX_TASK_ID_LENGTH} characters, none of them whitespace or a control or format "
    "character."
)

# RFC 3339, section 5.6: the `date-time` of JSON Schema and OpenAPI.
_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<offset_hour>[0-9]{2}):(?P<offset_minute>[0-9]{2}))"
)


def task_id_schema() -> dict[str, Any]:
    """The JSON Schema keywords of a task ID, for `json_schema_extra`."""
    return {
        "minLength": 1,
        "maxLength": MAX_TASK_ID_LENGTH,
        "pattern": task_id_pattern(),
        "description": f"A TensorsLab task ID: {TASK_ID_RULES}",
    }


def parse_timestamp(value: object) -> datetime:
    """`value` as an aware datetime if it is an RFC 3339 date-time, else `ValueError`."""
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    text = value if isinstance(value, str) else None
    found = _RFC3339.fullmatch(text) if text is not None else None
    if found is None:
        raise ValueError(f"must be {TIMESTAMP_FORM}, got {str(value)[:40]!r}")
    try:
        offset = timedelta(0)
        if not found["utc"]:
            hours, minutes = int(found["offset_hour"]), int(found["offset_minute"])
            if hours > 23 or minutes > 59:
                raise ValueError("the timezone offset is out of range")
            offset = timedelta(hours=hours, minutes=minutes)
            if found["sign"] == "-":
                offset = -offset
        second = int(found["second"])
        micro = int((found["fraction"] or "0")[:6].ljust(6, "0"))
        if second == 60:  # a leap second: the last instant of the minute before it
            second, micro = 59, 999_999
        day = datetime.fromisoformat(found["date"])
        return datetime(
            day.year,
            day.month,
            day.day,
            int(found["hour"]),
            int(found["minute"]),
            second,
            micro,
            tzinfo=UTC if offset == timedelta(0) else timezone(offset),
        )
    except ValueError as error:
        raise ValueError(f"{text!r} is not a valid date-time: {error}") from None


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": f"{TIMESTAMP_FORM}.",
            "examples": ["2026-12-02T10:00:00Z"],
        }
    ),
]
