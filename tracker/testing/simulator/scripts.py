"""Pure model of the simulator: scripted task lifecycles and injected faults, with no I/O.

A `TaskScript` says which statuses a fake TensorsLab task goes through and for how long; a `TaskRun`
plays it against the clock the caller passes in; `Faults` says how the fake API misbehaves. The
HTTP server in `server.py` holds the lock, the clock and the random generator.

A script's `kind` says which endpoint knows the task: `video` (the default) answers at
`/v1/video/infobytaskid` with `task_status` 1-5 and `message`, `image` at
`/v1/images/infobytaskid` with `image_status` 1-4 (no uploading step), `error_message` and the
image details (`category`, `width`, `height`, `prompt`, `starttime`).
"""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

__all__ = [
    "DETAIL_DEFAULTS",
    "IMAGE_DETAIL_DEFAULTS",
    "KINDS",
    "Fault",
    "Faults",
    "ScriptError",
    "Status",
    "Step",
    "TaskKind",
    "TaskRun",
    "TaskScript",
]


class Status(enum.IntEnum):
    """The upstream `task_status` codes, as the OpenAPI contract numbers them."""

    PENDING = 1  # queued, not started
    PROCESSING = 2  # generating the video
    COMPLETED = 3  # done: `url` lists the videos
    FAILED = 4  # done: `message` says why
    UPLOADING = 5  # generated, being uploaded


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED})

# The `moreTaskInfo` fields and what a task answers when its creator did not give them.
DETAIL_DEFAULTS: Mapping[str, str | int] = {
    "prompt": "",
    "imageurl": "",
    "resolution": "720p",
    "fps": 24,
    "source": "tensorslab-sim",
    "duration": 5,
    "seed": 0,
    "ratio": "16:9",
}


# The image endpoint's details and their defaults; `starttime` defaults to the task's creation.
IMAGE_DETAIL_DEFAULTS: Mapping[str, str | int] = {
    "category": "seedreamv45",
    "width": 2048,
    "height": 2048,
    "prompt": "",
    "starttime": "",
}

TaskKind = Literal["video", "image"]
KINDS: tuple[TaskKind, ...] = ("video", "image")
_IMAGE_STATUSES = frozenset({Status.PENDING, Status.PROCESSING, Status.COMPLETED, Status.FAILED})


class ScriptError(ValueError):
    """A script, task or fault description cannot be used; the message says which part and why."""


