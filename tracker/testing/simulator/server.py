"""A real HTTP server on loopback that imitates TensorsLab's status endpoints:
`POST /v1/video/infobytaskid` for video tasks and `POST /v1/images/infobytaskid` for image tasks.

It plays scripted task lifecycles (`scripts.py`), injects faults, and offers an admin API under
`/_sim/` to create tasks, set faults and read what happened. Standard library only. Video and
image tasks are apart, as upstream's are: each endpoint knows only the tasks of its kind, and
the same ID may be a video task and an image task (admin routes about one task take
`?kind=image` for the image one).
"""

from __future__ import annotations

import collections
import hmac
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qs, unquote

from tracker.testing.loopback import LoopbackHandler, LoopbackServer
from tracker.testing.simulator.creates import (
    CREATE_PREFIXES,
    STATUS_NAMES,
    CreateBehaviour,
    CreateRecord,
    RequestLog,
    parse_form,
)
from tracker.testing.simulator.scripts import (
    KINDS,
    Fault,
    Faults,
    ScriptError,
    TaskKind,
    TaskRun,
    TaskScript,
)
from tracker.testing.trickle import trickle

__all__ = ["API_PATH", "IMAGE_API_PATH", "Simulator", "serve"]

API_PATH = "/v1/video/infobytaskid"
IMAGE_API_PATH = "/v1/images/infobytaskid"
STATUS_PATHS: dict[str, TaskKind] = {API_PATH: "video", IMAGE_API_PATH: "image"}
MAX_BODY_BYTES = 64 * 1024 * 1024  # room for a bulk create of many thousands of tasks


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer, written to the socket in a single write (or one byte every `trickle_s`)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    trickle_s: float = 0.0


def json_reply(status: int, obj: object, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(obj).encode(), headers=headers)


def _api_error(status: int, msg: str) -> Reply:
    return json_reply(status, {"code": 9999, "msg": msg})


