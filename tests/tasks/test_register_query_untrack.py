"""Registering, querying and untracking tasks, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tracker import db
from tracker.db.models import TrackedTask, Transition
from tracker.errors import InvalidMetadata, InvalidTaskId, UnknownTask
from tracker.states import TaskStatus
from tracker.tasks import queries, register, untrack, views

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _register(url: str, ids: list[object], **kwargs: object) -> list[views.Registration]:
    with db.session_scope(url) as session:
        return register.register(session, ids, now=NOW, first_poll_delay_s=5, **kwargs)  # type: ignore[arg-type]


def _count(url: str, model: type[TrackedTask] | type[Transition]) -> int:
    with db.session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_register_stores_new_tasks_due_after_the_first_delay(database_url: str) -> None:
    registrations = _register(database_url, ["task-a", "task-b"], metadata={"user": 7})

    assert [(r.task.task_id, r.created) for r in registrations] == [
        ("task-a", True),
        ("task-b", True),
    ]
    task = registrations[0].task
    assert task.status is TaskStatus.REGISTERED
    assert task.provider == "tensorslab"
    assert task.metadata == {"user": 7}
    assert task.next_poll_at == NOW + timedelta(seconds=5)
    assert task.created_at == NOW


def test_registering_again_changes_nothing_and_says_so(database_url: str) -> None:
    _register(database_url, ["task-a"])
    with db.session_scope(database_url) as session:
        untrack.untrack(session, "task-a", now=NOW)

    again = _register(database_url, ["task-a", "task-new", "task-a"])

    assert [(r.task.task_id, r.created) for r in again] == [("task-a", False), ("task-new", True)]
    assert again[0].task.status is TaskStatus.CANCELLED
    assert _count(database_url, TrackedTask) == 2


@pytest.mark.parametrize(
    ("bad_id", "message"),
    [
        ("", "is empty"),
        ("x" * 257, "257 characters long; the limit is 256"),
        ("has space", "whitespace"),
        ("tab\there", "whitespace"),
        ("new\nline", "whitespace"),
        ("nul\x00byte", "control character"),
        ("zero\u200bwidth", "control character"),
        ("no\u00a0break", "whitespace"),
        (42, "must be a string"),
    ],
    ids=["empty", "too-long", "space", "tab", "newline", "nul", "zero-width", "nbsp", "not-str"],
)
def test_a_batch_with_one_bad_id_stores_none(
    database_url: str, bad_id: object, message: str
) -> None:
    with pytest.raises(InvalidTaskId, match=message) as caught:
        _register(database_url, ["good-1", bad_id, "good-2"])

    assert "task ID #2" in str(caught.value)
    assert _count(database_url, TrackedTask) == 0


def test_the_longest_allowed_id_is_accepted(database_url: str) -> None:
    [registration] = _register(database_url, ["x" * 256])
    assert registration.created


def test_an_empty_batch_and_non_object_metadata_are_refused(database_url: str) -> None:
    with pytest.raises(InvalidTaskId, match="no task ID"):
        _register(database_url, [])
    with pytest.raises(InvalidMetadata, match="JSON object"):
        _register(database_url, ["task-a"], metadata=["not", "an", "object"])
    assert _count(database_url, TrackedTask) == 0


def test_get_list_and_history(database_url: str) -> None:
    with db.session_scope(database_url) as session:
        register.register(session, ["old"], now=NOW, first_poll_delay_s=5)
        register.register(session, ["new"], now=NOW + timedelta(minutes=1), first_poll_delay_s=5)
        untrack.untrack(session, "old", now=NOW + timedelta(minutes=2))

    with db.session_scope(database_url) as session:
        assert queries.get_task(session, "new").status is TaskStatus.REGISTERED
        assert [t.task_id for t in queries.list_tasks(session)] == ["new", "old"]
        assert [t.task_id for t in queries.list_tasks(session, limit=1)] == ["new"]
        cancelled = queries.list_tasks(session, status=TaskStatus.CANCELLED)
        assert [t.task_id for t in cancelled] == ["old"]
        [transition] = queries.history(session, "old")
        assert queries.history(session, "new") == []
        assert queries.count_by_status(session) == {
            TaskStatus.REGISTERED: 1,
            TaskStatus.CANCELLED: 1,
        }
    assert (transition.from_status, transition.to_status) == (
        TaskStatus.REGISTERED,
        TaskStatus.CANCELLED,
    )
    assert transition.note == "untracked by the user"


def test_untrack_stops_polling_once_and_only_once(database_url: str) -> None:
    _register(database_url, ["task-a"])
    with db.session_scope(database_url) as session:
        first = untrack.untrack(session, "task-a", now=NOW)
    with db.session_scope(database_url) as session:
        second = untrack.untrack(session, "task-a", now=NOW)

    assert first.changed and not second.changed
    assert first.task.status is TaskStatus.CANCELLED
    assert first.task.next_poll_at is None
    assert first.task.completed_at == NOW
    assert _count(database_url, Transition) == 1


def test_unknown_tasks_are_reported_by_id(database_url: str) -> None:
    with db.session_scope(database_url) as session, pytest.raises(UnknownTask, match="'nope'"):
        queries.get_task(session, "nope")
    with db.session_scope(database_url) as session, pytest.raises(UnknownTask):
        untrack.untrack(session, "nope", now=NOW)
