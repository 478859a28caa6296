"""The pure webhook rules: event names and payloads, and what each attempt's answer decides."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from tracker.settings import Settings
from tracker.states import TaskStatus
from tracker.webhooks.events import (
    ALL_EVENTS,
    DEFAULT_EVENTS,
    events_for_transition,
    parse_events,
    payload_body,
)
from tracker.webhooks.retry import AttemptResult, DeliveryDecision, decide_after_attempt

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SVIX = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def test_the_default_retry_schedule_is_svix_like() -> None:
    assert Settings().webhook_retry_schedule_s == SVIX


@pytest.mark.parametrize("value", ["5,abc", "5,-1", "0", "5,,x"])
def test_a_bad_retry_schedule_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="TRACKER_WEBHOOK_RETRY_SCHEDULE_S"):
        Settings(TRACKER_WEBHOOK_RETRY_SCHEDULE_S=value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], DEFAULT_EVENTS),
        (["task.completed"], ("task.completed",)),
        (
            ["task.completed,task.failed", "task.expired"],
            ("task.completed", "task.failed", "task.expired"),
        ),
        (["task.status_changed", "task.status_changed"], ("task.status_changed",)),
    ],
)
def test_parse_events(values: list[str], expected: tuple[str, ...]) -> None:
    assert parse_events(values) == expected


def test_an_unknown_event_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as caught:
        parse_events(["task.done"])
    assert "'task.done'" in str(caught.value)
    for name in ALL_EVENTS:
        assert name in str(caught.value)


@pytest.mark.parametrize(
    ("status", "events"),
    [
        (TaskStatus.PENDING, ("task.status_changed",)),
        (TaskStatus.PROCESSING, ("task.status_changed",)),
        (TaskStatus.UPLOADING, ("task.status_changed",)),
        (TaskStatus.COMPLETED, ("task.completed", "task.status_changed")),
        (TaskStatus.FAILED, ("task.failed", "task.status_changed")),
        (TaskStatus.NOT_FOUND, ("task.not_found", "task.status_changed")),
        (TaskStatus.EXPIRED, ("task.expired", "task.status_changed")),
        (TaskStatus.CANCELLED, ("task.cancelled", "task.status_changed")),
    ],
)
def test_events_for_each_transition(status: TaskStatus, events: tuple[str, ...]) -> None:
    assert events_for_transition(status) == events


def test_the_payload_has_type_timestamp_and_data() -> None:
    body = payload_body(
        event_type="task.completed",
        occurred_at=NOW,
        task_id="t1",
        provider="tensorslab",
        old_status=TaskStatus.UPLOADING,
        new_status=TaskStatus.COMPLETED,
        result_urls=["https://cdn.example/t1.mp4"],
        upstream_message=None,
        last_error=None,
        details={"resolution": "720p"},
        metadata={"user": 7},
        registered_at=NOW - timedelta(minutes=3),
        completed_at=NOW,
    )
    payload = json.loads(body)
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "task.completed"
    assert payload["timestamp"] == "2026-11-29T12:00:00Z"
    assert payload["data"]["old_status"] == "uploading"
    assert payload["data"]["result_urls"] == ["https://cdn.example/t1.mp4"]
    assert payload["data"]["metadata"] == {"user": 7}
    assert payload["data"]["registered_at"] == "2026-11-29T11:57:00Z"


def _decide(result: AttemptResult, attempt: int, seed: int = 0) -> DeliveryDecision:
    return decide_after_attempt(
        result, attempt_number=attempt, schedule_s=SVIX, now=NOW, rng=random.Random(seed)
    )


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    decision = _decide(AttemptResult(status), 1)
    assert decision.status == "delivered" and decision.next_attempt_at is None


@pytest.mark.parametrize(
    "result",
    [
        AttemptResult(301, "redirect"),
        AttemptResult(302, "redirect"),
        AttemptResult(400, "HTTP 400"),
        AttemptResult(404, "HTTP 404"),
        AttemptResult(500, "HTTP 500"),
        AttemptResult(None, "connection refused"),
        AttemptResult(None, "no answer within 15 s"),
    ],
    ids=lambda r: str(r.status_code or r.error),
)
@pytest.mark.parametrize("attempt", range(1, len(SVIX) + 1))
def test_failures_wait_per_the_schedule_with_20_percent_jitter(
    result: AttemptResult, attempt: int
) -> None:
    for seed in range(20):
        decision = _decide(result, attempt, seed)
        assert decision.status == "pending" and decision.next_attempt_at is not None
        wait_s = (decision.next_attempt_at - NOW).total_seconds()
        assert 0.8 * SVIX[attempt - 1] <= wait_s <= 1.2 * SVIX[attempt - 1]


def test_after_the_last_scheduled_retry_the_delivery_is_dead() -> None:
    decision = _decide(AttemptResult(500, "HTTP 500"), len(SVIX) + 1)
    assert decision.status == "failed" and decision.next_attempt_at is None


def test_410_ends_the_delivery_and_disables_the_endpoint() -> None:
    decision = _decide(AttemptResult(410, "HTTP 410"), 1)
    assert decision.status == "failed"
    assert decision.disable_endpoint_reason == "the receiver answered 410 Gone"


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retry_after_is_honoured_within_an_hour(status: int) -> None:
    later = _decide(AttemptResult(status, "busy", retry_after_s=120), 1)
    assert later.next_attempt_at is not None
    assert (later.next_attempt_at - NOW).total_seconds() == pytest.approx(120)
    capped = _decide(AttemptResult(status, "busy", retry_after_s=10**7), 1)
    assert capped.next_attempt_at == NOW + timedelta(hours=1)
    sooner = _decide(AttemptResult(status, "busy", retry_after_s=1), 2)  # schedule says 300
    assert sooner.next_attempt_at is not None
    assert (sooner.next_attempt_at - NOW).total_seconds() >= 240


def test_retry_after_from_other_statuses_is_ignored() -> None:
    decision = _decide(AttemptResult(500, "HTTP 500", retry_after_s=3000), 1)
    assert decision.next_attempt_at is not None
    assert (decision.next_attempt_at - NOW).total_seconds() <= 6