def _keys(obj: object, what: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ScriptError(f"{what} must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ScriptError(f"{what}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return obj


def _number(value: object, what: str, *, integer: bool = False, high: float | None = None) -> Any:
    """`value` if it is a non-negative number (an int if `integer`) no greater than `high`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScriptError(f"{what} must be a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ScriptError(f"{what} must be an integer, got {value!r}")
    if value < 0 or (high is not None and value > high):
        raise ScriptError(f"{what} must be between 0 and {high if high is not None else 'inf'}")
    return value


@dataclass(frozen=True, slots=True)
class Step:
    """One status of a script: it lasts `after_s` seconds, `polls` answered queries, or forever."""

    status: int
    after_s: float | None = None
    polls: int | None = None

    def __post_init__(self) -> None:
        if self.status not in set(Status):
            raise ScriptError(f"step status must be one of 1..5, got {self.status!r}")
        if self.after_s is not None and self.polls is not None:
            raise ScriptError("a step lasts either after_s seconds or polls queries, not both")
        if self.after_s is not None:
            _number(self.after_s, "step after_s")
        if self.polls is not None and _number(self.polls, "step polls", integer=True) < 1:
            raise ScriptError("step polls must be at least 1")

    @property
    def lasts_forever(self) -> bool:
        return self.after_s is None and self.polls is None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        data = _keys(obj, "step", {"status", "after_s", "polls"})
        if "status" not in data:
            raise ScriptError("step: missing field 'status'")
        status = _number(data["status"], "step status", integer=True)
        return cls(status=status, after_s=data.get("after_s"), polls=data.get("polls"))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.after_s is not None:
            out["after_s"] = self.after_s
        if self.polls is not None:
            out["polls"] = self.polls
        return out


FaultKind = Literal["error", "throttle", "code", "malformed", "auth"]
_CODE_MESSAGES = {9999: "task query failed", 9000: "insufficient credits"}


@dataclass(frozen=True, slots=True)
class Fault:
    """The misbehaviour chosen for one query."""

    kind: FaultKind
    http_status: int
    code: int | None = None
    msg: str = ""
    retry_after_s: int = 0


@dataclass(frozen=True, slots=True)
class Faults:
    """How the fake API misbehaves. Rates are probabilities; `*_next` count down, one per query.

    `code` alone forces every answer to that error code; with `code_next` only the next N answers.
    `trickle_s` sends every answer (status line, headers and body) one byte every that many
    seconds, like an upstream that never lets a socket read time out; 0 sends it in one write.
    `auth_status` (401 or 403) answers every query so, as for an API key refused; None stops.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int = 1
    malformed_rate: float = 0.0
    code: int | None = None
    error_next: int = 0
    throttle_next: int = 0
    malformed_next: int = 0
    code_next: int = 0
    trickle_s: float = 0.0
    auth_status: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "malformed_rate"):
            _number(getattr(self, name), f"faults {name}", high=1.0)
        _number(self.latency_ms, "faults latency_ms")
        _number(self.trickle_s, "faults trickle_s", high=3600.0)
        for name in ("retry_after_s", "error_next", "throttle_next", "malformed_next", "code_next"):
            _number(getattr(self, name), f"faults {name}", integer=True)
        if self.code is not None and (_number(self.code, "faults code", integer=True) == 1000):
            raise ScriptError("faults code must be an error code such as 9999 or 9000, not 1000")
        if self.auth_status not in (None, 401, 403):
            raise ScriptError("faults auth_status must be 401 or 403 (or null)")
        if self.code_next and self.code is None:
            raise ScriptError("faults code_next needs a code (9999 or 9000)")

    @classmethod
    def from_json(cls, obj: object) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**_keys(obj, "faults", names))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def pick(self, rng: random.Random) -> tuple[Fault | None, Faults]:
        """Choose this query's fault, if any, and return the config left for the next queries."""
        if self.auth_status is not None:
            return Fault("auth", self.auth_status, 9999, "invalid api key"), self
        if self.error_next or (self.error_rate and rng.random() < self.error_rate):
            fault = Fault("error", rng.choice((500, 502, 503)))
            return fault, dataclasses.replace(self, error_next=max(0, self.error_next - 1))
        if self.throttle_next or (self.throttle_rate and rng.random() < self.throttle_rate):
            fault = Fault("throttle", 429, 9999, "too many requests", self.retry_after_s)
            return fault, dataclasses.replace(self, throttle_next=max(0, self.throttle_next - 1))
        if self.code is not None:
            fault = Fault("code", 200, self.code, _CODE_MESSAGES.get(self.code, "simulated error"))
            if self.code_next == 1:  # the last forced answer: the code stops applying after it
                return fault, dataclasses.replace(self, code_next=0, code=None)
            return fault, dataclasses.replace(self, code_next=max(0, self.code_next - 1))
        if self.malformed_next or (self.malformed_rate and rng.random() < self.malformed_rate):
            fault = Fault("malformed", 200)
            return fault, dataclasses.replace(self, malformed_next=max(0, self.malformed_next - 1))
        return None, self


