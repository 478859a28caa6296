"""Finding tasks as the dashboard does: by a piece of the task ID or of the metadata, and between
two times; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tracker import db
from tracker.db.clock import utc_now
from tracker.errors import InvalidInput
from tracker.tasks import queries, register


def _ids(url: str, **filters: object) -> list[str]:
    with db.read_scope(url) as session:
        page = queries.page_tasks(session, **filters)  # type: ignore[arg-type]
    return sorted(task.task_id for task in page.tasks)


def _register(url: str, task_id: str, metadata: dict[str, object]) -> None:
    with db.session_scope(url) as session:
        register.register_tasks(
            session, [register.NewTask(task_id, metadata, None)], first_poll_delay_s=600
        )


def test_search_matches_the_task_id_or_the_metadata(database_url: str) -> None:
    _register(database_url, "vid-100", {"customer": "acme", "take": 1})
    _register(database_url, "vid-200", {"customer": "globex"})
    _register(database_url, "img_50%", {})
    assert _ids(database_url, search="acme") == ["vid-100"]
    assert _ids(database_url, search="vid-") == ["vid-100", "vid-200"]
    assert _ids(database_url, search="50%") == ["img_50%"]  # LIKE's wildcards are literal
    assert _ids(database_url, search="_5") == ["img_50%"]
    assert _ids(database_url, search="nobody") == []


def test_before_bounds_are_exclusive_and_combine_with_since(database_url: str) -> None:
    _register(database_url, "t-1", {})
    now = utc_now()
    assert _ids(database_url, created_before=now + timedelta(minutes=1)) == ["t-1"]
    assert _ids(database_url, created_before=now - timedelta(minutes=1)) == []
    assert _ids(database_url, updated_before=now - timedelta(minutes=1)) == []
    assert _ids(
        database_url,
        created_since=now - timedelta(minutes=1),
        updated_before=now + timedelta(minutes=1),
    ) == ["t-1"]


@pytest.mark.parametrize("search", ["", "x" * 201, "a\x00b", "tab\there"])
def test_a_search_that_is_empty_too_long_or_has_control_characters_is_refused(
    database_url: str, search: str
) -> None:
    with db.read_scope(database_url) as session, pytest.raises(InvalidInput):
        queries.page_tasks(session, search=search)
