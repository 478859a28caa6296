"""Politeness: polls per task and detection delay of poll schedules, computed, not waited for.

Task durations are drawn like real TensorsLab videos (uniformly from 2 to 15 minutes). For each
schedule the script walks the poll times of every task and counts the polls up to and including
the first one at or after the task finished; the detection delay is that poll's time minus the
finishing time. tracker's schedule is `tracker.tasks.schedule` itself (default settings, with
jitter), so the figures follow the code.

The target (issue "Benchmarks", scenario 5): fewer polls per task than every fixed-interval
client, at an equal or better p95 detection delay; read per interval, tracker at the same maximum
interval as each fixed client (see `notes_for`).

    python -m bench.politeness [--politeness-tasks 20000] [--politeness-seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable, Iterator
from typing import Any

from bench.result import Row, ScenarioResult
from tracker.states import TaskStatus
from tracker.tasks.schedule import PollPolicy, next_poll_delay_s

MIN_DURATION_S = 120.0
MAX_DURATION_S = 900.0

PollTimes = Callable[[random.Random], Iterator[float]]  # seconds after registration


def tracker_schedule(policy: PollPolicy) -> PollTimes:
    """tracker's own schedule (`tracker.tasks.schedule.next_poll_delay_s`), status processing."""

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


TRACKER = "tracker default (5 s, quiet to 90 s, then every 20 s)"
SCHEDULES: dict[str, PollTimes] = {
    TRACKER: tracker_schedule(PollPolicy()),
    "tracker, TRACKER_POLL_MAX_INTERVAL_S=10": tracker_schedule(PollPolicy(max_interval_s=10)),
    "tracker, TRACKER_POLL_MAX_INTERVAL_S=5": tracker_schedule(PollPolicy(max_interval_s=5)),
    "tracker, TRACKER_POLL_MAX_INTERVAL_S=30": tracker_schedule(PollPolicy(max_interval_s=30)),
    "fixed 5 s": fixed(5.0),
    "fixed 10 s": fixed(10.0),
    "fixed 20 s": fixed(20.0),
    "10 s growing x1.3 to 30 s (TensorsLab client)": growing(10.0, 1.3, 30.0),
}
# Each tracker configuration against the client polling at its maximum interval.
PAIRS: dict[str, str] = {
    TRACKER: "fixed 20 s",
    "tracker, TRACKER_POLL_MAX_INTERVAL_S=10": "fixed 10 s",
    "tracker, TRACKER_POLL_MAX_INTERVAL_S=5": "fixed 5 s",
    "tracker, TRACKER_POLL_MAX_INTERVAL_S=30": "10 s growing x1.3 to 30 s (TensorsLab client)",
}
TARGET = "fewer polls than {fixed}, at an equal or better p95"

SCENARIO = "politeness"
QUICK: dict[str, Any] = {"politeness_tasks": 2_000}


def measure(times: PollTimes, durations: list[float], rng: random.Random) -> dict[str, float]:
    polls, delays = [], []
    for duration in durations:
        for count, moment in enumerate(times(rng), start=1):
            if moment >= duration:
                polls.append(count)
                delays.append(moment - duration)
                break
    cuts = statistics.quantiles(delays, n=100)
    return {
        "polls_per_task": statistics.fmean(polls),
        "delay_p50_s": cuts[49],
        "delay_p95_s": cuts[94],
        "delay_max_s": max(delays),
    }


