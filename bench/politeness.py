"""Politeness: polls per task and detection delay of poll schedules, computed, not waited for.

Task durations are drawn like real TensorsLab videos (uniformly from 2 to 15 minutes). For each
schedule the script walks the poll times of every task and counts the polls up to and including
the first one at or after the task finished; the detection delay is that poll's time minus the
finishing time. tracker's schedule is `tracker.schedule` itself (default settings, with jitter),
so the figures follow the code.

    python -m bench.politeness [--tasks 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable, Iterator

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


SCHEDULES: dict[str, PollTimes] = {
    "tracker default (5-20 s, half the age)": tracker_default,
    "fixed 5 s": fixed(5.0),
    "fixed 10 s": fixed(10.0),
    "10 s growing x1.3 to 30 s (TensorsLab client)": growing(10.0, 1.3, 30.0),
}


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


def run(*, tasks: int, seed: int) -> list[tuple[str, dict[str, float]]]:
    rng = random.Random(seed)
    durations = [rng.uniform(MIN_DURATION_S, MAX_DURATION_S) for _ in range(tasks)]
    return [(name, measure(times, durations, rng)) for name, times in SCHEDULES.items()]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="task durations to draw")
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    print(f"{arguments.tasks} tasks lasting {MIN_DURATION_S:.0f}-{MAX_DURATION_S:.0f} s")
    print(table(run(tasks=arguments.tasks, seed=arguments.seed)))


if __name__ == "__main__":
    main()
