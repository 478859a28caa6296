"""The simulator's create endpoints and its request-rate accounting.

`POST /v1/video/<model>` and `POST /v1/images/<model>` parse the multipart form as TensorsLab
does, record what was received (`CreateRecord`), and make a task that plays `CreateBehaviour`'s
script, answering `{"code": 1000, "data": {"taskid": ...}}`. The behaviour can instead refuse
(a code such as 9000, or an HTTP status) or drop the connection after reading the whole
request, so the client cannot know whether the task was made (it is made, as upstream might).

`RequestLog` keeps the arrival time of every API request per API key, so a test can check a
rate cap over any sliding window (`max_in_window`). Standard library only.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tracker.testing.simulator.scripts import ScriptError, Status, Step, TaskKind, TaskScript

__all__ = [
    "CREATE_PREFIXES",
    "CreateBehaviour",
    "CreateRecord",
    "RequestLog",
    "parse_form",
]

CREATE_PREFIXES: dict[str, TaskKind] = {"/v1/video/": "video", "/v1/images/": "image"}
# A created task: processing for one answered poll, then completed.
DEFAULT_SCRIPT = (Step(Status.PROCESSING, polls=1), Step(Status.COMPLETED))
STATUS_NAMES = frozenset({"infobytaskid", "deletevideotask", "deleteimagestask"})


def parse_form(content_type: str | None, body: bytes) -> dict[str, str]:
    """The fields of a multipart/form-data (or urlencoded) body; raises ValueError if none."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    if kind != "multipart/form-data":
        raise ValueError(f"expected multipart/form-data, got {kind or 'no Content-Type'}")
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise ValueError("the multipart body has no parts")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("a form part has no name")
        payload = part.get_payload(decode=True)
        fields[name] = (payload or b"").decode("utf-8") if isinstance(payload, bytes) else ""
    return fields


@dataclass(frozen=True, slots=True)
class CreateRecord:
    """One create request as received: when, for which model, with which fields."""

    at: float
    kind: str
    model: str
    fields: Mapping[str, str]
    task_id: str | None  # the task made for it (also when the connection was dropped)
    outcome: str  # created, refused, dropped, bad_request

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "model": self.model,
            "fields": dict(self.fields),
            "task_id": self.task_id,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class CreateBehaviour:
    """What the create endpoints do: the script of tasks they make, and faults.

    `drop_after_receiving`: that many next creates make their task, then close the
    connection without an answer. `refuse_code` / `refuse_http_status`: answer with that code
    (200) or HTTP status and make nothing.
    """

    script: tuple[Step, ...] = DEFAULT_SCRIPT
    drop_after_receiving: int = 0
    refuse_code: int | None = None
    refuse_http_status: int | None = None
    refuse_msg: str = "refused by the simulator"
    urls: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, obj: object) -> CreateBehaviour:
        if not isinstance(obj, Mapping):
            raise ScriptError("create behaviour must be a JSON object")
        allowed = {"script", "drop_after_receiving", "refuse_code", "refuse_http_status"}
        unknown = set(obj) - allowed - {"refuse_msg", "urls"}
        if unknown:
            raise ScriptError(f"create behaviour: unknown fields {sorted(unknown)}")
        steps = obj.get("script")
        return cls(
            script=DEFAULT_SCRIPT if steps is None else tuple(Step.from_json(s) for s in steps),
            drop_after_receiving=int(obj.get("drop_after_receiving", 0)),
            refuse_code=obj.get("refuse_code"),
            refuse_http_status=obj.get("refuse_http_status"),
            refuse_msg=str(obj.get("refuse_msg", "refused by the simulator")),
            urls=tuple(obj.get("urls", ())),
        )

    def task_script(
        self, task_id: str, kind: TaskKind, model: str, fields: Mapping[str, str]
    ) -> TaskScript:
        """The task a create makes, with the details its status endpoint reports."""
        details: dict[str, str | int] = {}
        if "prompt" in fields:
            details["prompt"] = fields["prompt"]
        if kind == "video":
            for name in ("resolution", "ratio"):
                if fields.get(name):
                    details[name] = fields[name]
            if fields.get("duration", "").isdigit():
                details["duration"] = int(fields["duration"])
            if fields.get("imageUrl"):
                details["imageurl"] = fields["imageUrl"]
        else:
            details["category"] = model
        script = self.script
        if kind == "image":  # image tasks have no uploading status (5)
            script = tuple(step for step in script if step.status != Status.UPLOADING)
        return TaskScript(task_id, script, urls=self.urls, details=details, kind=kind)


class RequestLog:
    """Arrival times (`time.time()`) of API requests, per API key. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, list[float]] = {}

    def record(self, key: str, at: float | None = None) -> None:
        with self._lock:
            times = self._times.setdefault(key, [])
            moment = time.time() if at is None else at
            if times and moment < times[-1]:
                bisect.insort(times, moment)
            else:
                times.append(moment)

    def times(self, key: str | None = None) -> list[float]:
        """Every request's arrival, oldest first: of `key`, or of all keys together."""
        with self._lock:
            if key is not None:
                return list(self._times.get(key, ()))
            return sorted(moment for times in self._times.values() for moment in times)

    def api_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._times)

    def max_in_window(self, window_s: float, key: str | None = None) -> int:
        """The most requests that arrived within any `window_s` seconds (a sliding window)."""
        times = self.times(key)
        most, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] > window_s:
                start += 1
            most = max(most, end - start + 1)
        return most

    def clear(self) -> None:
        with self._lock:
            self._times.clear()