def compute(
    *, tasks: int, seed: int, schedules: dict[str, PollTimes] | None = None
) -> list[tuple[str, dict[str, float]]]:
    """Figures of each schedule for `tasks` durations drawn with `seed`."""
    rng = random.Random(seed)
    durations = [rng.uniform(MIN_DURATION_S, MAX_DURATION_S) for _ in range(tasks)]
    chosen = SCHEDULES if schedules is None else schedules
    return [(name, measure(times, durations, rng)) for name, times in chosen.items()]


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = [
        "| schedule | polls per task | delay p50 (s) | delay p95 (s) | delay max (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, figures in rows:
        lines.append(
            f"| {name} | {figures['polls_per_task']:.1f} | {figures['delay_p50_s']:.1f} "
            f"| {figures['delay_p95_s']:.1f} | {figures['delay_max_s']:.1f} |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("politeness (scenario 5)")
    group.add_argument(
        "--politeness-tasks", type=int, default=20_000, help="task durations to draw"
    )
    group.add_argument("--politeness-seed", type=int, default=1)


def target_met(figures: dict[str, dict[str, float]], ours: str) -> bool:
    """Whether tracker polls less than its paired fixed client while detecting as fast."""
    mine, theirs = figures[ours], figures[PAIRS[ours]]
    return (
        mine["polls_per_task"] < theirs["polls_per_task"]
        and mine["delay_p95_s"] <= theirs["delay_p95_s"]
    )


METRICS = (
    ("polls_per_task", "polls per task"),
    ("delay_p50_s", "detection delay p50 (s)"),
    ("delay_p95_s", "detection delay p95 (s)"),
)


def rows_for(results: list[tuple[str, dict[str, float]]]) -> list[Row]:
    figures = dict(results)
    rows = []
    for name, values in results:
        baseline = PAIRS.get(name, TRACKER)
        for key, metric in METRICS:
            judged = name in PAIRS and key == "polls_per_task"
            rows.append(
                Row(
                    subject=name,
                    metric=metric,
                    value=values[key],
                    ratio=values[key] / figures[baseline][key] if name != baseline else None,
                    baseline=baseline if name != baseline else None,
                    target=TARGET.format(fixed=PAIRS[name]) if judged else None,
                    met=target_met(figures, name) if judged else None,
                )
            )
    return rows


def notes_for(results: list[tuple[str, dict[str, float]]]) -> tuple[str, ...]:
    figures = dict(results)
    ours = figures[TRACKER]
    return (
        "Ratios: a tracker row over the fixed client polling at its maximum interval (0.90x "
        "polls: it polls 10 % less); a fixed or TensorsLab-client row over tracker's default.",
        "How the target is read: no single schedule can poll less than a fixed 5 s client and "
        "also detect as fast (a p95 near 5 s needs a poll every 5 s while videos finish), so "
        "tracker is compared at the same maximum interval as each fixed client: fewer polls "
        "per task at an equal or better p95, for each pair.",
        "Why tracker polls less: its first poll at 5 s catches wrong IDs and instant failures, "
        "then it stays quiet until the task is 90 s old (TRACKER_POLL_QUIET_UNTIL_S), because "
        "no real video finishes sooner, then polls every TRACKER_POLL_MAX_INTERVAL_S, with "
        "jitter that may shorten an interval but never lengthen it: its default p95 is "
        f"{ours['delay_p95_s']:.1f} s and its worst delay {ours['delay_max_s']:.1f} s.",
        "The TensorsLab client (10 s growing x1.3 to 30 s) polls less than tracker's default "
        "but detects later; it is paired with tracker at TRACKER_POLL_MAX_INTERVAL_S=30.",
    )


def run(args: argparse.Namespace) -> ScenarioResult:
    tasks, seed = args.politeness_tasks, args.politeness_seed
    results = compute(tasks=tasks, seed=seed)
    return ScenarioResult(
        scenario=SCENARIO,
        rows=tuple(rows_for(results)),
        parameters={
            "tasks": tasks,
            "seed": seed,
            "task durations": f"uniform {MIN_DURATION_S:.0f}-{MAX_DURATION_S:.0f} s",
            "tracker policy": "PollPolicy() defaults (first poll 5 s, quiet until 90 s, then "
            "half the age within 5-20 s, +-10 % jitter capped at the maximum), status "
            "processing throughout; the other tracker rows change only the maximum interval",
        },
        notes=notes_for(results),
    )


def main() -> None:
    from bench.__main__ import run_alone

    run_alone("politeness")


if __name__ == "__main__":
    main()