@dataclass(frozen=True)
class TaskScript:
    """A fake task: its steps, results and details, and how long it answers 404 before appearing."""

    task_id: str
    steps: tuple[Step, ...]
    urls: tuple[str, ...] = ()  # empty: one default URL derived from the task id
    message: str = "generation failed"
    missing_for_s: float = 0.0
    missing_for_polls: int = 0
    details: Mapping[str, str | int] = field(default_factory=dict)
    faults: Faults | None = None
    kind: TaskKind = "video"

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise ScriptError("taskid must be a non-empty string")
        if self.kind not in KINDS:
            raise ScriptError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "urls", tuple(self.urls))
        if not self.steps:
            raise ScriptError("script must have at least one step")
        for i, step in enumerate(self.steps[:-1]):
            if step.lasts_forever:
                raise ScriptError(
                    f"script step {i} needs after_s or polls (only the last is endless)"
                )
        if self.kind == "image":
            for step in self.steps:
                if step.status not in _IMAGE_STATUSES:
                    raise ScriptError(
                        f"an image task's step status must be one of 1..4, got {step.status}"
                    )
        if not self.urls:
            suffix = "png" if self.kind == "image" else "mp4"
            url = f"https://cdn.example.invalid/{self.task_id}.{suffix}"
            object.__setattr__(self, "urls", (url,))
        _number(self.missing_for_s, "missing_for_s")
        _number(self.missing_for_polls, "missing_for_polls", integer=True)
        defaults = self.detail_defaults
        for key, value in self.details.items():
            default = defaults.get(key)
            if default is None:
                raise ScriptError(f"details: unknown field {key!r}; allowed: {list(defaults)}")
            if isinstance(value, bool) or type(value) is not type(default):
                raise ScriptError(f"details {key} must be a {type(default).__name__}")

    @property
    def detail_defaults(self) -> Mapping[str, str | int]:
        return IMAGE_DETAIL_DEFAULTS if self.kind == "image" else DETAIL_DEFAULTS

    @property
    def status_field(self) -> str:
        """The name of the status in the `data` object of this kind's endpoint."""
        return "image_status" if self.kind == "image" else "task_status"

    @classmethod
    def completes(
        cls,
        task_id: str,
        *,
        after_polls: int = 1,
        urls: tuple[str, ...] = (),
        kind: TaskKind = "video",
    ) -> TaskScript:
        """Processing for `after_polls` answered queries, then completed (0: completed at once)."""
        head = (Step(Status.PROCESSING, polls=after_polls),) if after_polls else ()
        return cls(task_id, (*head, Step(Status.COMPLETED)), urls=urls, kind=kind)

    @classmethod
    def fails(
        cls,
        task_id: str,
        *,
        message: str = "generation failed",
        after_polls: int = 1,
        kind: TaskKind = "video",
    ) -> TaskScript:
        """Processing for `after_polls` answered queries, then failed with `message`."""
        head = (Step(Status.PROCESSING, polls=after_polls),) if after_polls else ()
        return cls(task_id, (*head, Step(Status.FAILED)), message=message, kind=kind)

    @classmethod
    def from_json(cls, obj: object) -> Self:
        allowed = {"taskid", "script", "urls", "message", "missing_for_s", "missing_for_polls"}
        data = _keys(obj, "task", allowed | {"details", "faults", "kind"})
        steps = data.get("script")
        if not isinstance(steps, list):
            raise ScriptError("task: 'script' must be a list of steps")
        urls = data.get("urls", [])
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ScriptError("task: 'urls' must be a list of strings")
        if not isinstance(data.get("message", ""), str):
            raise ScriptError("task: 'message' must be a string")
        details = data.get("details") or {}
        if not isinstance(details, Mapping):
            raise ScriptError("task: 'details' must be a JSON object")
        faults = data.get("faults")
        return cls(
            task_id=data.get("taskid"),  # type: ignore[arg-type]  # checked in __post_init__
            steps=tuple(Step.from_json(s) for s in steps),
            urls=tuple(urls),
            message=data.get("message", "generation failed"),
            missing_for_s=data.get("missing_for_s", 0.0),
            missing_for_polls=data.get("missing_for_polls", 0),
            details=dict(details),
            faults=None if faults is None else Faults.from_json(faults),
            kind=data.get("kind", "video"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "taskid": self.task_id,
            "kind": self.kind,
            "script": [s.to_json() for s in self.steps],
            "urls": list(self.urls),
            "message": self.message,
            "missing_for_s": self.missing_for_s,
            "missing_for_polls": self.missing_for_polls,
            "details": dict(self.details),
            "faults": None if self.faults is None else self.faults.to_json(),
        }

    def task_data(
        self, status: int, *, more_info: bool, created_at: float | None = None
    ) -> dict[str, Any]:
        """The `data` object of a successful answer while the task shows `status`."""
        if self.kind == "image":
            return self._image_data(status, created_at=created_at)
        data: dict[str, Any] = {
            "taskid": self.task_id,
            "task_status": int(status),
            "url": list(self.urls) if status == Status.COMPLETED else [],
            "message": self.message if status == Status.FAILED else "",
        }
        if more_info:
            data.update(DETAIL_DEFAULTS)
            data.update(self.details)
        return data

    def _image_data(self, status: int, *, created_at: float | None) -> dict[str, Any]:
        """The image endpoint's `data`: always with its details (it has no moreTaskInfo)."""
        started = time.gmtime(created_at if created_at is not None else time.time())
        data: dict[str, Any] = {"taskid": self.task_id, "image_status": int(status)}
        data.update(IMAGE_DETAIL_DEFAULTS)
        data["starttime"] = time.strftime("%Y-%m-%d %H:%M:%S", started)
        data.update(self.details)
        data["url"] = list(self.urls) if status == Status.COMPLETED else []
        if status == Status.FAILED:
            data["error_message"] = self.message
        return data


class TaskRun:
    """One task playing its script. Not thread-safe: the server calls it under its lock.

    Time-based steps advance lazily but exactly (a step ends at its start plus `after_s`, whenever a
    query notices); poll-based steps end at the query that moves them, which sets their end time.
    """

    def __init__(self, script: TaskScript, *, created_at: float) -> None:
        self.script = script
        self.created_at = created_at
        self.faults: Faults | None = script.faults
        self.queries = 0  # every status query received for this task id, faulted ones included
        self.missing_polls = 0  # queries answered 404 while missing
        self.appeared_at: float | None = None
        self.step_index = 0
        self.step_started_at = created_at
        self.step_polls = 0  # answered queries that saw the current step
        self.finished_at: float | None = None
        self.in_flight = 0  # queries being answered right now
        self.max_in_flight = 0  # the most that were ever answered at the same moment
        self.advance(created_at, query=False)

    def _enter(self, index: int, at: float) -> None:
        self.step_index, self.step_started_at, self.step_polls = index, at, 0
        if self.finished_at is None and self.script.steps[index].status in TERMINAL:
            self.finished_at = at

    def advance(self, now: float, *, query: bool) -> None:
        """Move to the step current at `now`; only a `query` may end a poll-counted phase."""
        script = self.script
        if self.appeared_at is None:
            ready_at = self.created_at + script.missing_for_s
            if now < ready_at or self.missing_polls < script.missing_for_polls:
                return
            if script.missing_for_polls and not query:
                return
            self._enter(0, now if script.missing_for_polls else ready_at)
            self.appeared_at = self.step_started_at
        last = len(script.steps) - 1
        while self.step_index < last:
            step = script.steps[self.step_index]
            if step.after_s is not None:
                ends_at = self.step_started_at + step.after_s
                if now < ends_at:
                    return
                self._enter(self.step_index + 1, ends_at)
            elif query and self.step_polls >= (step.polls or 0):
                self._enter(self.step_index + 1, now)
            else:
                return

    def answer(self, now: float) -> int | None:
        """Play one answered status query: the status it sees, or None while still missing."""
        self.advance(now, query=True)
        if self.appeared_at is None:
            self.missing_polls += 1
            return None
        self.step_polls += 1
        return self.script.steps[self.step_index].status

    def state(self, now: float) -> dict[str, Any]:
        """What the admin API shows about this task (advancing time-based steps, not polls)."""
        self.advance(now, query=False)
        visible = self.appeared_at is not None
        return {
            "taskid": self.script.task_id,
            "status": self.script.steps[self.step_index].status if visible else None,
            "missing": not visible,
            "step_index": self.step_index,
            "polls": self.queries,
            "max_concurrent_queries": self.max_in_flight,
            "created_at": self.created_at,
            "appeared_at": self.appeared_at,
            "finished_at": self.finished_at,
            "faults": None if self.faults is None else self.faults.to_json(),
            "script": self.script.to_json(),
        }
