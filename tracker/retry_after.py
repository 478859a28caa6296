"""The one reader of HTTP `Retry-After` (RFC 9110 section 10.2.3), for the upstream client and
webhook delivery alike: delay-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT").
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from `now`; None when the header is absent or unreadable.

    A date in the past, or a negative number, means "now" (0); "inf" and huge numbers come
    back as they are, so callers cap the result to what they will honour. NaN is unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)  # RFC 9110 says digits; servers also send "1.5" or "-1"
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(seconds, 0.0)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())
