"""The adaptive schedule: per bucket of alike tasks, the age before which none has finished.

Pure arithmetic, no I/O (`learning.py` stores and refreshes the figures):

- a task's *bucket* is (provider, model, resolution, duration) read from its upstream details
  (`moreTaskInfo`: `source`, `resolution`, `duration` for videos; for images `category` and the
  size class of `width` x `height`, in megapixels (2**20 pixels) rounded up to a power of two,
  so that sizes chosen freely make a handful of buckets, and duration 0). Details that are
  missing or make no sense (a negative duration, a resolution that is no resolution) give no
  bucket: the default schedule;
- each task that completed gives one *sample*: the age at which it finished, as far as its polls
  tell. Upstream never says when; the task finished between the last poll that saw it unfinished
  and the poll that saw it completed. When that window is a normal interval the sample is its
  middle (off by half an interval at most, whatever the schedule was); when the window is longer
  (the task finished while polls were skipped: the quiet period, or the bucket's own early age)
  the sample is the window's start, the earliest it may have finished, so a task that finished
  earlier than its bucket expected pulls the bucket's early age down at once. A task already
  finished at its first poll gives no sample: the first poll catches such tasks whatever the
  bucket says;
- a bucket's *early age* is its `EARLY_QUANTILE` (nearest rank) of the last `SAMPLE_SIZE`
  samples, less `MARGIN_RATIO` of it; below `MIN_SAMPLES` samples there is none;
- a task whose bucket has an early age keeps its first poll, and its next poll comes at
  max(the default's next poll, the early age) (`schedule.next_poll_delay_s`); from then on,
  every `TRACKER_POLL_MAX_INTERVAL_S`. A task finishing after the early age is detected within
  the usual bound; one finishing before it (earlier than its bucket's recent tasks did) is seen
  at the early age, late by at most early age - its finishing age.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tracker.tasks.schedule import PollPolicy
from tracker.upstream.base import PollResult, TaskReport
from tracker.upstream.names import IMAGE_PROVIDER, PROVIDERS

__all__ = [
    "EARLY_QUANTILE",
    "LONG_WINDOW_RATIO",
    "MARGIN_RATIO",
    "MIN_SAMPLES",
    "SAMPLE_SIZE",
    "Bucket",
    "BucketFigures",
    "bucket_of",
    "completion_sample_s",
    "early_age_s",
    "kept_samples",
    "nearest_rank",
    "policy_for",
]

MIN_SAMPLES = 20  # fewer completed tasks in a bucket: the default schedule
SAMPLE_SIZE = 256  # the most recent samples kept per bucket
EARLY_QUANTILE = 0.01  # nearest rank: the smallest sample up to 100 samples, the 3rd of 256
MARGIN_RATIO = 0.1  # the early age is 10 % before that quantile (upstream may speed up)
# A window between the last unfinished sighting and the completed one longer than this many
# maximum intervals means polls were skipped (quiet period, early age, error backoff).
LONG_WINDOW_RATIO = 1.5
MAX_DURATION_S = 3600  # a video duration beyond this (seconds) is nonsense: no bucket
MAX_SIDE_PX = 65536  # likewise an image side

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")  # whole names only: fullmatch
_RESOLUTION = re.compile(r"(?:[1-9][0-9]{2,3}p|[1-9]k)")  # 480p .. 4320p, 2k, 4k


@dataclass(frozen=True, slots=True, order=True)
class Bucket:
    """Tasks expected to take alike: same provider, model, resolution and duration."""

    provider: str
    model: str
    resolution: str
    duration_s: int  # 0 for images

    def label(self) -> str:
        """One line for logs and tables: `tensorslab seedancev2 1080p 10s`."""
        tail = f" {self.duration_s}s" if self.duration_s else ""
        return f"{self.provider} {self.model} {self.resolution}{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketFigures:
    """What is learned of one bucket: its recent samples (seconds) and all it ever learned."""

    bucket: Bucket
    samples: int  # completed tasks learned from, ever
    ages_s: tuple[float, ...]  # the last SAMPLE_SIZE samples, oldest first

    def quantile_s(self, q: float) -> float | None:
        return nearest_rank(sorted(self.ages_s), q) if self.ages_s else None

    @property
    def early_age_s(self) -> float | None:
        return early_age_s(self.ages_s)


def bucket_of(provider: str, details: Mapping[str, Any] | None) -> Bucket | None:
    """The bucket of a task of `provider` with these upstream details; None when they do not
    name one (missing or nonsense fields): such a task follows the default schedule."""
    if provider not in PROVIDERS or not isinstance(details, Mapping):
        return None
    if provider == IMAGE_PROVIDER:
        model = details.get("category")
        width, height = details.get("width"), details.get("height")
        if not (
            _is_name(model) and _in_range(width, MAX_SIDE_PX) and _in_range(height, MAX_SIDE_PX)
        ):
            return None
        megapixels = max(1, 2 ** math.ceil(math.log2(width * height / 2**20)))  # type: ignore[operator]
        return Bucket(provider, str(model), f"{megapixels}mp", 0)
    model, resolution, duration = (details.get(k) for k in ("source", "resolution", "duration"))
    if not (
        _is_name(model) and isinstance(resolution, str) and _in_range(duration, MAX_DURATION_S)
    ):
        return None
    resolution = resolution.strip().lower()
    if not _RESOLUTION.fullmatch(resolution):
        return None
    return Bucket(provider, str(model), resolution, int(duration))  # type: ignore[arg-type]


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(_NAME.fullmatch(value))


def _in_range(value: object, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


def completion_sample_s(
    *,
    created_at: datetime,
    last_seen_unfinished_at: datetime | None,
    completed_at: datetime,
    max_interval_s: float,
) -> float | None:
    """The age at which a completed task finished, as far as its polls tell (module docstring);
    None when they tell nothing (completed at its first poll) or the times make no sense."""
    if last_seen_unfinished_at is None:
        return None
    low_s = (last_seen_unfinished_at - created_at).total_seconds()
    high_s = (completed_at - created_at).total_seconds()
    if not (math.isfinite(low_s) and math.isfinite(high_s)) or low_s < 0 or high_s < low_s:
        return None
    if high_s - low_s > LONG_WINDOW_RATIO * max_interval_s:
        return low_s
    return (low_s + high_s) / 2


def kept_samples(ages_s: Sequence[float], new_s: Sequence[float]) -> tuple[float, ...]:
    """The samples a bucket keeps after learning `new_s`: the last SAMPLE_SIZE, oldest first."""
    return tuple(round(age, 1) for age in (*ages_s, *new_s)[-SAMPLE_SIZE:])


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile of the sorted, non-empty `ordered`."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def early_age_s(ages_s: Sequence[float]) -> float | None:
    """The age before which a bucket's tasks are not polled again after their first poll; None
    below MIN_SAMPLES samples (the default schedule)."""
    if len(ages_s) < MIN_SAMPLES:
        return None
    return max(nearest_rank(sorted(ages_s), EARLY_QUANTILE) * (1.0 - MARGIN_RATIO), 0.0)


def policy_for(
    policy: PollPolicy,
    provider: str,
    result: PollResult,
    early_ages: Mapping[Bucket, float],
) -> tuple[PollPolicy, Bucket | None]:
    """The schedule of the task that answered `result`: `policy` with its bucket's early age,
    if the answer names a bucket with one; and that bucket (None: the answer names none)."""
    if not isinstance(result, TaskReport):
        return policy, None
    bucket = bucket_of(provider, result.details)
    early_s = early_ages.get(bucket) if bucket is not None else None
    if early_s is None:
        return policy, bucket
    return dataclasses.replace(policy, early_age_s=early_s), bucket
