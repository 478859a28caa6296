"""The dashboard against hostile or odd input, through FastAPI's TestClient on SQLite and
PostgreSQL: a CSRF field that is not ASCII, times past the year 9999 once in UTC, result URLs
that are not URLs, a task ID with `%2F` in it behind the sign-in page, a delivery of an image
task, two tasks sharing an ID, and a row this version cannot read. Each gets a clear page (a
500 only for that last one, and as a page) and leaves stored data as it was.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, update

from tests.ui.conftest import Dashboard, csrf_of, error_of
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.states import TaskStatus
from tracker.tasks import queries, register, untrack
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy

RECEIVER_URL = "http://127.0.0.1:9/hooks"  # allowed by the settings; nothing is sent to it here


def _register(task_id: str, *, provider: str = "tensorslab") -> None:
    with db.session_scope() as session:
        register.register_tasks(
            session, [register.NewTask(task_id)], first_poll_delay_s=600, provider=provider
        )


def _status(task_id: str) -> TaskStatus:
    with db.session_scope() as session:
        return TaskStatus(queries.rows_by_task_id(session, "tensorslab", [task_id])[task_id].status)


@pytest.mark.parametrize("csrf", ["é", "\u2603" * 32])
def test_a_csrf_field_that_is_not_ascii_gets_403_and_changes_nothing(
    dashboard: Dashboard, csrf: str
):
    _register("ascii-1")
    dashboard.sign_in()
    answer = dashboard.client.post("/actions/untrack", data={"csrf": csrf, "task_id": "ascii-1"})
    assert answer.status_code == 403, answer.text
    assert "security token" in error_of(answer.text)
    assert _status("ascii-1") is TaskStatus.REGISTERED


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (
            "/tasks?created_since=9999-12-31T23:59-01:00",
            "registered from: '9999-12-31T23:59-01:00'",
        ),
        (
            "/tasks?updated_before=0001-01-01T00:00%2B05:00",
            "updated before: '0001-01-01T00:00+05:00'",
        ),
        (
            "/deliveries?since=9999-12-31T23:59:59-12:00",
            "written from: '9999-12-31T23:59:59-12:00'",
        ),
    ],
)
def test_a_time_past_the_years_1_to_9999_in_utc_is_a_422_page(
    dashboard: Dashboard, path: str, says: str
):
    dashboard.sign_in()
    answer = dashboard.client.get(path)
    assert answer.status_code == 422, answer.text
    message = error_of(answer.text).replace("&#39;", "'")
    assert says in message and "outside the years 1 to 9999 in UTC" in message


def test_recovering_since_a_time_past_9999_in_utc_is_a_422_page(dashboard: Dashboard):
    with db.session_scope() as session:
        hook = endpoints.add_endpoint(
            session,
            RECEIVER_URL,
            events=["task.cancelled"],
            policy=AddressPolicy.from_setting("127.0.0.0/8"),
        ).endpoint
    dashboard.sign_in()
    answer = dashboard.post(
        "/actions/recover", endpoint=str(hook.id), since="9999-12-31T23:59-01:00"
    )
    assert answer.status_code == 422, answer.text
    assert "outside the years 1 to 9999" in error_of(answer.text)


def test_result_urls_that_are_not_https_urls_are_text_not_media(dashboard: Dashboard):
    _register("odd-urls")
    hostile = [
        "https://[::1/broken.mp4",  # urlsplit refuses it: once a 500
        "javascript:alert(1).mp4",  # a video suffix, but no web URL
        "data:image/svg+xml,<svg onload=alert(1)>.png",
        "http://cdn.example.invalid/plain-http.mp4",  # the CSP plays https media only
    ]
    with db.session_scope() as session:
        session.execute(
            update(TrackedTask)
            .where(TrackedTask.task_id == "odd-urls")
            .values(status=TaskStatus.COMPLETED.value, completed_at=utc_now(), result_urls=hostile)
        )
    dashboard.sign_in()
    page = dashboard.client.get("/tasks/odd-urls")
    assert page.status_code == 200, page.text
    assert "<video" not in page.text and "<img" not in page.text
    assert 'href="javascript:' not in page.text and 'href="data:' not in page.text
    assert "https://[::1/broken.mp4" in page.text  # shown, as text
    assert 'href="http://cdn.example.invalid/plain-http.mp4"' in page.text  # still a link


def test_signing_in_from_a_task_page_comes_back_to_that_task_even_with_2f_in_its_id(
    dashboard: Dashboard, served: httpx.Client
):
    _register("a/b")
    _register("a%2Fb")  # another task: its ID holds the three characters % 2 F
    asked = f"/tasks/{quote('a%2Fb', safe='')}"  # /tasks/a%252Fb
    detour = served.get(asked)
    assert detour.status_code == 303
    assert detour.headers["location"] == f"/signin?next={quote(asked, safe='')}"
    signin = served.get(detour.headers["location"])
    next_field = re.search(r'name="next" value="([^"]*)"', signin.text)
    assert next_field is not None and next_field.group(1) == asked
    answer = served.post(
        "/signin",
        data={"csrf": csrf_of(signin.text), "token": dashboard.token, "next": next_field.group(1)},
    )
    assert answer.headers["location"] == asked
    landed = served.get(answer.headers["location"])
    assert '<span class="wrap">a%2Fb</span>' in landed.text


def test_a_delivery_of_an_image_task_links_to_that_task(dashboard: Dashboard):
    with db.session_scope() as session:
        endpoints.add_endpoint(
            session,
            RECEIVER_URL,
            events=["task.cancelled"],
            policy=AddressPolicy.from_setting("127.0.0.0/8"),
        )
    _register("pic-1", provider="tensorslab-image")
    with db.session_scope() as session:
        untrack.untrack(session, "pic-1", provider="tensorslab-image")
    dashboard.sign_in()
    listing = dashboard.client.get("/deliveries").text
    assert 'href="/tasks/pic-1?provider=tensorslab-image"' in listing
    assert 'href="/tasks/pic-1"' not in listing
    assert dashboard.client.get("/tasks/pic-1?provider=tensorslab-image").status_code == 200


def test_an_unexpected_failure_is_a_500_page_not_the_apis_json(
    dashboard: Dashboard, caplog: pytest.LogCaptureFixture
):
    _register("odd-row")
    with db.session_scope() as session:  # a row this version cannot read (edited by hand, say)
        session.execute(
            update(TrackedTask).where(TrackedTask.task_id == "odd-row").values(status="bogus")
        )
    dashboard.sign_in()
    answer = dashboard.client.get("/tasks")
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "the server&#39;s log says why" in error_of(answer.text)
    assert answer.headers["cache-control"] == "no-store"
    assert "unexpected error while rendering /tasks" in caplog.text
    assert dashboard.client.get("/endpoints").status_code == 200  # the session lives on


def test_only_the_overdue_one_of_two_tasks_sharing_an_id_is_marked_overdue(dashboard: Dashboard):
    _register("twin-1")
    _register("twin-1", provider="tensorslab-image")
    with db.session_scope() as session:
        video = select(TrackedTask.id).where(
            TrackedTask.task_id == "twin-1", TrackedTask.provider == "tensorslab"
        )
        session.execute(
            update(ScheduledPoll)
            .where(ScheduledPoll.task_pk.in_(video))
            .values(next_poll_at=utc_now() - timedelta(minutes=5))
        )
    dashboard.sign_in()
    listing = dashboard.client.get("/tasks").text
    rows = re.findall(r'<tr id="task-.*?</tr>', listing, re.S)
    assert len(rows) == 2
    [flagged] = [row for row in rows if 'class="flag overdue"' in row]
    assert "<td>tensorslab</td>" in flagged