def _fault_reply(fault: Fault, data: dict[str, Any], variant: int, status_field: str) -> Reply:
    if fault.kind == "error":
        page = f"<html><body><h1>{fault.http_status} {HTTPStatus(fault.http_status).phrase}</h1>"
        return Reply(fault.http_status, f"{page}</body></html>".encode(), "text/html")
    if fault.kind == "throttle":
        headers = (("Retry-After", str(fault.retry_after_s)),)
        return json_reply(429, {"code": fault.code, "msg": fault.msg}, headers)
    if fault.kind == "code":
        return json_reply(200, {"code": fault.code, "msg": fault.msg})
    if fault.kind == "auth":
        return _api_error(fault.http_status, fault.msg)
    # malformed: cycle through a truncated body, an HTML page, an unknown status, a missing `data`
    whole = json.dumps({"code": 1000, "msg": "success", "data": data}).encode()
    bodies = (
        Reply(200, whole[: len(whole) // 2]),
        Reply(200, b"<!DOCTYPE html><html><body><p>Service is busy</p></body></html>", "text/html"),
        json_reply(200, {"code": 1000, "msg": "success", "data": {**data, status_field: 7}}),
        json_reply(200, {"code": 1000, "msg": "success"}),
    )
    return bodies[variant % len(bodies)]


class Simulator(LoopbackServer):
    """The fake TensorsLab API. `start()` serves it in a background thread on `base_url`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            host=host, port=port, handler=_Handler, name="the simulator", request_queue_size=1024
        )
        self.seed = seed
        self.api_key = api_key  # None: any non-empty Authorization is accepted
        self.verbose = verbose  # log each request to stderr
        self._lock = threading.Lock()  # guards everything below; held for microseconds
        self._rng = random.Random(seed)
        self._tasks: dict[tuple[TaskKind, str], TaskRun] = {}  # by (kind, task ID)
        self._faults = Faults()
        self._by_http_status: collections.Counter[int] = collections.Counter()
        self._by_outcome: collections.Counter[str] = collections.Counter()
        self._by_kind: collections.Counter[str] = collections.Counter()
        self._malformed_count = 0
        self._started_at = time.time()
        self._stopping = threading.Event()  # set by stop(): ends trickled answers at once
        self.requests = RequestLog()  # arrival times of API requests, per API key
        self._create_behaviour = CreateBehaviour()
        self._creates: list[CreateRecord] = []

    # -- lifecycle: start(), stop(), `with` from LoopbackServer -------------------------------
    def start(self) -> Self:
        if self._server is None:
            self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        """Stop serving; returns promptly, ending trickled answers and open connections."""
        self._stopping.set()
        super().stop()

    @property
    def base_url(self) -> str:
        """What TENSORSLAB_BASE_URL should be: `http://host:port` (raises before `start()`)."""
        return self.url

    # -- scripting and inspection -----------------------------------------------------------
    def add_task(self, script: TaskScript) -> dict[str, Any]:
        """Create (or replace) one task; returns its state."""
        self.add_tasks((script,))
        return self.task_state(script.task_id, kind=script.kind)

    def add_tasks(self, scripts: Iterable[TaskScript]) -> int:
        now = time.time()
        runs = {(s.kind, s.task_id): TaskRun(s, created_at=now) for s in scripts}
        with self._lock:
            self._tasks.update(runs)
        return len(runs)

    def remove_task(self, task_id: str, *, kind: TaskKind = "video") -> bool:
        with self._lock:
            return self._tasks.pop((kind, task_id), None) is not None

    def set_faults(
        self, faults: Faults | None, *, task_id: str | None = None, kind: TaskKind = "video"
    ) -> None:
        """Replace the global faults (both endpoints), or one task's (None there: the task
        follows the global)."""
        with self._lock:
            if task_id is None:
                self._faults = faults or Faults()
            else:
                self._tasks[kind, task_id].faults = faults

    def faults(self, *, task_id: str | None = None, kind: TaskKind = "video") -> Faults | None:
        with self._lock:
            return self._faults if task_id is None else self._tasks[kind, task_id].faults

    def task_state(self, task_id: str, *, kind: TaskKind = "video") -> dict[str, Any]:
        """The task's state (raises KeyError for an unknown task)."""
        with self._lock:
            return self._tasks[kind, task_id].state(time.time())

    def stats(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            for run in self._tasks.values():
                run.advance(now, query=False)
            finished = sum(run.finished_at is not None for run in self._tasks.values())
            return {
                "queries": sum(self._by_http_status.values()),
                "by_http_status": {str(k): v for k, v in sorted(self._by_http_status.items())},
                "by_outcome": dict(sorted(self._by_outcome.items())),
                "by_kind": {kind: self._by_kind[kind] for kind in KINDS},
                "tasks": len(self._tasks),
                "tasks_finished": finished,
                "started_at": self._started_at,
                "uptime_s": now - self._started_at,
            }

    def reset(self, *, seed: int | None = None) -> None:
        """Forget tasks, statistics and faults; restart the random generator from the seed."""
        with self._lock:
            self.seed = self.seed if seed is None else seed
            self._rng = random.Random(self.seed)
            self._tasks = {}
            self._faults = Faults()
            self._by_http_status.clear()
            self._by_outcome.clear()
            self._by_kind.clear()
            self._malformed_count = 0
            self._started_at = time.time()
            self._create_behaviour = CreateBehaviour()
            self._creates = []
        self.requests.clear()

    # -- the create endpoints (creates.py) ---------------------------------------------------
    def set_create_behaviour(self, behaviour: CreateBehaviour) -> None:
        with self._lock:
            self._create_behaviour = behaviour

    def creates(self) -> list[CreateRecord]:
        """Every create request received, oldest first (refused and dropped ones too)."""
        with self._lock:
            return list(self._creates)

    @staticmethod
    def key_of(authorization: str | None) -> str:
        """The API key an Authorization header carries (what `requests` is keyed by)."""
        key = (authorization or "").strip()
        return key[7:].strip() if key[:7].lower() == "bearer " else key

    def create(
        self,
        authorization: str | None,
        kind: TaskKind,
        model: str,
        content_type: str | None,
        body: bytes,
    ) -> Reply | None:
        """Answer one create request; None: drop the connection without an answer."""
        if not self._authorized(authorization):
            return self._count(_api_error(401, "invalid api key"), "unauthorized")
        try:
            fields = parse_form(content_type, body)
        except (ValueError, UnicodeDecodeError) as error:
            self._record_create(kind, model, {}, None, "bad_request")
            return self._count(_api_error(400, f"bad form: {error}"), "bad_request")
        if not fields.get("prompt"):
            self._record_create(kind, model, fields, None, "bad_request")
            return self._count(_api_error(400, "prompt is required"), "bad_request")
        with self._lock:
            behaviour = self._create_behaviour
            if behaviour.drop_after_receiving:
                self._create_behaviour = replace(
                    behaviour, drop_after_receiving=behaviour.drop_after_receiving - 1
                )
        if behaviour.refuse_http_status is not None:
            self._record_create(kind, model, fields, None, "refused")
            reply = _api_error(behaviour.refuse_http_status, behaviour.refuse_msg)
            return self._count(reply, "refused")
        if behaviour.refuse_code is not None:
            self._record_create(kind, model, fields, None, "refused")
            reply = json_reply(200, {"code": behaviour.refuse_code, "msg": behaviour.refuse_msg})
            return self._count(reply, "refused")
        with self._lock:
            task_id = f"sim{kind[0]}_{len(self._creates) + 1:06d}_{self._rng.getrandbits(32):08x}"
        self.add_task(behaviour.task_script(task_id, kind, model, fields))
        if behaviour.drop_after_receiving:
            self._record_create(kind, model, fields, task_id, "dropped")
            with self._lock:
                self._by_outcome["create_dropped"] += 1
            return None
        self._record_create(kind, model, fields, task_id, "created")
        reply = json_reply(
            200, {"code": 1000, "msg": "Task created successfully", "data": {"taskid": task_id}}
        )
        return self._count(reply, "created")

    def _record_create(
        self, kind: str, model: str, fields: dict[str, str], task_id: str | None, outcome: str
    ) -> None:
        record = CreateRecord(time.time(), kind, model, fields, task_id, outcome)
        with self._lock:
            self._creates.append(record)

    # -- the upstream endpoint ---------------------------------------------------------------
    def _authorized(self, header: str | None) -> bool:
        key = (header or "").strip()
        if key[:7].lower() == "bearer ":
            key = key[7:].strip()
        if not key:
            return False
        return self.api_key is None or hmac.compare_digest(key.encode(), self.api_key.encode())

    def _count(self, reply: Reply, outcome: str, kind: TaskKind = "video") -> Reply:
        with self._lock:
            self._by_http_status[reply.status] += 1
            self._by_outcome[outcome] += 1
            self._by_kind[kind] += 1
        return reply

    def query(
        self,
        authorization: str | None,
        body: bytes,
        send: Callable[[Reply], None] | None = None,
        *,
        kind: TaskKind = "video",
    ) -> Reply:
        """Answer one `infobytaskid` request of `kind`'s endpoint as TensorsLab would, faults
        included.

        With `send`, the reply is also sent through it while the query still counts as being
        answered (a trickled answer takes long).
        """
        task_id, more_info, problem = _parse_query(body)
        run = self._tasks.get((kind, task_id)) if task_id else None  # lock-free read
        if run is None:
            reply = self._query(authorization, task_id, more_info, problem, None, kind)
            if send is not None:
                send(reply)
            return reply
        # Count overlapping queries per task: a client that polls one task twice at the same
        # moment shows up as max_concurrent_queries > 1.
        with self._lock:
            run.in_flight += 1
            run.max_in_flight = max(run.max_in_flight, run.in_flight)
        try:
            reply = self._query(authorization, task_id, more_info, problem, run, kind)
            if send is not None:
                send(reply)
            return reply
        finally:
            with self._lock:
                run.in_flight -= 1

    def _query(
        self,
        authorization: str | None,
        task_id: str | None,
        more_info: bool,
        problem: str | None,
        run: TaskRun | None,
        kind: TaskKind,
    ) -> Reply:
        faults = run.faults if run is not None and run.faults is not None else self._faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        reply = self._answer(authorization, task_id, more_info, problem, kind)
        return replace(reply, trickle_s=faults.trickle_s) if faults.trickle_s else reply

    def _answer(
        self,
        authorization: str | None,
        task_id: str | None,
        more_info: bool,
        problem: str | None,
        kind: TaskKind,
    ) -> Reply:
        if not self._authorized(authorization):
            return self._count(_api_error(401, "invalid api key"), "unauthorized", kind)
        if problem or task_id is None:
            reply = _api_error(400, problem or "taskid is required")
            return self._count(reply, "bad_request", kind)
        with self._lock:
            now = time.time()
            run = self._tasks.get((kind, task_id))
            own = run is not None and run.faults is not None
            current = run.faults if run is not None and run.faults is not None else self._faults
            fault, left = current.pick(self._rng)
            if left is not current:
                if own and run is not None:
                    run.faults = left
                else:
                    self._faults = left
            status: int | None = None
            if run is not None:
                run.queries += 1
                if fault is None:
                    status = run.answer(now)
            variant = self._malformed_count
            if fault is not None and fault.kind == "malformed":
                self._malformed_count += 1
        status_field = "image_status" if kind == "image" else "task_status"
        if fault is not None:
            data = {"taskid": task_id, status_field: 2, "url": []}
            if run is not None:
                data = run.script.task_data(
                    run.script.steps[run.step_index].status,
                    more_info=False,
                    created_at=run.created_at,
                )
            reply = _fault_reply(fault, data, variant, status_field)
            return self._count(reply, fault.kind, kind)
        if run is None or status is None:
            return self._count(_api_error(404, "task not found"), "not_found", kind)
        data = run.script.task_data(status, more_info=more_info, created_at=run.created_at)
        reply = json_reply(200, {"code": 1000, "msg": "success", "data": data})
        return self._count(reply, "ok", kind)

    # -- the admin API -----------------------------------------------------------------------
    def admin(self, method: str, path: str, body: bytes, query: str = "") -> Reply:
        """Answer one `/_sim/...` request; errors are `{"error": "..."}`."""
        try:
            obj = json.loads(body) if body.strip() else None
            kind = parse_qs(query).get("kind", ["video"])[-1]
            if kind not in KINDS:
                raise ScriptError(f"kind must be one of {list(KINDS)}, got {kind!r}")
            return self._admin(method, path.removeprefix("/_sim/"), obj, kind)
        except (ScriptError, ValueError, TypeError) as exc:
            return json_reply(400, {"error": str(exc)})

    def _admin(self, method: str, route: str, obj: Any, kind: TaskKind = "video") -> Reply:
        if (method, route) == ("POST", "tasks"):
            if isinstance(obj, dict) and "tasks" in obj:
                if not isinstance(obj["tasks"], list):
                    raise ScriptError("'tasks' must be a list of task objects")
                return json_reply(201, {"created": self.add_tasks(_many(obj["tasks"]))})
            return json_reply(201, self.add_task(TaskScript.from_json(obj)))
        if (method, route) == ("GET", "creates"):
            return json_reply(200, {"creates": [record.to_json() for record in self.creates()]})
        if (method, route) == ("PUT", "create-behaviour"):
            self.set_create_behaviour(CreateBehaviour.from_json(obj or {}))
            return json_reply(200, {"ok": True})
        if (method, route) == ("GET", "requests"):
            times = {key: self.requests.times(key) for key in self.requests.api_keys()}
            return json_reply(200, {"requests": times})
        if (method, route) == ("GET", "stats"):
            return json_reply(200, self.stats())
        if route == "faults" and method in ("GET", "PUT"):
            if method == "PUT":
                self.set_faults(Faults.from_json(obj or {}))
            return json_reply(200, self._faults.to_json())
        if (method, route) == ("POST", "reset"):
            seed = obj.get("seed") if isinstance(obj, dict) else None
            self.reset(seed=seed if isinstance(seed, int) else None)
            return json_reply(200, {"reset": True, "seed": self.seed})
        if route.startswith("tasks/"):
            task_id, _, part = route.removeprefix("tasks/").partition("/")
            if (kind, task_id) not in self._tasks:
                return json_reply(404, {"error": f"unknown {kind} task {task_id!r}"})
            if (method, part) == ("GET", ""):
                return json_reply(200, self.task_state(task_id, kind=kind))
            if (method, part) == ("DELETE", ""):
                self.remove_task(task_id, kind=kind)
                return json_reply(200, {"deleted": task_id})
            if part == "faults" and method == "PUT":
                faults = None if obj is None else Faults.from_json(obj)
                self.set_faults(faults, task_id=task_id, kind=kind)
                return json_reply(200, self.task_state(task_id, kind=kind))
        return json_reply(404, {"error": f"no admin route {method} /_sim/{route}"})


def _many(items: list[Any]) -> list[TaskScript]:
    scripts = []
    for i, item in enumerate(items):
        try:
            scripts.append(TaskScript.from_json(item))
        except ScriptError as exc:
            raise ScriptError(f"tasks[{i}]: {exc}") from None
    return scripts


def _parse_query(body: bytes) -> tuple[str | None, bool, str | None]:
    """(taskid, moreTaskInfo, problem) from a request body; `problem` explains a 400."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, False, "request body must be JSON"
    if not isinstance(obj, dict):
        return None, False, "request body must be a JSON object"
    task_id, more = obj.get("taskid"), obj.get("moreTaskInfo", False)
    if not isinstance(task_id, str) or not task_id:
        return None, False, "taskid must be a non-empty string"
    if not isinstance(more, bool):
        return task_id, False, "moreTaskInfo must be a boolean"
    return task_id, more, None


def _create_route(path: str) -> tuple[TaskKind, str] | None:
    """(kind, model) of a create endpoint's path, e.g. /v1/video/seedancev2; else None."""
    for prefix, kind in CREATE_PREFIXES.items():
        if path.startswith(prefix):
            model = path.removeprefix(prefix)
            if model and "/" not in model and model not in STATUS_NAMES:
                return kind, model
    return None


class _Handler(LoopbackHandler[Simulator]):
    server_version = "tensorslab-sim/1.0"

    @property
    def sim(self) -> Simulator:
        return self.owner

    def log_message(self, format: str, *args: Any) -> None:
        if self.sim.verbose:
            super().log_message(format, *args)

    def respond(self, method: str) -> None:
        try:
            raw_path, _, query = self.path.partition("?")
            path = unquote(raw_path)
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                raise ValueError(f"bad Content-Length {length}")
            body = self.rfile.read(length) if length else b""
            if path.startswith("/v1/"):
                self.sim.requests.record(self.sim.key_of(self.headers.get("Authorization")))
            create = _create_route(path) if method == "POST" else None
            if create is not None:
                answer = self.sim.create(
                    self.headers.get("Authorization"),
                    *create,
                    self.headers.get("Content-Type"),
                    body,
                )
                if answer is None:  # the fault: the request was read, no answer is sent
                    self.close_connection = True
                    return
                reply = answer
            elif path in STATUS_PATHS and method == "POST":
                kind = STATUS_PATHS[path]
                self.sim.query(self.headers.get("Authorization"), body, send=self._send, kind=kind)
                return
            elif path.startswith("/_sim/"):
                reply = self.sim.admin(method, path, body, query)
            elif path in STATUS_PATHS:
                reply = _api_error(405, f"method {method} not allowed")
            else:
                reply = _api_error(404, f"no such path: {path}")
        except Exception as exc:  # the simulator must answer, never hang a test
            self.close_connection = True
            reply = _api_error(500, f"simulator error: {exc!r}")
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.trickle_s:
            self._trickle(reply)
        else:
            self.send_whole(
                reply.status, reply.body, content_type=reply.content_type, headers=reply.headers
            )
        if self.sim.verbose:
            self.log_request(reply.status, len(reply.body))

    def _trickle(self, reply: Reply) -> None:
        """The whole answer one byte every `reply.trickle_s` seconds (each after a wait); the
        connection closes after it. Ends early when the client goes away or stop() is called."""
        self.close_connection = True
        real, self.wfile = self.wfile, io.BytesIO()
        try:
            self.send_whole(
                reply.status, reply.body, content_type=reply.content_type, headers=reply.headers
            )
            whole = self.wfile.getvalue()
        finally:
            self.wfile = real
        stop = self.sim._stopping
        trickle(self.wfile, self.connection, whole, every_s=reply.trickle_s, stop=stop)


def serve(
    *, host: str, port: int, api_key: str | None, seed: int = 0, verbose: bool = False
) -> None:
    """Serve the simulator until interrupted (Ctrl+C); for the command line."""
    sim = Simulator(host=host, port=port, api_key=api_key, seed=seed, verbose=verbose).start()
    print(f"TensorsLab simulator listening on {sim.base_url}", flush=True)
    try:
        while sim._thread is not None and sim._thread.is_alive():
            sim._thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
