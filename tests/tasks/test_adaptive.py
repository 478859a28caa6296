"""The adaptive schedule's arithmetic, table-tested without any server: buckets from upstream
details, samples from poll times, the early age, and the next poll it gives."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tracker.states import TaskStatus
from tracker.tasks import adaptive
from tracker.tasks.adaptive import Bucket, BucketFigures, bucket_of, completion_sample_s
from tracker.tasks.schedule import PollPolicy, next_poll_delay_s
from tracker.upstream.base import TaskMissing, TaskReport, Unavailable
from tracker.upstream.names import IMAGE_PROVIDER, VIDEO_PROVIDER

S = TaskStatus
VIDEO = {"source": "seedancev2", "resolution": "1080p", "duration": 10, "prompt": "a cat"}
IMAGE = {"category": "seedreamv45", "width": 2048, "height": 1152}
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


# -- buckets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "details", "expected"),
    [
        pytest.param(
            VIDEO_PROVIDER, VIDEO, Bucket("tensorslab", "seedancev2", "1080p", 10), id="video"
        ),
        pytest.param(
            VIDEO_PROVIDER,
            {**VIDEO, "resolution": " 1440P "},
            Bucket("tensorslab", "seedancev2", "1440p", 10),
            id="resolution-normalised",
        ),
        pytest.param(
            VIDEO_PROVIDER,
            {**VIDEO, "resolution": "4k"},
            Bucket("tensorslab", "seedancev2", "4k", 10),
            id="4k",
        ),
        pytest.param(
            IMAGE_PROVIDER,
            IMAGE,
            Bucket("tensorslab-image", "seedreamv45", "4mp", 0),
            id="image",
        ),
        pytest.param(
            IMAGE_PROVIDER,
            {**IMAGE, "width": 1024, "height": 1024},
            Bucket("tensorslab-image", "seedreamv45", "1mp", 0),
            id="image-1mp",
        ),
        pytest.param(
            IMAGE_PROVIDER,
            {**IMAGE, "width": 512, "height": 512},
            Bucket("tensorslab-image", "seedreamv45", "1mp", 0),
            id="image-small-1mp",
        ),
        pytest.param(
            IMAGE_PROVIDER,
            {**IMAGE, "width": 4096, "height": 4096},
            Bucket("tensorslab-image", "seedreamv45", "16mp", 0),
            id="image-16mp",
        ),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "duration": -5}, None, id="negative-duration"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "duration": 0}, None, id="zero-duration"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "duration": 10.5}, None, id="float-duration"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "duration": "10"}, None, id="string-duration"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "duration": True}, None, id="bool-duration"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "duration": 10**9}, None, id="huge-duration"),
        pytest.param(
            VIDEO_PROVIDER, {**VIDEO, "resolution": "banana"}, None, id="unknown-resolution"
        ),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "resolution": "0p"}, None, id="zero-resolution"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "resolution": 1080}, None, id="number-resolution"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "source": ""}, None, id="empty-model"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "source": "x" * 65}, None, id="long-model"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "source": "a b"}, None, id="model-with-space"),
        # `$` would let a trailing newline through: 65 characters for a 64-character column
        pytest.param(
            VIDEO_PROVIDER, {**VIDEO, "source": "x" * 64 + "\n"}, None, id="model-newline"
        ),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "source": "m\n"}, None, id="short-model-newline"),
        pytest.param(VIDEO_PROVIDER, {**VIDEO, "source": ["a"]}, None, id="model-not-a-string"),
        pytest.param(VIDEO_PROVIDER, {"resolution": "720p", "duration": 5}, None, id="no-model"),
        pytest.param(VIDEO_PROVIDER, {"source": "m", "duration": 5}, None, id="no-resolution"),
        pytest.param(VIDEO_PROVIDER, {}, None, id="no-details"),
        pytest.param(VIDEO_PROVIDER, None, None, id="details-none"),
        pytest.param(IMAGE_PROVIDER, {**IMAGE, "width": -1}, None, id="image-negative-width"),
        pytest.param(IMAGE_PROVIDER, {"category": "seedreamv45"}, None, id="image-no-size"),
        pytest.param("elsewhere", VIDEO, None, id="unknown-provider"),
    ],
)
def test_the_bucket_comes_from_sound_details_only(
    provider: str, details: Any, expected: Bucket | None
) -> None:
    assert bucket_of(provider, details) == expected


def test_a_bucket_has_a_one_line_label() -> None:
    assert (
        Bucket("tensorslab", "seedancev2", "1080p", 10).label() == "tensorslab seedancev2 1080p 10s"
    )
    assert (
        Bucket("tensorslab-image", "zimage", "1024x1024", 0).label()
        == "tensorslab-image zimage 1024x1024"
    )


# -- samples --------------------------------------------------------------------------------------


def _sample(
    unfinished_s: float | None, completed_s: float, max_interval_s: float = 20
) -> float | None:
    return completion_sample_s(
        created_at=T0,
        last_seen_unfinished_at=None
        if unfinished_s is None
        else T0 + timedelta(seconds=unfinished_s),
        completed_at=T0 + timedelta(seconds=completed_s),
        max_interval_s=max_interval_s,
    )


@pytest.mark.parametrize(
    ("unfinished_s", "completed_s", "expected"),
    [
        pytest.param(300, 318, 309, id="normal-window-its-middle"),
        pytest.param(300, 330, 315, id="one-and-a-half-intervals-still-normal"),
        pytest.param(5, 290, 5, id="skipped-polls-its-start"),
        pytest.param(90, 200, 90, id="quiet-period-its-start"),
        pytest.param(None, 5, None, id="completed-at-its-first-poll-tells-nothing"),
        pytest.param(-3, 10, None, id="seen-before-registration-nonsense"),
        pytest.param(30, 20, None, id="completed-before-seen-unfinished-nonsense"),
    ],
)
def test_a_sample_is_the_finishing_age_as_far_as_the_polls_tell(
    unfinished_s: float | None, completed_s: float, expected: float | None
) -> None:
    assert _sample(unfinished_s, completed_s) == expected


def test_only_the_most_recent_samples_are_kept() -> None:
    kept = adaptive.kept_samples([float(n) for n in range(250)], [1000.04] * 10)
    assert len(kept) == adaptive.SAMPLE_SIZE == 256
    assert kept[0] == 4.0 and kept[-1] == 1000.0


# -- the early age --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ages", "expected"),
    [
        pytest.param([], None, id="none"),
        pytest.param([300.0] * 19, None, id="too-few"),
        pytest.param([300.0] * 19 + [200.0], 180.0, id="minimum-samples-the-smallest-less-10pc"),
        pytest.param([float(n) for n in range(100, 356)], 102 * 0.9, id="256-samples-the-third"),
        pytest.param([0.0] * 30, 0.0, id="zero"),
    ],
)
def test_the_early_age_is_a_low_quantile_less_a_margin(
    ages: list[float], expected: float | None
) -> None:
    assert adaptive.early_age_s(ages) == (None if expected is None else pytest.approx(expected))


def test_bucket_figures_give_quantiles_and_the_early_age() -> None:
    figures = BucketFigures(
        bucket=Bucket("tensorslab", "m", "720p", 5),
        samples=500,
        ages_s=tuple(float(n) for n in range(1, 101)),
    )
    assert figures.quantile_s(0.01) == 1.0 and figures.quantile_s(0.5) == 50.0
    assert figures.early_age_s == pytest.approx(0.9)
    assert BucketFigures(bucket=figures.bucket, samples=0, ages_s=()).quantile_s(0.5) is None


# -- the next poll --------------------------------------------------------------------------------

VIDEO_POLICY = PollPolicy()  # first poll 5 s, quiet until 90 s, then every 5..20 s


def _with_early(early_s: float, policy: PollPolicy = VIDEO_POLICY) -> PollPolicy:
    return dataclasses.replace(policy, early_age_s=early_s)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("age_s", [5.0, 30.0, 120.0])
def test_after_the_first_poll_the_next_comes_in_the_last_interval_before_the_early_age(
    seed: int, age_s: float
) -> None:
    policy = _with_early(540.0)
    delay = next_poll_delay_s(policy, age_s=age_s, status=S.PROCESSING, rng=random.Random(seed))
    assert 540.0 - policy.max_interval_s <= age_s + delay <= 540.0


@pytest.mark.parametrize("seed", range(20))
def test_a_short_wait_to_the_early_age_is_jittered_by_a_tenth_of_it(seed: int) -> None:
    policy = _with_early(30.0, dataclasses.replace(VIDEO_POLICY, quiet_until_s=0))
    delay = next_poll_delay_s(policy, age_s=15.0, status=S.PENDING, rng=random.Random(seed))
    assert 13.5 <= delay <= 15.0


@pytest.mark.parametrize(
    ("early_s", "age_s", "status", "low_s", "high_s"),
    [
        pytest.param(0.0, 5.0, S.PROCESSING, 76.5, 93.5, id="none-learned-quiet-period"),
        pytest.param(80.0, 5.0, S.PROCESSING, 76.5, 93.5, id="early-age-inside-quiet-period"),
        pytest.param(540.0, 5.0, S.UPLOADING, 4.5, 5.5, id="uploading-not-held-back"),
        pytest.param(540.0, 530.0, S.PROCESSING, 18.0, 20.0, id="past-the-early-age-every-max"),
        pytest.param(540.0, 600.0, S.PROCESSING, 18.0, 20.0, id="long-past-every-max"),
    ],
)
def test_elsewhere_the_default_schedule_holds(
    early_s: float, age_s: float, status: TaskStatus, low_s: float, high_s: float
) -> None:
    for seed in range(20):
        delay = next_poll_delay_s(
            _with_early(early_s), age_s=age_s, status=status, rng=random.Random(seed)
        )
        assert low_s <= delay <= high_s


@pytest.mark.parametrize("max_interval_s", [10.0, 20.0, 30.0])
def test_every_task_finishing_after_the_early_age_is_seen_within_the_maximum_interval(
    max_interval_s: float,
) -> None:
    policy = PollPolicy(max_interval_s=max_interval_s, early_age_s=540.0)
    rng = random.Random(7)
    for _ in range(300):
        finished_s = rng.uniform(540.0, 900.0)
        moment = policy.first_delay_s
        while moment < finished_s:
            moment += next_poll_delay_s(policy, age_s=moment, status=S.PROCESSING, rng=rng)
        assert moment - finished_s <= max_interval_s


def test_a_task_finishing_before_the_early_age_is_seen_at_it() -> None:
    policy = PollPolicy(early_age_s=540.0)
    rng = random.Random(3)
    moment = policy.first_delay_s
    polls = 1
    while moment < 200.0:  # finished at 200 s, earlier than its bucket ever did
        moment += next_poll_delay_s(policy, age_s=moment, status=S.PROCESSING, rng=rng)
        polls += 1
    assert polls == 2 and 520.0 <= moment <= 540.0  # late by at most 540 - 200 s


# -- the policy of one answer ---------------------------------------------------------------------

LEARNED = {Bucket("tensorslab", "seedancev2", "1080p", 10): 270.0}


def test_an_answer_naming_a_learned_bucket_gets_its_early_age() -> None:
    report = TaskReport(status=S.PROCESSING, details=VIDEO)
    policy, bucket = adaptive.policy_for(VIDEO_POLICY, VIDEO_PROVIDER, report, LEARNED)
    assert bucket == Bucket("tensorslab", "seedancev2", "1080p", 10)
    assert policy == _with_early(270.0)


@pytest.mark.parametrize(
    ("result", "named"),
    [
        pytest.param(
            TaskReport(status=S.PROCESSING, details={**VIDEO, "duration": 5}), True, id="unlearned"
        ),
        pytest.param(
            TaskReport(status=S.PROCESSING, details={**VIDEO, "duration": -1}), False, id="nonsense"
        ),
        pytest.param(TaskReport(status=S.PROCESSING), False, id="no-details"),
        pytest.param(TaskMissing(), False, id="missing"),
        pytest.param(Unavailable("HTTP 503"), False, id="error"),
    ],
)
def test_other_answers_keep_the_default_schedule(result: Any, named: bool) -> None:
    policy, bucket = adaptive.policy_for(VIDEO_POLICY, VIDEO_PROVIDER, result, LEARNED)
    assert policy is VIDEO_POLICY
    assert (bucket is not None) is named
