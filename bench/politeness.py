"""Politeness: polls per task and detection delay of poll schedules, computed, not waited for.

Task durations are drawn like real TensorsLab videos (uniformly from 2 to 15 minutes). For each
schedule the script walks the poll times of every task and counts the polls up to and including
the first one at or after the task finished; the detection delay is that poll's time minus the
finishing time. tracker's schedule is `tracker.schedule` itself (default settings, with jitter),
so the figures follow the code.

The target (issue "Benchmarks", scenario 5): fewer polls per task than every fixed-interval
client, at an equal or better p95 detection delay.

    python -m bench.politeness [--politeness-tasks 20000] [--politeness-seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable, Iterator
from typing import Any

from bench.result import Row, ScenarioResult
from tracker.schedule import PollPolicy, jittered, poll_interval_s
from tracker.states import TaskStatus

MIN_DURATION_S = 120.0
MAX_DURATION_S = 900.0

PollTimes = Callable[[random.Random], Iterator[float]]  # seconds after registration


def tracker_default(rng: random.Random) -> Iterator[float]:
    policy = PollPolicy()
    moment = policy.first_delay_s
    while True:
        yield moment
        interval = poll_interval_s(policy, age_s=moment, status=TaskStatus.PROCESSING)
        moment += jittered(interval, rng)


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


def quiet_then_flat(first_s: float, resume_s: float, interval_s: float) -> PollTimes:
    """A what-if, not tracker's schedule: one early poll, none until `resume_s`, then flat."""

    def times(rng: random.Random) -> Iterator[float]:
        yield first_s
        moment = resume_s
        while True:
            yield moment
            moment += jittered(interval_s, rng)

    return times


TRACKER = "tracker default (5-20 s, half the age)"
SCHEDULES: dict[str, PollTimes] = {
    TRACKER: tracker_default,
    "fixed 5 s": fixed(5.0),
    "fixed 10 s": fixed(10.0),
    "fixed 20 s (the p95 tracker's default allows)": fixed(20.0),
    "10 s growing x1.3 to 30 s (TensorsLab client)": growing(10.0, 1.3, 30.0),
}
FIXED = [name for name in SCHEDULES if name.startswith("fixed")]
WHAT_IF: dict[str, PollTimes] = {
    "5 s, then nothing until 100 s, then every 9.5 s (+-10 %)": quiet_then_flat(5, 100, 9.5),
    "5 s, then nothing until 100 s, then every 19 s (+-10 %)": quiet_then_flat(5, 100, 19),
}
TARGET = "fewer polls per task than every fixed-interval client, at an equal or better p95"

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


def target_met(figures: dict[str, dict[str, float]]) -> bool:
    """Whether tracker polls less than each fixed client while detecting at least as fast."""
    ours = figures[TRACKER]
    return all(
        ours["polls_per_task"] < figures[name]["polls_per_task"]
        and ours["delay_p95_s"] <= figures[name]["delay_p95_s"]
        for name in FIXED
    )


METRICS = (
    ("polls_per_task", "polls per task"),
    ("delay_p50_s", "detection delay p50 (s)"),
    ("delay_p95_s", "detection delay p95 (s)"),
)


def rows_for(results: list[tuple[str, dict[str, float]]]) -> list[Row]:
    figures = dict(results)
    met = target_met(figures)
    rows = []
    for name, values in results:
        for key, metric in METRICS:
            theirs = name != TRACKER
            rows.append(
                Row(
                    subject=name,
                    metric=metric,
                    value=values[key],
                    ratio=values[key] / figures[TRACKER][key] if theirs else None,
                    baseline=TRACKER if theirs else None,
                    target=TARGET if not theirs and key == "polls_per_task" else None,
                    met=met if not theirs and key == "polls_per_task" else None,
                )
            )
    return rows


def notes_for(
    results: list[tuple[str, dict[str, float]]], what_if: list[tuple[str, dict[str, float]]]
) -> tuple[str, ...]:
    figures = dict(results)
    ours = figures[TRACKER]
    equal_p95 = figures["fixed 20 s (the p95 tracker's default allows)"]
    lines = [
        "Ratios here are the other schedule's figure over tracker's default (2.00x polls: it "
        "polls twice as often).",
        f"Why the target is {'met' if target_met(figures) else 'missed'}: after its first minute "
        "tracker's default is a flat 20 s poll (TRACKER_POLL_MAX_INTERVAL_S), so its p95 delay "
        f"({ours['delay_p95_s']:.1f} s) is that of a fixed 20 s client, not of a fixed 5 s or "
        "10 s one; and at that equal p95 it polls more than the fixed 20 s client "
        f"({ours['polls_per_task']:.1f} against {equal_p95['polls_per_task']:.1f}): the "
        "early polls at about 5, 10, 15, 23, 34 and 51 s cost about 4 polls per task while "
        "nothing real finishes before 2 minutes, and the +-10 % jitter widens the tail a little. "
        "Lowering TRACKER_POLL_MAX_INTERVAL_S moves tracker along the fixed clients' line "
        "(at 10 s it behaves like a fixed 10 s poll plus those early polls), it does not get "
        "below it.",
        "What would meet it (a change to tracker/schedule.py, not made here): keep the first "
        "poll at 5 s for wrong IDs and instant failures, then stay quiet until shortly before "
        "the shortest real video can finish, then poll flat. Computed in this run on the same "
        "durations: "
        + "; ".join(
            f"{name}: {values['polls_per_task']:.1f} polls per task, p95 "
            f"{values['delay_p95_s']:.1f} s"
            for name, values in what_if
        )
        + ". Both beat the fixed client of the same p95 on polls.",
    ]
    return tuple(lines)


def run(args: argparse.Namespace) -> ScenarioResult:
    tasks, seed = args.politeness_tasks, args.politeness_seed
    results = compute(tasks=tasks, seed=seed)
    what_if = compute(tasks=tasks, seed=seed, schedules=WHAT_IF)
    return ScenarioResult(
        scenario=SCENARIO,
        rows=tuple(rows_for(results)),
        parameters={
            "tasks": tasks,
            "seed": seed,
            "task durations": f"uniform {MIN_DURATION_S:.0f}-{MAX_DURATION_S:.0f} s",
            "tracker policy": "PollPolicy() defaults: first poll 5 s, then half the age "
            "within 5-20 s, +-10 % jitter (status processing throughout)",
        },
        notes=notes_for(results, what_if),
    )


def main() -> None:
    from bench.__main__ import run_alone

    run_alone("politeness")


if __name__ == "__main__":
    main()
