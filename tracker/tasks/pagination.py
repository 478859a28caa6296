"""Keyset pages: cursors over (created_at, id), and the bounds every listing checks.

A task cursor is `<microseconds since 1970-01-01 UTC>_<row id>` (`TASK_CURSOR_PATTERN`), a
delivery cursor a row id (`ROW_CURSOR_PATTERN`). Clients should pass back the `next_cursor`
they were given, but every string of that form is a valid position (a larger id than exists is
clamped), so the documented form is exactly what is accepted and nothing out of range can reach
the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from tracker.errors import InvalidInput

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_ROW_ID",
    "ROW_CURSOR_PATTERN",
    "TASK_CURSOR_PATTERN",
    "chunked",
    "decode_cursor",
    "decode_row_cursor",
    "encode_cursor",
    "in_utc",
]

# The most rows in one page of `GET /v1/tasks` or `GET /v1/deliveries` (and `Tracker.list`),
# chosen so that a page stays a sane size when every row is as large as the caps allow:
# - a task is at most ~18 KB of JSON: 16 KiB of metadata (register.MAX_METADATA_BYTES, the same
#   compact UTF-8 JSON the response holds) + ~1 KB of fixed fields (a task ID is at most 256
#   characters) + what upstream sent (details, result URLs; error excerpts <= 200 characters);
#   100 tasks: ~1.8 MB, where 1000 could pass 18 MB;
# - a delivery holds its payload as a JSON string (metadata and details inside, each `"` and `\`
#   escaped: <= 2 x ~17.5 KB = ~35 KB) and its attempts, each <= ~4.5 KB of answer excerpt
#   (4,096 bytes) and error (300 characters); one round of retries is 8 attempts: ~36 KB.
#   100 deliveries: ~7 MB, where 1000 could pass 70 MB.
MAX_PAGE_SIZE = 100
MAX_ROW_ID = 2**63 - 1  # BIGINT
# 17 digits of microseconds reach the year 5138; 19 digits cover every BIGINT.
TASK_CURSOR_PATTERN = r"^[0-9]{1,17}_[0-9]{1,19}$"
ROW_CURSOR_PATTERN = r"^[0-9]{1,19}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_T = TypeVar("_T")


def chunked(items: list[_T], size: int) -> Iterable[list[_T]]:
    """`items` in runs of at most `size` (bound parameters per statement stay few)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_utc(moment: datetime | None) -> datetime | None:
    """`moment`, a bound of a listing, in UTC. A time that falls outside the years 1-9999 in
    UTC (`0001-01-01T00:00:00+05:00`) is a valid bound before or after every stored time, so it
    becomes the first or last representable one."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        early = moment.year == datetime.min.year
        return (datetime.min if early else datetime.max).replace(tzinfo=UTC)


def encode_cursor(created_at: datetime, row_id: int) -> str:
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return f"{(created_at - _EPOCH) // _MICROSECOND}_{row_id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) position a task cursor names; `InvalidInput` if it is not one."""
    if not re.fullmatch(TASK_CURSOR_PATTERN, cursor):
        raise InvalidInput(
            f"invalid cursor {cursor[:60]!r}: pass back the next_cursor of a previous page"
        )
    micros, row_id = cursor.split("_")
    return _EPOCH + int(micros) * _MICROSECOND, min(int(row_id), MAX_ROW_ID)


def decode_row_cursor(cursor: str) -> int:
    """The row id a delivery cursor names (the page holds rows before it)."""
    if not re.fullmatch(ROW_CURSOR_PATTERN, cursor):
        raise InvalidInput(
            f"invalid cursor {cursor[:60]!r}: pass back the next_cursor of a previous page"
        )
    return min(int(cursor), MAX_ROW_ID)
