"""The likely cause of overdue tasks: a pure decision over what the heartbeats say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tracker.ops.overdue import Liveness, format_seconds, likely_cause, overdue_after_s
from tracker.settings import Settings
from tracker.tasks.views import ProviderPauseView

NOW = datetime(2026, 12, 2, 20, 1, 40, tzinfo=UTC)
EARLIER = NOW - timedelta(seconds=35)  # 20:01:05


def _liveness(**changes: object) -> Liveness:
    values: dict[str, object] = {
        "now": NOW,
        "beat_alive": True,
        "beat_last_seen": NOW,
        "poll_workers_alive": 1,
        "poll_worker_last_seen": NOW,
        "webhook_workers_alive": 1,
        "webhook_worker_last_seen": NOW,
    }
    values.update(changes)
    return Liveness(**values)  # type: ignore[arg-type]


def test_a_beat_that_stopped_is_named_with_the_time_of_its_last_tick() -> None:
    cause = likely_cause(_liveness(beat_alive=False, beat_last_seen=EARLIER), pause=None, overdue=3)
    assert cause == "no beat has ticked since 20:01:05 UTC: is `tracker beat` running?"


def test_a_beat_never_seen_is_named_too() -> None:
    cause = likely_cause(_liveness(beat_alive=False, beat_last_seen=None), pause=None, overdue=1)
    assert cause == "no beat has ticked yet: is `tracker beat` running?"


def test_a_missing_beat_is_named_before_missing_workers() -> None:
    liveness = _liveness(beat_alive=False, beat_last_seen=EARLIER, poll_workers_alive=0)
    assert "tracker beat" in likely_cause(liveness, pause=None, overdue=1)


def test_beat_ticking_without_a_poll_worker_names_the_worker() -> None:
    cause = likely_cause(
        _liveness(poll_workers_alive=0, poll_worker_last_seen=EARLIER), pause=None, overdue=2
    )
    assert cause == (
        "beat ticks, but no poll worker has been seen since 20:01:05 UTC: "
        "is `tracker worker` running?"
    )
    never = likely_cause(
        _liveness(poll_workers_alive=0, poll_worker_last_seen=None), pause=None, overdue=2
    )
    assert "no poll worker has been seen:" in never and "tracker worker" in never


def test_beat_and_workers_alive_means_a_backlog() -> None:
    cause = likely_cause(_liveness(poll_workers_alive=2), pause=None, overdue=4000)
    assert "alive but behind (4000 tasks overdue)" in cause and "backlog" in cause
    assert "2 poll workers are" in cause
    assert "1 poll worker is" in likely_cause(_liveness(), pause=None, overdue=9)


def test_a_paused_provider_explains_its_tasks_whatever_the_processes_do() -> None:
    pause = ProviderPauseView("tensorslab", NOW + timedelta(minutes=10), "no credits (9000)")
    for liveness in (_liveness(), _liveness(beat_alive=False, beat_last_seen=None)):
        cause = likely_cause(liveness, pause=pause, overdue=5)
        assert cause == "polling of tensorslab is paused until 20:11:40 UTC (no credits (9000))"
    bare = likely_cause(_liveness(), pause=pause, overdue=5, reason=False)
    assert bare == "polling of tensorslab is paused until 20:11:40 UTC"


def test_a_last_tick_on_another_day_shows_its_date() -> None:
    yesterday = NOW - timedelta(days=1, hours=1)
    cause = likely_cause(
        _liveness(beat_alive=False, beat_last_seen=yesterday), pause=None, overdue=1
    )
    assert "since 2026-12-01 19:01:40 UTC" in cause


@pytest.mark.parametrize(
    ("tick_s", "expected_s"), [(1.0, 5.0), (0.3, 5.0), (2.0, 10.0), (60.0, 300.0)]
)
def test_overdue_means_five_ticks_late_and_at_least_five_seconds(
    tick_s: float, expected_s: float
) -> None:
    assert overdue_after_s(Settings(tick_interval_s=tick_s)) == expected_s


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.4, "0s"),
        (32.9, "32s"),
        (119, "119s"),
        (185, "3m 05s"),
        (7620, "2h 07m"),
        (273600, "3d 04h"),
    ],
)
def test_durations_read_like_a_person_would_say_them(seconds: float, shown: str) -> None:
    assert format_seconds(seconds) == shown
    assert "alive but behind (1 task overdue)" in likely_cause(_liveness(), pause=None, overdue=1)
