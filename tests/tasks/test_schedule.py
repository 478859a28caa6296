"""When tasks are polled next: the age-based interval, error backoff, jitter and settings."""

from __future__ import annotations

import math
import random

import pytest

from tracker.settings import Settings
from tracker.states import TaskStatus
from tracker.tasks.schedule import (
    JITTER_RATIO,
    PollPolicy,
    error_backoff_s,
    jittered,
    next_poll_delay_s,
    poll_interval_s,
)

S = TaskStatus
DEFAULT = PollPolicy()
AGE_RULED = (S.REGISTERED, S.PENDING, S.PROCESSING)  # the interval grows with the task's age


# -- normal interval ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age_s", "expected_s"),
    [
        pytest.param(0, 5.0, id="age-0s-min"),
        pytest.param(5, 5.0, id="age-5s-min"),
        pytest.param(10, 5.0, id="age-10s-half-equals-min"),
        pytest.param(20, 10.0, id="age-20s-half"),
        pytest.param(30, 15.0, id="age-30s-half"),
        pytest.param(39, 19.5, id="age-39s-half"),
        pytest.param(40, 20.0, id="age-40s-reaches-max"),
        pytest.param(600, 20.0, id="age-10min-max"),
        pytest.param(3600, 20.0, id="age-1h-max"),
    ],
)
@pytest.mark.parametrize("status", AGE_RULED, ids=str)
def test_default_interval_is_half_the_age_between_5_and_20_s(
    status: TaskStatus, age_s: float, expected_s: float
) -> None:
    assert poll_interval_s(DEFAULT, age_s=age_s, status=status) == pytest.approx(expected_s)


@pytest.mark.parametrize("age_s", [0, 10, 49, 50, 60, 299, 300, 3600], ids=lambda a: f"age-{a}s")
def test_uploading_is_always_polled_at_the_minimum_interval(age_s: float) -> None:
    assert poll_interval_s(DEFAULT, age_s=age_s, status=S.UPLOADING) == DEFAULT.min_interval_s


CUSTOM = PollPolicy(min_interval_s=2.0, max_interval_s=10.0)


@pytest.mark.parametrize(
    ("status", "age_s", "expected_s"),
    [
        pytest.param(S.PENDING, 0, 2.0, id="young-clamped-to-custom-min"),
        pytest.param(S.PENDING, 2, 2.0, id="half-1s-clamped-up-to-2s"),
        pytest.param(S.PENDING, 4, 2.0, id="half-equals-custom-min"),
        pytest.param(S.PROCESSING, 10, 5.0, id="half-inside-bounds"),
        pytest.param(S.PROCESSING, 20, 10.0, id="half-equals-custom-max"),
        pytest.param(S.PROCESSING, 200, 10.0, id="old-clamped-to-custom-max"),
        pytest.param(S.REGISTERED, 86400, 10.0, id="day-old-clamped-to-custom-max"),
        pytest.param(S.UPLOADING, 200, 2.0, id="uploading-at-custom-min"),
    ],
)
def test_a_custom_policy_clamps_to_its_own_bounds(
    status: TaskStatus, age_s: float, expected_s: float
) -> None:
    assert poll_interval_s(CUSTOM, age_s=age_s, status=status) == pytest.approx(expected_s)


def test_equal_bounds_give_a_fixed_interval() -> None:
    fixed = PollPolicy(min_interval_s=7.0, max_interval_s=7.0)
    for age_s in (0, 50, 70, 1000, 86400):
        assert poll_interval_s(fixed, age_s=age_s, status=S.PROCESSING) == 7.0


# -- error backoff --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "age_s", "streak", "expected_s"),
    [
        # processing at 12 s: normal interval 6 s, doubling per error, capped at 300 s
        pytest.param(S.PROCESSING, 12, 1, 12.0, id="1st-error-doubles"),
        pytest.param(S.PROCESSING, 12, 2, 24.0, id="2nd-error-x4"),
        pytest.param(S.PROCESSING, 12, 3, 48.0, id="3rd-error-x8"),
        pytest.param(S.PROCESSING, 12, 4, 96.0, id="4th-error-x16"),
        pytest.param(S.PROCESSING, 12, 5, 192.0, id="5th-error-x32"),
        pytest.param(S.PROCESSING, 12, 6, 300.0, id="6th-error-capped"),
        pytest.param(S.PROCESSING, 12, 50, 300.0, id="50th-error-capped"),
        pytest.param(S.PROCESSING, 12, 0, 12.0, id="streak-0-treated-as-first"),
        pytest.param(S.PROCESSING, 12, -3, 12.0, id="negative-streak-treated-as-first"),
        # uploading: from the 5 s minimum
        pytest.param(S.UPLOADING, 3600, 1, 10.0, id="uploading-1st"),
        pytest.param(S.UPLOADING, 3600, 3, 40.0, id="uploading-3rd"),
        pytest.param(S.UPLOADING, 3600, 7, 300.0, id="uploading-7th-capped"),
        # old task at the 20 s maximum
        pytest.param(S.PENDING, 3600, 1, 40.0, id="old-1st"),
        pytest.param(S.PENDING, 3600, 3, 160.0, id="old-3rd"),
        pytest.param(S.PENDING, 3600, 4, 300.0, id="old-4th-capped"),
        # brand new task at the 5 s minimum
        pytest.param(S.REGISTERED, 0, 2, 20.0, id="new-2nd"),
    ],
)
def test_error_backoff_doubles_with_each_error_up_to_the_cap(
    status: TaskStatus, age_s: float, streak: int, expected_s: float
) -> None:
    got = error_backoff_s(DEFAULT, age_s=age_s, status=status, consecutive_errors=streak)
    assert got == pytest.approx(expected_s)


@pytest.mark.parametrize("streak", [1, 2, 3, 5, 10, 100], ids=lambda n: f"streak-{n}")
@pytest.mark.parametrize("age_s", [0, 60, 299, 3600], ids=lambda a: f"age-{a}s")
@pytest.mark.parametrize("status", [S.PENDING, S.UPLOADING], ids=str)
def test_error_backoff_is_never_sooner_than_a_normal_poll_nor_later_than_the_cap(
    status: TaskStatus, age_s: float, streak: int
) -> None:
    normal = poll_interval_s(DEFAULT, age_s=age_s, status=status)
    got = error_backoff_s(DEFAULT, age_s=age_s, status=status, consecutive_errors=streak)
    assert normal < got <= DEFAULT.error_max_backoff_s


def test_error_backoff_grows_monotonically_with_the_streak() -> None:
    delays = [
        error_backoff_s(DEFAULT, age_s=60, status=S.PROCESSING, consecutive_errors=n)
        for n in range(1, 30)
    ]
    assert delays == sorted(delays)
    assert delays[-1] == DEFAULT.error_max_backoff_s


@pytest.mark.parametrize(
    ("policy", "age_s", "status", "expected_s"),
    [
        pytest.param(
            PollPolicy(error_max_backoff_s=10.0), 3600, S.PENDING, 20.0, id="cap-below-max-interval"
        ),
        pytest.param(PollPolicy(error_max_backoff_s=1.0), 0, S.PENDING, 5.0, id="cap-below-min"),
        pytest.param(
            PollPolicy(error_max_backoff_s=1.0), 0, S.UPLOADING, 5.0, id="uploading-cap-below-min"
        ),
    ],
)
def test_a_cap_below_the_normal_interval_falls_back_to_the_normal_interval(
    policy: PollPolicy, age_s: float, status: TaskStatus, expected_s: float
) -> None:
    for streak in (1, 2, 10, 10_000):
        got = error_backoff_s(policy, age_s=age_s, status=status, consecutive_errors=streak)
        assert got == expected_s


@pytest.mark.parametrize("streak", [1_000, 10_000, 10**9], ids=lambda n: f"streak-{n}")
def test_huge_streaks_do_not_overflow(streak: int) -> None:
    capped = error_backoff_s(DEFAULT, age_s=60, status=S.PENDING, consecutive_errors=streak)
    uncapped = error_backoff_s(
        PollPolicy(error_max_backoff_s=1e300), age_s=60, status=S.PENDING, consecutive_errors=streak
    )

    assert capped == DEFAULT.error_max_backoff_s
    assert math.isfinite(uncapped) and uncapped > 6.0 * 2**10


# -- jitter ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 42, 2024], ids=lambda s: f"seed-{s}")
@pytest.mark.parametrize("delay_s", [0.5, 6.0, 30.0, 600.0], ids=lambda d: f"{d}s")
def test_jitter_stays_within_ten_percent(seed: int, delay_s: float) -> None:
    rng = random.Random(seed)
    draws = [jittered(delay_s, rng) for _ in range(2000)]

    assert JITTER_RATIO == 0.1
    assert all(delay_s * 0.9 <= d <= delay_s * 1.1 for d in draws)


def test_jitter_actually_varies_and_spreads_over_the_whole_band() -> None:
    rng = random.Random(7)
    draws = [jittered(100.0, rng) for _ in range(5000)]

    assert len(set(draws)) > 4900
    assert min(draws) < 91.0 and max(draws) > 109.0
    assert sum(draws) / len(draws) == pytest.approx(100.0, abs=0.5)
    assert sum(d < 100.0 for d in draws) == pytest.approx(2500, abs=250)


def test_jitter_is_reproducible_with_the_same_seed() -> None:
    first = [jittered(10.0, random.Random(3)) for _ in range(3)]
    a, b = random.Random(99), random.Random(99)

    assert [jittered(10.0, a) for _ in range(50)] == [jittered(10.0, b) for _ in range(50)]
    assert len(set(first)) == 1


def test_jitter_of_zero_is_zero() -> None:
    assert jittered(0.0, random.Random(1)) == 0.0


# -- settings -------------------------------------------------------------------------------------


def test_policy_from_default_settings_equals_the_default_policy() -> None:
    assert PollPolicy.from_settings(Settings()) == PollPolicy()


def test_policy_from_settings_copies_every_knob() -> None:
    settings = Settings(
        poll_first_delay_s=1.5,
        poll_min_interval_s=2.5,
        poll_max_interval_s=12.0,
        error_max_backoff_s=90.0,
        no_credits_pause_s=900.0,
        not_found_grace_s=45.0,
        max_tracking_age_s=7200.0,
        poll_quiet_until_s=0.0,
    )

    assert PollPolicy.from_settings(settings) == PollPolicy(
        first_delay_s=1.5,
        min_interval_s=2.5,
        max_interval_s=12.0,
        error_max_backoff_s=90.0,
        no_credits_pause_s=900.0,
        not_found_grace_s=45.0,
        max_tracking_age_s=7200.0,
        quiet_until_s=0.0,
    )


def test_policy_from_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_POLL_MIN_INTERVAL_S", "3")
    monkeypatch.setenv("TRACKER_POLL_MAX_INTERVAL_S", "9")
    monkeypatch.setenv("TRACKER_NOT_FOUND_GRACE_S", "60")

    policy = PollPolicy.from_settings(Settings())

    assert (policy.min_interval_s, policy.max_interval_s) == (3.0, 9.0)
    assert policy.not_found_grace_s == 60.0
    assert poll_interval_s(policy, age_s=1000, status=S.PROCESSING) == 9.0


# -- the next poll: quiet period and jitter --------------------------------------------------------


@pytest.mark.parametrize("status", AGE_RULED, ids=str)
def test_after_the_first_poll_the_next_waits_for_the_end_of_the_quiet_period(
    status: TaskStatus,
) -> None:
    rng = random.Random(5)
    for age_s in (5.0, 30.0, 70.0):
        for _ in range(200):
            delay_s = next_poll_delay_s(DEFAULT, age_s=age_s, status=status, rng=rng)
            wait_s = DEFAULT.quiet_until_s - age_s
            assert wait_s * (1 - JITTER_RATIO) <= delay_s <= wait_s * (1 + JITTER_RATIO)


def test_uploading_is_never_kept_quiet() -> None:
    delay_s = next_poll_delay_s(DEFAULT, age_s=5, status=S.UPLOADING, rng=random.Random(1))
    assert delay_s <= DEFAULT.min_interval_s * (1 + JITTER_RATIO)


@pytest.mark.parametrize("age_s", [90, 120, 600, 3600])
def test_jitter_never_stretches_an_interval_past_the_maximum(age_s: float) -> None:
    rng = random.Random(7)
    delays = [
        next_poll_delay_s(DEFAULT, age_s=age_s, status=S.PROCESSING, rng=rng) for _ in range(2000)
    ]
    assert max(delays) <= DEFAULT.max_interval_s
    assert min(delays) >= DEFAULT.max_interval_s * (1 - JITTER_RATIO)
    assert min(delays) < DEFAULT.max_interval_s * 0.95  # still spread, downwards


def test_with_no_quiet_period_the_age_rule_applies_from_the_first_poll() -> None:
    policy = PollPolicy(quiet_until_s=0)
    rng = random.Random(3)
    delays = [next_poll_delay_s(policy, age_s=20, status=S.PENDING, rng=rng) for _ in range(500)]
    assert all(9.0 <= delay <= 11.0 for delay in delays)  # half the age, +-10 %
