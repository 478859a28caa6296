"""The fault campaign's bookkeeping: scripted tasks, waiting for a run to settle, and the five
counts every scenario must keep at zero.

- *lost tasks*: a registered task that did not end terminal with the status its script says;
- *duplicated transitions*: a transition row beyond one per status change (a status reached
  twice, a row from a status to itself, or a row whose `from_status` is not where the previous
  row left the task); rows off the script's order count here too;
- *lost messages*: a terminal transition whose subscribed webhook never arrived verified;
- *two-id messages*: a (task, event) that reached the receiver under more than one webhook-id
  (retries and redeliveries must reuse it), or that has more than one delivery row;
- *overlapping polls*: a task the simulator saw queried twice at the same moment.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import TrackedTask, Transition, WebhookDelivery
from tracker.tasks import register
from tracker.testing.receiver import ReceivedWebhook, WebhookReceiver
from tracker.testing.simulator import Simulator, Status, Step, TaskScript
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy

__all__ = [
    "EVENTS",
    "SUMMARIES",
    "Campaign",
    "Counts",
    "add_receiver_endpoint",
    "bad_transitions",
    "sleep_checking",
    "wait_until_settled",
]

EVENTS = ("task.completed", "task.failed", "task.not_found")
STATUS_NAMES = {
    Status.PENDING: "pending",
    Status.PROCESSING: "processing",
    Status.UPLOADING: "uploading",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
}
EVENT_OF = {"completed": "task.completed", "failed": "task.failed", "not_found": "task.not_found"}
SUMMARIES: list[str] = []  # one line per scenario run, printed at the end by conftest.py


@dataclass(frozen=True, slots=True)
class Counts:
    lost_tasks: int
    duplicated_transitions: int
    lost_messages: int
    two_id_messages: int
    overlapping_polls: int
    detail: str  # what each non-zero count is made of, for the failure message

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (
            self.lost_tasks,
            self.duplicated_transitions,
            self.lost_messages,
            self.two_id_messages,
            self.overlapping_polls,
        )

    def line(self) -> str:
        return (
            f"lost={self.lost_tasks} duplicated_transitions={self.duplicated_transitions} "
            f"lost_messages={self.lost_messages} two_id_messages={self.two_id_messages} "
            f"overlapping_polls={self.overlapping_polls}"
        )


def bad_transitions(history: list[tuple[str, str]], path: list[str]) -> int:
    """The rows of `history` ((from, to) oldest first) beyond one per status change along
    `path` (the statuses after `registered`, in order; a status may be skipped, when no poll saw
    it, but never reached twice, moved to itself, or reached from anywhere but the last one)."""
    bad, at, seen, position = 0, "registered", set(), -1
    for old, new in history:
        wrong = old != at or old == new or new in seen
        if new in path[position + 1 :]:
            position = path.index(new, position + 1)
        else:
            wrong = True  # not where the script goes next
        bad += wrong
        seen.add(new)
        at = new
    return bad


def _scripts(prefix: str, count: int, seed: int) -> list[TaskScript]:
    """Tasks that end between about 1 and 18 s after they are added, so faults injected a few
    seconds into the run hit tasks in every phase: time-counted steps and poll-counted ones,
    completed and failed."""
    rng = random.Random(seed)
    scripts = []
    for i in range(count):
        task_id = f"{prefix}-{i:03d}"
        wait = round(rng.uniform(0.3, 6.0), 2)
        work = round(rng.uniform(0.5, 10.0), 2)
        kind = i % 4
        steps: tuple[Step, ...]
        if kind == 0:
            steps = (Step(1, after_s=wait), Step(2, after_s=work), Step(5, after_s=1.0), Step(3))
            scripts.append(TaskScript(task_id, steps))
        elif kind == 1:
            steps = (Step(1, after_s=wait), Step(2, after_s=work), Step(4))
            scripts.append(TaskScript(task_id, steps, message=f"rejected {i}"))
        elif kind == 2:
            steps = (Step(1, after_s=wait), Step(2, polls=2), Step(5, polls=1), Step(3))
            scripts.append(TaskScript(task_id, steps))
        else:
            steps = (Step(2, after_s=wait + work), Step(4))
            scripts.append(TaskScript(task_id, steps, message=f"failed {i}"))
    return scripts


class Campaign:
    """One scenario's tasks: `count` scripted ones plus `never` IDs the simulator never knows
    (they must end `not_found`)."""

    def __init__(self, name: str, *, stack: str, count: int, never: int = 2, seed: int = 1) -> None:
        self.name, self.stack = name, stack
        self.scripts = _scripts(name, count, seed)
        self.never = [f"{name}-never-{i}" for i in range(never)]
        self.faults: list[str] = []  # what was injected, in order, for the summary
        self.started = time.monotonic()

    @property
    def task_ids(self) -> list[str]:
        return [s.task_id for s in self.scripts] + self.never

    def expected_path(self, task_id: str) -> list[str]:
        """The statuses the task goes through after `registered`, in order."""
        for script in self.scripts:
            if script.task_id == task_id:
                return [STATUS_NAMES[Status(step.status)] for step in script.steps]
        return ["not_found"]

    def expected_final(self, task_id: str) -> str:
        return self.expected_path(task_id)[-1]

    def start(self, database_url: str, simulator: Simulator) -> None:
        """Script the tasks in the simulator and register them all (their clocks start now)."""
        simulator.add_tasks(self.scripts)
        with db.session_scope(database_url) as session:
            register.register(session, self.task_ids, now=utc_now(), first_poll_delay_s=0)
        self.started = time.monotonic()

    def fault(self, what: str) -> None:
        self.faults.append(f"{what}@{time.monotonic() - self.started:.1f}s")

    # -- the counts ---------------------------------------------------------------------------
    def counts(self, database_url: str, simulator: Simulator, receiver: WebhookReceiver) -> Counts:
        with db.read_scope(database_url) as session:
            tasks = {
                row.task_id: (row.id, row.status) for row in session.scalars(select(TrackedTask))
            }
            moves: dict[int, list[tuple[str, str]]] = defaultdict(list)
            for t in session.scalars(select(Transition).order_by(Transition.id)):
                moves[t.task_pk].append((t.from_status, t.to_status))
            rows: dict[tuple[int | None, str], int] = defaultdict(int)
            for d in session.scalars(select(WebhookDelivery)):
                rows[(d.task_pk, d.event_type)] += 1
        details: list[str] = []

        lost = 0
        for task_id in self.task_ids:
            status = tasks.get(task_id, (0, "missing"))[1]
            if status != self.expected_final(task_id):
                lost += 1
                details.append(f"lost {task_id}: {status}, expected {self.expected_final(task_id)}")

        duplicated = 0
        for task_id in self.task_ids:
            if task_id not in tasks:
                continue
            path = self.expected_path(task_id)
            history = moves.get(tasks[task_id][0], [])
            bad = bad_transitions(history, path)
            if bad:
                duplicated += bad
                details.append(f"transitions of {task_id}: {history} for script {path}")

        received: dict[tuple[str, str], list[ReceivedWebhook]] = defaultdict(list)
        for item in receiver.received:
            if item.verified:
                data = item.payload["data"]
                received[(data["task_id"], item.payload["type"])].append(item)
        unverified = [item for item in receiver.received if not item.verified]
        lost_messages = 0
        for task_id in self.task_ids:
            event = EVENT_OF.get(tasks.get(task_id, (0, ""))[1])
            if event is not None and not received[(task_id, event)]:
                lost_messages += 1
                details.append(f"no {event} for {task_id}")
        if unverified:
            details.append(f"{len(unverified)} unverified requests: {unverified[:3]}")

        two_ids = 0
        for (task_id, event), items in received.items():
            ids = {item.headers["webhook-id"] for item in items}
            if len(ids) > 1:
                two_ids += len(ids) - 1
                details.append(f"{task_id} {event} under {sorted(ids)}")
        for (task_pk, event), count in rows.items():
            if count > 1:
                two_ids += count - 1
                details.append(f"task row {task_pk} has {count} {event} deliveries")

        overlapping = 0
        for script in self.scripts:
            state = simulator.task_state(script.task_id)
            if state["max_concurrent_queries"] > 1:
                overlapping += 1
                details.append(f"{script.task_id}: {state['max_concurrent_queries']} at once")

        return Counts(lost, duplicated, lost_messages, two_ids, overlapping, "\n".join(details))

    def report(self, counts: Counts, receiver: WebhookReceiver, simulator: Simulator) -> str:
        """Record and print the scenario's one-line summary; returns it."""
        repeats = len(receiver.received) - len(
            {item.headers.get("webhook-id") for item in receiver.received}
        )
        line = (
            f"[faults] {self.name} ({self.stack}): tasks={len(self.task_ids)} "
            f"faults={len(self.faults)} ({', '.join(self.faults) or 'none'}) | {counts.line()} "
            f"| webhooks={len(receiver.received)} (same-id repeats {repeats}) "
            f"polls={simulator.stats()['queries']} in {time.monotonic() - self.started:.1f}s"
        )
        SUMMARIES.append(line)
        print(line)
        return line


