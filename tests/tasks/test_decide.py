"""`decide()` as a decision table: what one poll's answer does to one task.

Every row uses a fixed `now` and a seeded random generator, so the jitter is reproducible; delays
are checked against the +-10% band around what the schedule says, never against exact values.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tracker.states import TaskStatus
from tracker.tasks.decide import (
    RETRY_AFTER_SPREAD,
    PauseCause,
    PollOutcome,
    ProviderPause,
    TaskSnapshot,
    decide,
    retry_after_delay_s,
)
from tracker.tasks.schedule import PollPolicy, error_backoff_s, poll_interval_s
from tracker.upstream.base import (
    ContractViolation,
    InsufficientCredits,
    PollResult,
    TaskMissing,
    TaskReport,
    Throttled,
    Unauthorized,
    Unavailable,
    Unreachable,
    UpstreamFailure,
    UpstreamProblem,
)

S = TaskStatus
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
POLICY = PollPolicy(quiet_until_s=0)  # min 5 s, max 20 s, errors up to 300 s, grace 300 s, 1 day
AGE_S = 12.0  # a task 12 s old: normal interval 6 s (uploading: 5 s)
LIVE = (S.REGISTERED, S.PENDING, S.PROCESSING, S.UPLOADING)
TERMINAL = (S.COMPLETED, S.FAILED, S.NOT_FOUND, S.EXPIRED, S.CANCELLED)
REPORTABLE = (S.PENDING, S.PROCESSING, S.UPLOADING, S.COMPLETED, S.FAILED)
URLS = ("https://cdn.example.invalid/a.mp4", "https://cdn.example.invalid/b.mp4")
DETAILS = {"prompt": "a cat surfing", "resolution": "720p", "fps": 24, "seed": 0}


def snapshot(
    status: TaskStatus,
    *,
    age_s: float = AGE_S,
    not_found_since: datetime | None = None,
    errors: int = 0,
) -> TaskSnapshot:
    return TaskSnapshot(
        status=status,
        created_at=NOW - timedelta(seconds=age_s),
        not_found_since=not_found_since,
        consecutive_errors=errors,
    )


def run(
    task: TaskSnapshot, result: PollResult, *, policy: PollPolicy = POLICY, seed: int = 0
) -> PollOutcome:
    return decide(task, result, now=NOW, policy=policy, rng=random.Random(seed))


def delay_s(outcome: PollOutcome) -> float:
    assert outcome.next_poll_at is not None, "expected another poll"
    return (outcome.next_poll_at - NOW).total_seconds()


def within_jitter(value: float, base: float) -> bool:
    return base * 0.9 - 1e-9 <= value <= base * 1.1 + 1e-9


def report(
    status: TaskStatus,
    *,
    result_urls: tuple[str, ...] = (),
    message: str = "",
    details: dict[str, object] | None = None,
    payload: dict[str, object] | None = None,
) -> TaskReport:
    return TaskReport(status, result_urls, message, details or {}, payload or {})


# -- a task report from every live status -------------------------------------------------------

REPORT_ROWS = [
    pytest.param(current, reported, id=f"{current}-reports-{reported}")
    for current, reported in itertools.product(LIVE, REPORTABLE)
]


@pytest.mark.parametrize(("current", "reported"), REPORT_ROWS)
def test_a_report_moves_the_task_to_the_reported_status(
    current: TaskStatus, reported: TaskStatus
) -> None:
    outcome = run(snapshot(current), TaskReport(reported))

    if reported is current:
        assert outcome.new_status is None, "the same status is not a change"
    else:
        assert outcome.new_status is reported
    assert outcome.is_terminal is reported.is_terminal


@pytest.mark.parametrize(("current", "reported"), REPORT_ROWS)
def test_after_a_report_the_next_poll_follows_the_schedule_or_stops_when_terminal(
    current: TaskStatus, reported: TaskStatus
) -> None:
    outcome = run(snapshot(current), TaskReport(reported))

    if reported.is_terminal:
        assert outcome.next_poll_at is None
    else:
        normal = poll_interval_s(POLICY, age_s=AGE_S, status=reported)
        assert within_jitter(delay_s(outcome), normal)


@pytest.mark.parametrize(("current", "reported"), REPORT_ROWS)
def test_a_report_clears_errors_and_the_not_found_clock(
    current: TaskStatus, reported: TaskStatus
) -> None:
    task = snapshot(current, not_found_since=NOW - timedelta(seconds=100), errors=4)

    outcome = run(task, TaskReport(reported))

    assert outcome.consecutive_errors == 0
    assert outcome.not_found_since is None
    assert outcome.last_error is None
    assert outcome.counts_as_error is False
    assert outcome.provider_pause is None


@pytest.mark.parametrize(
    ("current", "answer", "expected"),
    [
        pytest.param(
            S.UPLOADING,
            report(S.COMPLETED, result_urls=URLS, details=DETAILS),
            {"new_status": S.COMPLETED, "result_urls": URLS, "details": DETAILS},
            id="completed-with-urls-and-details",
        ),
        pytest.param(
            S.PROCESSING,
            report(S.FAILED, message="content policy violation"),
            {"new_status": S.FAILED, "upstream_message": "content policy violation"},
            id="failed-with-message",
        ),
        pytest.param(
            S.PENDING,
            report(S.PROCESSING, details=DETAILS),
            {"new_status": S.PROCESSING, "details": DETAILS, "result_urls": None},
            id="processing-with-details",
        ),
        pytest.param(
            S.PROCESSING,
            report(S.PROCESSING, details=DETAILS),
            {"new_status": None, "details": DETAILS},
            id="same-status-still-carries-details",
        ),
        pytest.param(
            S.PROCESSING,
            report(S.COMPLETED),
            {"result_urls": None, "upstream_message": None, "details": None},
            id="empty-fields-mean-keep-what-is-stored",
        ),
        pytest.param(
            S.REGISTERED,
            report(S.COMPLETED, result_urls=URLS[:1], payload={"code": 1000}),
            {"new_status": S.COMPLETED, "result_urls": URLS[:1], "payload": {"code": 1000}},
            id="registered-completed-at-once-with-payload",
        ),
    ],
)
def test_a_report_carries_urls_message_details_and_payload(
    current: TaskStatus, answer: TaskReport, expected: dict[str, object]
) -> None:
    outcome = run(snapshot(current), answer)

    for name, value in expected.items():
        assert getattr(outcome, name) == value, name


# -- 404: not found, with a grace period ---------------------------------------------------------

GRACE_S = POLICY.not_found_grace_s


@pytest.mark.parametrize("current", LIVE, ids=str)
def test_the_first_404_starts_the_not_found_clock_and_keeps_polling(current: TaskStatus) -> None:
    outcome = run(snapshot(current, errors=2), TaskMissing("task not found"))

    assert outcome.new_status is None
    assert outcome.not_found_since == NOW
    assert outcome.next_poll_at is not None
    assert NOW < outcome.next_poll_at <= NOW + timedelta(seconds=GRACE_S)
    assert within_jitter(delay_s(outcome), poll_interval_s(POLICY, age_s=AGE_S, status=current))
    assert outcome.last_error is not None and "not found" in outcome.last_error
    assert "task not found" in outcome.last_error
    assert outcome.counts_as_error is False
    assert outcome.consecutive_errors == 0


@pytest.mark.parametrize(
    "missing_for_s",
    [1, 100, 250, 290, 295, 298, 299],
    ids=lambda s: f"missing-for-{s}s",
)
@pytest.mark.parametrize("current", [S.REGISTERED, S.PROCESSING], ids=str)
def test_a_later_404_keeps_the_clock_and_polls_no_later_than_the_grace_deadline(
    current: TaskStatus, missing_for_s: float
) -> None:
    since = NOW - timedelta(seconds=missing_for_s)
    deadline = since + timedelta(seconds=GRACE_S)

    outcome = run(snapshot(current, not_found_since=since), TaskMissing())

    assert outcome.new_status is None
    assert outcome.not_found_since == since
    assert outcome.next_poll_at is not None
    assert NOW < outcome.next_poll_at <= deadline
    assert outcome.last_error is not None and f"{missing_for_s} s" in outcome.last_error


def test_a_404_right_before_the_deadline_still_waits_half_a_second() -> None:
    since = NOW - timedelta(seconds=GRACE_S - 0.1)

    outcome = run(snapshot(S.PENDING, not_found_since=since), TaskMissing())

    assert outcome.new_status is None
    assert delay_s(outcome) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "missing_for_s", [300, 300.5, 301, 1000, 86000], ids=lambda s: f"missing-for-{s}s"
)
@pytest.mark.parametrize("current", LIVE, ids=str)
def test_a_404_at_or_after_the_grace_period_is_terminal_not_found(
    current: TaskStatus, missing_for_s: float
) -> None:
    since = NOW - timedelta(seconds=missing_for_s)

    outcome = run(snapshot(current, not_found_since=since), TaskMissing("task not found"))

    assert outcome.new_status is S.NOT_FOUND
    assert outcome.is_terminal
    assert outcome.next_poll_at is None
    assert outcome.not_found_since == since
    assert outcome.upstream_message == "task not found"
    assert outcome.last_error is not None and "not found" in outcome.last_error


@pytest.mark.parametrize(
    ("grace_s", "missing_for_s", "terminal"),
    [
        pytest.param(30, 29, False, id="grace-30s-missing-29s"),
        pytest.param(30, 30, True, id="grace-30s-missing-30s"),
        pytest.param(3600, 3599, False, id="grace-1h-missing-just-under"),
        pytest.param(3600, 3600, True, id="grace-1h-missing-1h"),
    ],
)
def test_the_grace_period_comes_from_the_policy(
    grace_s: float, missing_for_s: float, terminal: bool
) -> None:
    policy = PollPolicy(not_found_grace_s=grace_s)
    since = NOW - timedelta(seconds=missing_for_s)

    outcome = run(snapshot(S.PENDING, not_found_since=since), TaskMissing(), policy=policy)

    assert (outcome.new_status is S.NOT_FOUND) is terminal


def test_a_404_with_no_message_says_http_404() -> None:
    outcome = run(snapshot(S.PENDING), TaskMissing())

    assert outcome.last_error is not None and "HTTP 404" in outcome.last_error


def test_missing_then_found_resets_the_not_found_clock() -> None:
    first = run(snapshot(S.REGISTERED), TaskMissing())
    assert first.not_found_since == NOW

    found = run(snapshot(S.REGISTERED, not_found_since=first.not_found_since), report(S.PENDING))
    assert found.new_status is S.PENDING
    assert found.not_found_since is None
    assert found.last_error is None

    again = run(snapshot(S.PENDING, not_found_since=found.not_found_since), TaskMissing())
    assert again.not_found_since == NOW, "a new 404 streak starts from scratch"
    assert again.new_status is None


# -- problems: no answer this time ---------------------------------------------------------------

PROBLEMS = [
    pytest.param(Throttled("HTTP 429: too many requests"), False, id="throttled-no-retry-after"),
    pytest.param(Throttled("HTTP 429: slow down", retry_after_s=3.0), True, id="throttled-3s"),
    pytest.param(InsufficientCredits("code 9000: insufficient credits"), True, id="no-credits"),
    pytest.param(UpstreamFailure("code 9999: task query failed"), False, id="upstream-failure"),
    pytest.param(Unauthorized("HTTP 401: API key refused: x"), True, id="unauthorized"),
    pytest.param(ContractViolation("unknown code 1234: {}"), False, id="contract-violation"),
    pytest.param(Unavailable("HTTP 503: <html>"), False, id="unavailable-503"),
    pytest.param(Unavailable("timed out: ReadTimeout"), False, id="unavailable-timeout"),
    # One failed connection is no pause: a run of them is, decided per provider (pauses.py).
    pytest.param(Unreachable("connection failed: refused"), False, id="unreachable"),
]


@pytest.mark.parametrize("prior_errors", [0, 4], ids=lambda n: f"after-{n}-errors")
@pytest.mark.parametrize("current", LIVE, ids=str)
@pytest.mark.parametrize(("problem", "pauses_provider"), PROBLEMS)
def test_a_problem_changes_nothing_but_counts_as_an_error_and_backs_off(
    problem: UpstreamProblem, pauses_provider: bool, current: TaskStatus, prior_errors: int
) -> None:
    since = NOW - timedelta(seconds=10)
    task = snapshot(current, errors=prior_errors, not_found_since=since)

    outcome = run(task, problem)

    assert outcome.new_status is None
    assert not outcome.is_terminal
    assert outcome.counts_as_error is True
    assert outcome.consecutive_errors == prior_errors + 1
    assert outcome.last_error == problem.describe()
    assert (
        outcome.last_error.startswith(f"{problem.kind}: ") and problem.message in outcome.last_error
    )
    assert outcome.not_found_since == since, "a problem neither starts nor stops the 404 clock"
    assert (outcome.result_urls, outcome.upstream_message, outcome.details) == (None, None, None)
    normal = poll_interval_s(POLICY, age_s=AGE_S, status=current)
    assert delay_s(outcome) > normal * 1.1, "later than any normal poll, jitter included"
    backoff = error_backoff_s(
        POLICY, age_s=AGE_S, status=current, consecutive_errors=prior_errors + 1
    )
    assert delay_s(outcome) >= backoff * 0.9
    assert (outcome.provider_pause is not None) is pauses_provider


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        pytest.param("throttled", Throttled("x"), id="throttled"),
        pytest.param("insufficient_credits", InsufficientCredits("x"), id="no-credits"),
        pytest.param("upstream_failure", UpstreamFailure("x"), id="upstream-failure"),
        pytest.param("unauthorized", Unauthorized("x"), id="unauthorized"),
        pytest.param("contract_violation", ContractViolation("x"), id="contract-violation"),
        pytest.param("unavailable", Unavailable("x"), id="unavailable"),
    ],
)
def test_each_problem_describes_itself_with_its_kind(kind: str, problem: UpstreamProblem) -> None:
    assert problem.kind == kind
    assert problem.describe() == f"{kind}: x"


@pytest.mark.parametrize("streak", range(0, 8), ids=lambda n: f"after-{n}-errors")
def test_the_error_delay_grows_with_the_streak(streak: int) -> None:
    outcome = run(snapshot(S.PROCESSING, errors=streak), Unavailable("HTTP 502: bad gateway"))

    expected = error_backoff_s(
        POLICY, age_s=AGE_S, status=S.PROCESSING, consecutive_errors=streak + 1
    )
    assert within_jitter(delay_s(outcome), expected)
    assert delay_s(outcome) <= POLICY.error_max_backoff_s * 1.1


@pytest.mark.parametrize("seed", range(50), ids=lambda s: f"seed-{s}")
def test_no_credits_pauses_the_provider_for_at_least_the_pause_setting(seed: int) -> None:
    outcome = run(snapshot(S.PROCESSING), InsufficientCredits("code 9000: no"), seed=seed)

    assert delay_s(outcome) >= POLICY.no_credits_pause_s
    assert outcome.provider_pause is not None
    assert outcome.provider_pause.until >= NOW + timedelta(seconds=POLICY.no_credits_pause_s)
    assert outcome.provider_pause.until == outcome.next_poll_at
    assert "insufficient_credits" in outcome.provider_pause.reason
    assert outcome.provider_pause.cause is PauseCause.NO_CREDITS


@pytest.mark.parametrize("code", [401, 403])
def test_a_refused_key_pauses_the_provider_for_the_auth_pause_then_a_probe(code: int) -> None:
    problem = Unauthorized(f"HTTP {code}: API key refused: bad key")
    outcome = run(snapshot(S.PENDING), problem)

    assert outcome.provider_pause == ProviderPause(
        NOW + timedelta(seconds=POLICY.auth_pause_s), problem.describe(), PauseCause.UNAUTHORIZED
    )
    assert delay_s(outcome) >= POLICY.auth_pause_s, "the task waits out the pause too"
    assert PauseCause.UNAUTHORIZED.needs_probe and not PauseCause.RATE_LIMITED.needs_probe


@pytest.mark.parametrize("seed", range(50), ids=lambda s: f"seed-{s}")
def test_throttled_with_retry_after_100s_waits_at_least_100s_whatever_the_jitter(
    seed: int,
) -> None:
    outcome = run(snapshot(S.PROCESSING), Throttled("HTTP 429", retry_after_s=100.0), seed=seed)

    assert delay_s(outcome) >= 100.0
    assert outcome.provider_pause == ProviderPause(
        NOW + timedelta(seconds=100), "throttled: HTTP 429", PauseCause.RATE_LIMITED
    )


@pytest.mark.parametrize(
    ("problem", "current", "prior_errors"),
    [
        pytest.param(Throttled("HTTP 429", retry_after_s=100.0), S.PROCESSING, 0, id="429-100s"),
        pytest.param(Throttled("HTTP 429", retry_after_s=30.0), S.PENDING, 0, id="429-30s"),
        pytest.param(Throttled("HTTP 429", retry_after_s=60.0), S.UPLOADING, 2, id="429-60s"),
        pytest.param(Unavailable("HTTP 503", retry_after_s=120.0), S.PENDING, 0, id="503-120s"),
    ],
)
def test_tasks_throttled_together_come_back_spread_over_a_window_after_the_retry_after(
    problem: UpstreamProblem, current: TaskStatus, prior_errors: int
) -> None:
    assert problem.retry_after_s is not None
    retry_after = problem.retry_after_s
    task = snapshot(current, errors=prior_errors)
    backoff = error_backoff_s(
        POLICY, age_s=AGE_S, status=current, consecutive_errors=prior_errors + 1
    )
    assert backoff * 1.1 < retry_after, "the Retry-After, not the backoff, decides these rows"

    delays = sorted(delay_s(run(task, problem, seed=seed)) for seed in range(200))

    assert delays[0] >= retry_after, "never sooner than the Retry-After"
    assert delays[-1] <= retry_after * (1 + RETRY_AFTER_SPREAD) + 1e-9
    # Spread over the window, not released at once: every fifth of it gets some tasks.
    width = retry_after * RETRY_AFTER_SPREAD
    fifths = Counter(min(int((d - retry_after) / width * 5), 4) for d in delays)
    assert sorted(fifths) == [0, 1, 2, 3, 4], fifths
    assert max(fifths.values()) < len(delays) / 2


@pytest.mark.parametrize(
    ("retry_after", "draw", "expected"),
    [(10.0, 0.0, 10.0), (10.0, 0.5, 12.5), (10.0, 0.999, 14.995), (0.0, 0.7, 0.0)],
)
def test_the_retry_after_delay_is_the_retry_after_stretched_by_up_to_the_spread(
    retry_after: float, draw: float, expected: float
) -> None:
    class Fixed(random.Random):
        def random(self) -> float:
            return draw

    assert retry_after_delay_s(retry_after, Fixed()) == pytest.approx(expected)


def test_a_short_retry_after_does_not_shorten_the_backoff() -> None:
    task = snapshot(S.PROCESSING, errors=3)  # 4th error: 6 s * 16 = 96 s

    outcome = run(task, Throttled("HTTP 429", retry_after_s=1.0))

    assert within_jitter(delay_s(outcome), 96.0)


def test_a_5xx_retry_after_is_honoured_for_the_task() -> None:
    outcome = run(snapshot(S.PENDING), Unavailable("HTTP 503", retry_after_s=120.0))

    assert delay_s(outcome) >= 120.0


def test_throttled_with_retry_after_zero_does_not_pause_the_provider() -> None:
    outcome = run(snapshot(S.PENDING), Throttled("HTTP 429", retry_after_s=0.0))

    assert outcome.provider_pause is None
    assert outcome.counts_as_error


# -- expiry ---------------------------------------------------------------------------------------

DAY_S = POLICY.max_tracking_age_s
OLD_SINCE = NOW - timedelta(seconds=10)


@pytest.mark.parametrize(
    ("current", "answer", "age_s", "expected"),
    [
        pytest.param(S.PROCESSING, report(S.PROCESSING), DAY_S + 1, S.EXPIRED, id="same-status"),
        pytest.param(S.PENDING, report(S.PROCESSING), DAY_S + 1, S.EXPIRED, id="live-move"),
        pytest.param(S.PENDING, report(S.UPLOADING), DAY_S * 3, S.EXPIRED, id="3-days-old"),
        pytest.param(S.UPLOADING, report(S.PENDING), DAY_S, S.EXPIRED, id="exactly-max-age"),
        pytest.param(S.PROCESSING, report(S.COMPLETED), DAY_S + 1, S.COMPLETED, id="completed"),
        pytest.param(S.PROCESSING, report(S.FAILED), DAY_S + 1, S.FAILED, id="failed-wins"),
        pytest.param(S.REGISTERED, TaskMissing(), DAY_S + 1, S.EXPIRED, id="first-404"),
        pytest.param(S.PENDING, Unavailable("HTTP 500"), DAY_S + 1, S.EXPIRED, id="5xx"),
        pytest.param(S.PENDING, Unauthorized("HTTP 401"), DAY_S + 1, S.EXPIRED, id="401"),
        pytest.param(S.PENDING, Throttled("429", 30.0), DAY_S + 1, S.EXPIRED, id="throttled"),
        pytest.param(S.PENDING, InsufficientCredits("9000"), DAY_S + 1, S.EXPIRED, id="9000"),
        pytest.param(S.PROCESSING, report(S.PROCESSING), DAY_S - 1, None, id="just-young"),
        pytest.param(S.PROCESSING, report(S.COMPLETED), DAY_S - 1, S.COMPLETED, id="young-done"),
    ],
)
def test_a_task_older_than_the_maximum_age_expires_unless_the_poll_ends_it(
    current: TaskStatus, answer: PollResult, age_s: float, expected: TaskStatus | None
) -> None:
    outcome = run(snapshot(current, age_s=age_s), answer)

    assert outcome.new_status is expected
    assert (outcome.next_poll_at is None) is (expected is not None and expected.is_terminal)


def test_an_old_task_missing_past_the_grace_is_not_found_rather_than_expired() -> None:
    since = NOW - timedelta(seconds=GRACE_S + 1)
    task = snapshot(S.PENDING, age_s=DAY_S + 1, not_found_since=since)

    outcome = run(task, TaskMissing())

    assert outcome.new_status is S.NOT_FOUND


def test_the_maximum_age_comes_from_the_policy() -> None:
    policy = PollPolicy(max_tracking_age_s=3600)

    old = run(snapshot(S.PENDING, age_s=3600), report(S.PENDING), policy=policy)
    young = run(snapshot(S.PENDING, age_s=3599), report(S.PENDING), policy=policy)

    assert old.new_status is S.EXPIRED and old.next_poll_at is None
    assert young.new_status is None and young.next_poll_at is not None


# -- misuse and determinism -----------------------------------------------------------------------

ANSWERS = [
    pytest.param(report(S.COMPLETED, result_urls=URLS), id="report"),
    pytest.param(TaskMissing(), id="missing"),
    pytest.param(Unavailable("HTTP 500"), id="unavailable"),
]


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("current", TERMINAL, ids=str)
def test_deciding_on_a_terminal_task_is_refused(current: TaskStatus, answer: PollResult) -> None:
    with pytest.raises(ValueError, match=str(current)):
        run(snapshot(current), answer)


@pytest.mark.parametrize("answer", [*ANSWERS, pytest.param(report(S.PENDING), id="pending")])
def test_the_same_seed_gives_the_same_decision(answer: PollResult) -> None:
    assert run(snapshot(S.PROCESSING), answer, seed=5) == run(
        snapshot(S.PROCESSING), answer, seed=5
    )


def test_different_seeds_spread_tasks_polled_together() -> None:
    times = {
        run(snapshot(S.PROCESSING), report(S.PROCESSING), seed=s).next_poll_at for s in range(20)
    }

    assert len(times) == 20
