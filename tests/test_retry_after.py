"""The one Retry-After reader, shared by the upstream client and webhook delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tracker.retry_after import parse_retry_after

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("120", 120.0, id="delay-seconds"),
        pytest.param(" 7 ", 7.0, id="spaces"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("-3", 0.0, id="negative-is-now"),
        pytest.param("inf", float("inf"), id="infinity-left-to-the-caller-cap"),
        pytest.param(format_datetime(NOW + timedelta(minutes=5), usegmt=True), 300.0, id="date"),
        pytest.param("Tue, 01 Dec 2026 12:10:00 GMT", 600.0, id="imf-fixdate"),
        pytest.param("Tuesday, 01-Dec-26 12:00:30 GMT", 30.0, id="rfc850-date"),
        pytest.param(format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0, id="past-date"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("nan", None, id="nan"),
        pytest.param("Wed, 99 Foo 20xx", None, id="broken-date"),
    ],
)
def test_both_forms_of_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds
