"""Politeness on a realistic mix: the adaptive schedule, trained, against the default and clients.

A stream of tasks drawn from buckets that take different times, as TensorsLab's videos do
(720p 5 s videos finish 2-3 minutes after registration, 1080p 10 s ones 5-8 minutes, 1440p 15 s
ones 10-15 minutes, evenly within each range), plus a share that fail at once (a refused prompt:
within 4 s, before the first poll) and a share that fail mid-run (at a uniform point of the
time they would have taken). The first `TRAIN_SHARE` of the stream trains the adaptive schedule
exactly as tracker learns in production: each training task is polled by the schedule tracker
starts with (the default: nothing learned yet), and each completed one gives the sample
`tracker.tasks.adaptive.completion_sample_s` makes of its last unfinished and its completed poll;
each bucket's early age is `adaptive.early_age_s` of its kept samples (`adaptive.kept_samples`).
The rest of the stream is measured under every schedule, all from the same finishing times.

For each schedule: polls per task (up to and including the poll that saw the end), detection
delay (that poll's time less the finishing time) p50 / p95 / max, and the share of tasks seen
later than the schedule's bound: its maximum interval (TensorsLab's client: its 30 s cap).
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tracker.states import TaskStatus
from tracker.tasks import adaptive
from tracker.tasks.adaptive import Bucket
from tracker.tasks.schedule import PollPolicy, next_poll_delay_s

__all__ = [
    "BUCKETS",
    "INTERVALS_S",
    "MixTask",
    "compute_mix",
    "draw_stream",
    "learn",
    "mix_schedules",
]

PollTimes = Callable[[random.Random], Iterator[float]]  # seconds after registration


@dataclass(frozen=True, slots=True)
class MixBucket:
    name: str
    bucket: Bucket
    min_s: float
    max_s: float


BUCKETS = (
    MixBucket("720p 5 s", Bucket("tensorslab", "seedancev2", "720p", 5), 120.0, 180.0),
    MixBucket("1080p 10 s", Bucket("tensorslab", "seedancev2", "1080p", 10), 300.0, 480.0),
    MixBucket("1440p 15 s", Bucket("tensorslab", "seedancev2", "1440p", 15), 600.0, 900.0),
)
EARLY_FAILURE_SHARE = 0.05  # fail within EARLY_FAILURE_WITHIN_S of registration
EARLY_FAILURE_WITHIN_S = 4.0
MIDRUN_FAILURE_SHARE = 0.01  # fail at a uniform point of the run they would have had
TRAIN_SHARE = 0.25
INTERVALS_S = (10.0, 20.0, 30.0)  # TRACKER_POLL_MAX_INTERVAL_S values measured
TENSORSLAB_CLIENT = "10 s growing x1.3 to 30 s (TensorsLab client)"
# For the schedule that goes on learning while it is measured: one task registered every this
# many seconds, and a completed task's sample used this long after the poll that saw it (the
# refresh's lag, TRACKER_POLL_LEASE_S + 30 s, plus up to one refresh interval).
ARRIVAL_EVERY_S = 2.0
LEARNED_AFTER_S = 180.0


@dataclass(frozen=True, slots=True)
class MixTask:
    bucket: MixBucket
    finish_s: float  # seconds after registration
    outcome: str  # completed, failed at once, failed mid-run


def draw_stream(
    tasks: int, seed: int, *, midrun_failure_share: float = MIDRUN_FAILURE_SHARE
) -> list[MixTask]:
    rng = random.Random(seed)
    stream = []
    for _ in range(tasks):
        kind = rng.choice(BUCKETS)
        run_s = rng.uniform(kind.min_s, kind.max_s)
        roll = rng.random()
        if roll < EARLY_FAILURE_SHARE:
            stream.append(MixTask(kind, rng.uniform(0.0, EARLY_FAILURE_WITHIN_S), "failed at once"))
        elif roll < EARLY_FAILURE_SHARE + midrun_failure_share:
            stream.append(MixTask(kind, rng.uniform(0.0, run_s), "failed mid-run"))
        else:
            stream.append(MixTask(kind, run_s, "completed"))
    return stream


def tracker_times(policy: PollPolicy) -> PollTimes:
    """tracker's schedule (`next_poll_delay_s`, with its jitter) for a task answering
    `processing` until it ends."""

    def times(rng: random.Random) -> Iterator[float]:
        moment = policy.first_delay_s
        while True:
            yield moment
            moment += next_poll_delay_s(policy, age_s=moment, status=TaskStatus.PROCESSING, rng=rng)

    return times


def fixed(interval_s: float) -> PollTimes:
    def times(_: random.Random) -> Iterator[float]:
        moment = interval_s
        while True:
            yield moment
            moment += interval_s

    return times


def growing(first_s: float, factor: float, cap_s: float) -> PollTimes:
    """TensorsLab's published client: wait `first_s`, then multiply the wait up to `cap_s`."""

    def times(_: random.Random) -> Iterator[float]:
        wait, moment = first_s, first_s
        while True:
            yield moment
            wait = min(wait * factor, cap_s)
            moment += wait

    return times


def _walk(times: PollTimes, finish_s: float, rng: random.Random) -> tuple[int, float | None, float]:
    """(polls up to the one that saw the end, the last poll before the end or None, that poll)."""
    last_unfinished = None
    for count, moment in enumerate(times(rng), start=1):
        if moment >= finish_s:
            return count, last_unfinished, moment
        last_unfinished = moment
    raise AssertionError("unreachable: poll times never end")


def learn(training: list[MixTask], policy: PollPolicy, rng: random.Random) -> dict[Bucket, float]:
    """Each bucket's early age after the training tasks, learned as tracker learns."""
    ages: dict[Bucket, tuple[float, ...]] = defaultdict(tuple)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = tracker_times(policy)
    for task in training:
        if task.outcome != "completed":
            continue  # only completed tasks are learned from
        _, last_unfinished, seen = _walk(times, task.finish_s, rng)
        sample = adaptive.completion_sample_s(
            created_at=start,
            last_seen_unfinished_at=None
            if last_unfinished is None
            else start + timedelta(seconds=last_unfinished),
            completed_at=start + timedelta(seconds=seen),
            max_interval_s=policy.max_interval_s,
        )
        if sample is not None:
            ages[task.bucket.bucket] = adaptive.kept_samples(ages[task.bucket.bucket], [sample])
    return {
        bucket: early
        for bucket, kept in ages.items()
        if (early := adaptive.early_age_s(kept)) is not None
    }


def _same_for_all(times: PollTimes) -> Callable[[MixTask], PollTimes]:
    def times_for(_: MixTask) -> PollTimes:
        return times

    return times_for


def _by_bucket(
    by_bucket: dict[Bucket, PollTimes], default: PollTimes
) -> Callable[[MixTask], PollTimes]:
    def times_for(task: MixTask) -> PollTimes:
        return by_bucket.get(task.bucket.bucket, default)

    return times_for


def adaptive_name(interval_s: float) -> str:
    return f"mix: tracker adaptive, TRACKER_POLL_MAX_INTERVAL_S={interval_s:.0f}"


def default_name(interval_s: float) -> str:
    return f"mix: tracker default, TRACKER_POLL_MAX_INTERVAL_S={interval_s:.0f}"


def mix_schedules(
    training: list[MixTask], rng: random.Random
) -> tuple[
    dict[str, Callable[[MixTask], PollTimes]], dict[str, float], dict[str, dict[str, float]]
]:
    """Every schedule measured on the mix (by name: task -> its poll times), each one's bound
    (s), and the early ages each adaptive configuration learned (by bucket name)."""
    schedules: dict[str, Callable[[MixTask], PollTimes]] = {}
    bounds: dict[str, float] = {}
    learned: dict[str, dict[str, float]] = {}
    for interval_s in INTERVALS_S:
        policy = PollPolicy(max_interval_s=interval_s)
        default_times = tracker_times(policy)
        schedules[default_name(interval_s)] = _same_for_all(default_times)
        early = learn(training, policy, rng)
        by_bucket = {
            kind.bucket: tracker_times(dataclasses.replace(policy, early_age_s=early[kind.bucket]))
            for kind in BUCKETS
            if kind.bucket in early
        }
        schedules[adaptive_name(interval_s)] = _by_bucket(by_bucket, default_times)
        learned[adaptive_name(interval_s)] = {
            kind.name: early[kind.bucket] for kind in BUCKETS if kind.bucket in early
        }
        bounds[default_name(interval_s)] = bounds[adaptive_name(interval_s)] = interval_s
    for interval_s in (5.0, 10.0, 20.0):
        name = f"mix: fixed {interval_s:.0f} s"
        schedules[name] = _same_for_all(fixed(interval_s))
        bounds[name] = interval_s
    client = f"mix: {TENSORSLAB_CLIENT}"
    schedules[client] = _same_for_all(growing(10.0, 1.3, 30.0))
    bounds[client] = 30.0
    return schedules, bounds, learned


def measure_mix(
    times_for: Callable[[MixTask], PollTimes],
    tasks: list[MixTask],
    bound_s: float,
    rng: random.Random,
) -> dict[str, float]:
    polls, delays, late_completed = [], [], 0
    for task in tasks:
        count, _, seen = _walk(times_for(task), task.finish_s, rng)
        polls.append(count)
        delays.append(seen - task.finish_s)
        late_completed += task.outcome == "completed" and delays[-1] > bound_s
    cuts = statistics.quantiles(delays, n=100)
    return {
        "polls_per_task": statistics.fmean(polls),
        "delay_p50_s": cuts[49],
        "delay_p95_s": cuts[94],
        "delay_max_s": max(delays),
        "late_share_pct": 100.0 * sum(delay > bound_s for delay in delays) / len(delays),
        "late_completed_pct": 100.0 * late_completed / len(delays),  # of all tasks measured
    }


def compute_mix(
    *,
    tasks: int,
    seed: int,
    midrun_failure_share: float = MIDRUN_FAILURE_SHARE,
    measured_speedup: float = 1.0,
) -> tuple[list[tuple[str, dict[str, float]]], dict[str, dict[str, float]]]:
    """Figures of every schedule on the measured part of a stream of `tasks` drawn with
    `seed`, and the early ages each adaptive configuration learned on the training part.
    `measured_speedup` > 1 makes the measured tasks finish that many times sooner than the
    training ones did (upstream got faster after the schedule learned)."""
    stream = draw_stream(tasks, seed, midrun_failure_share=midrun_failure_share)
    split = int(len(stream) * TRAIN_SHARE)
    training = stream[:split]
    measured = [
        task
        if task.outcome == "failed at once"
        else dataclasses.replace(task, finish_s=task.finish_s / measured_speedup)
        for task in stream[split:]
    ]
    rng = random.Random(seed + 1)
    schedules, bounds, learned = mix_schedules(training, rng)
    rows = [
        (name, measure_mix(times_for, measured, bounds[name], rng))
        for name, times_for in schedules.items()
    ]
    return rows, learned


def _sample_of(
    task: MixTask, polls: tuple[int, float | None, float], max_interval_s: float
) -> float | None:
    _, last_unfinished, seen = polls
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return adaptive.completion_sample_s(
        created_at=start,
        last_seen_unfinished_at=None
        if last_unfinished is None
        else start + timedelta(seconds=last_unfinished),
        completed_at=start + timedelta(seconds=seen),
        max_interval_s=max_interval_s,
    )


def measure_learning(
    *,
    tasks: int,
    seed: int,
    interval_s: float,
    measured_speedup: float = 1.0,
    midrun_failure_share: float = MIDRUN_FAILURE_SHARE,
) -> dict[str, float]:
    """The adaptive schedule as it runs: it goes on learning while the measured part of the
    stream arrives (one task every ARRIVAL_EVERY_S; a sample counts LEARNED_AFTER_S after the
    poll that saw the task complete), so a bucket whose tasks start finishing sooner is
    corrected by the first of them seen late. Same figures as `measure_mix`."""
    stream = draw_stream(tasks, seed, midrun_failure_share=midrun_failure_share)
    split = int(len(stream) * TRAIN_SHARE)
    rng = random.Random(seed + 1)
    policy = PollPolicy(max_interval_s=interval_s)
    kept: dict[Bucket, tuple[float, ...]] = defaultdict(tuple)
    pending: list[tuple[float, int, Bucket, float]] = []  # (usable at, order, bucket, sample)
    polls, delays = [], []
    bound_late = 0
    for index, task in enumerate(stream):
        registered_at = index * ARRIVAL_EVERY_S
        measured = index >= split
        if measured and task.outcome != "failed at once":
            task = dataclasses.replace(task, finish_s=task.finish_s / measured_speedup)
        while pending and pending[0][0] <= registered_at + policy.first_delay_s:
            _, _, bucket, sample = heapq.heappop(pending)
            kept[bucket] = adaptive.kept_samples(kept[bucket], [sample])
        early_s = adaptive.early_age_s(kept[task.bucket.bucket])
        chosen = policy if early_s is None else dataclasses.replace(policy, early_age_s=early_s)
        walked = _walk(tracker_times(chosen), task.finish_s, rng)
        if task.outcome == "completed":
            learned = _sample_of(task, walked, interval_s)
            if learned is not None:
                usable_at = registered_at + walked[2] + LEARNED_AFTER_S
                heapq.heappush(pending, (usable_at, index, task.bucket.bucket, learned))
        if measured:
            polls.append(walked[0])
            delays.append(walked[2] - task.finish_s)
            bound_late += walked[2] - task.finish_s > interval_s
    cuts = statistics.quantiles(delays, n=100)
    return {
        "polls_per_task": statistics.fmean(polls),
        "delay_p50_s": cuts[49],
        "delay_p95_s": cuts[94],
        "delay_max_s": max(delays),
        "late_share_pct": 100.0 * bound_late / len(delays),
    }