def add_receiver_endpoint(database_url: str, receiver: WebhookReceiver) -> None:
    """An endpoint for every task, for completed, failed and not_found, on the receiver."""
    with db.session_scope(database_url) as session:
        created = endpoints.add_endpoint(
            session,
            receiver.url + "/hook",
            events=EVENTS,
            now=utc_now(),
            policy=AddressPolicy.from_setting("127.0.0.0/8"),
        )
    assert created.secret is not None
    receiver.set_secrets([created.secret])


def _settled(database_url: str, task_ids: Iterable[str], receiver: WebhookReceiver) -> str | None:
    """None once every task is terminal, no delivery is pending and each delivery arrived; else
    what is still missing."""
    wanted = set(task_ids)
    with db.read_scope(database_url) as session:
        statuses = {row.task_id: row.status for row in session.scalars(select(TrackedTask))}
        pending = list(
            session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.status == "pending"))
        )
    open_tasks = sorted(
        t for t in wanted if statuses.get(t) not in EVENT_OF and statuses.get(t) != "expired"
    )
    if open_tasks:
        return f"{len(open_tasks)} tasks not terminal: {open_tasks[:5]}"
    if pending:
        return f"{len(pending)} deliveries pending"
    arrived = {
        (item.payload["data"]["task_id"], item.payload["type"])
        for item in receiver.received
        if item.verified and item.answered_status == 200
    }
    missing = [t for t in wanted if (t, EVENT_OF[statuses[t]]) not in arrived]
    if missing:
        return f"{len(missing)} webhooks not arrived: {missing[:5]}"
    return None


def wait_until_settled(
    database_url: str,
    task_ids: Iterable[str],
    receiver: WebhookReceiver,
    *,
    check_alive: Callable[[], None],
    logs: Callable[[], str],
    timeout_s: float = 120,
) -> None:
    """Wait until the run is over (see `_settled`), then a little more for any duplicate."""
    ids = list(task_ids)
    deadline = time.monotonic() + timeout_s
    why: str | None = "not checked yet"
    while time.monotonic() < deadline:
        check_alive()
        try:
            why = _settled(database_url, ids, receiver)
        except Exception as error:  # the database may be down or coming back
            why = f"database: {type(error).__name__}: {error}"
            db.dispose_engine()
        if why is None:
            time.sleep(1.5)  # a duplicate poll or send, if any, would show now
            return
        time.sleep(0.3)
    pytest.fail(f"the run did not settle in {timeout_s:g} s: {why}\n{logs()}")


def sleep_checking(seconds: float, check_alive: Callable[[], None]) -> None:
    """Sleep, failing at once if a process died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check_alive()
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
