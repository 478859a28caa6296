"""Keyset pages: opaque cursors over (created_at, id), and the bounds every listing checks.

A cursor is written by this service and read back only by it; anything else is refused as
forged, so it can never reach the database as an out-of-range value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from tracker.errors import InvalidInput

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_ROW_ID",
    "chunked",
    "decode_cursor",
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
_T = TypeVar("_T")


def chunked(items: list[_T], size: int) -> Iterable[list[_T]]:
    """`items` in runs of at most `size` (bound parameters per statement stay few)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_utc(moment: datetime | None, name: str) -> datetime | None:
    """`moment` in UTC; a time that does not exist in UTC (year 0 or 10000) is bad input."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} {moment.isoformat()} is out of range in UTC") from None


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        moment, row_id = raw.split("|")
        created_at = datetime.fromisoformat(moment)
        # Cursors are written in UTC with a row ID in the BIGINT range; anything else is forged.
        if created_at.utcoffset() != timedelta(0) or not 0 < int(row_id) <= MAX_ROW_ID:
            raise ValueError("not a cursor this service wrote")
        return created_at, int(row_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput(
            f"invalid cursor {cursor[:60]!r}: pass back the next_cursor of a previous page"
        ) from None
