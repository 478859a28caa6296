"""The dashboard's pages through FastAPI's TestClient, on SQLite and PostgreSQL: sign-in and its
cookie, CSRF refusals, a revoked token, bad filters and task IDs, and actions that change what
the pages then show. Each refusal leaves stored data as it was.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import update

from tests.support import reschedule
from tests.ui.conftest import Dashboard, csrf_of, error_of
from tracker import db, tokens
from tracker.db.clock import utc_now
from tracker.db.models import TrackedTask
from tracker.ops import heartbeats
from tracker.settings import get_settings
from tracker.states import TaskStatus
from tracker.tasks import queries, register, untrack
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider
from tracker.ui.session import COOKIE_NAME, COOKIE_SALT, SESSION_MAX_AGE_S
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.vault import derive_key

RECEIVER_URL = "http://127.0.0.1:9/hooks"  # allowed by the settings; nothing is sent to it here


def _register(*task_ids: str, metadata: dict[str, object] | None = None) -> None:
    with db.session_scope() as session:
        register.register_tasks(
            session,
            [register.NewTask(task_id, metadata or {}, None) for task_id in task_ids],
            first_poll_delay_s=600,
        )


def _status(task_id: str) -> TaskStatus | None:
    with db.session_scope() as session:
        found = queries.rows_by_task_id(session, "tensorslab", [task_id])
        return TaskStatus(found[task_id].status) if task_id in found else None


def test_every_page_but_sign_in_sends_a_signed_out_browser_to_sign_in(dashboard: Dashboard):
    for path in ("/", "/tasks", "/tasks/x", "/deliveries", "/deliveries/1", "/endpoints"):
        answer = dashboard.client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/signin?next={quote(path, safe='')}"
    page = dashboard.client.get("/signin")
    assert page.status_code == 200
    assert 'name="token"' in page.text


def test_signing_in_sets_an_httponly_strict_cookie_without_the_token(dashboard: Dashboard):
    page = dashboard.client.get("/signin?next=/endpoints")
    answer = dashboard.client.post(
        "/signin",
        data={"csrf": csrf_of(page.text), "token": dashboard.token, "next": "/endpoints"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/endpoints"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    value = cookie.split(";")[0].split("=", 1)[1].strip('"')
    # What anyone holding the cookie can read (signed, not encrypted): no token in it.
    _, payload = URLSafeTimedSerializer(b"any key").loads_unsafe(value)
    assert payload["t"] == dashboard.token_id
    assert dashboard.token not in json.dumps(payload)
    assert dashboard.token[4:12] not in json.dumps(payload)
    shown = dashboard.client.get("/endpoints")
    assert shown.status_code == 200
    assert "signed in as dashboard tests" in shown.text


def test_a_wrong_token_is_refused_with_401_and_no_session(dashboard: Dashboard):
    page = dashboard.client.get("/signin")
    answer = dashboard.client.post(
        "/signin", data={"csrf": csrf_of(page.text), "token": "trk_not-a-real-token"}
    )
    assert answer.status_code == 401
    assert "not valid, or was revoked" in error_of(answer.text)
    assert dashboard.client.get("/tasks").status_code == 303


def test_sign_in_without_the_pages_csrf_token_is_refused(dashboard: Dashboard):
    answer = dashboard.client.post("/signin", data={"token": dashboard.token})
    assert answer.status_code == 403
    assert dashboard.client.get("/tasks").status_code == 303


def test_the_next_page_after_sign_in_stays_on_this_site(dashboard: Dashboard):
    page = dashboard.client.get("/signin")
    answer = dashboard.client.post(
        "/signin",
        data={"csrf": csrf_of(page.text), "token": dashboard.token, "next": "//evil.example/"},
    )
    assert answer.headers["location"] == "/"


@pytest.mark.parametrize("csrf", [None, "forged-token-value"])
def test_a_form_with_a_missing_or_forged_csrf_token_gets_403_and_changes_nothing(
    dashboard: Dashboard, csrf: str | None
):
    _register("csrf-1")
    dashboard.sign_in()
    fields = {"task_id": "csrf-1"} | ({"csrf": csrf} if csrf else {})
    answer = dashboard.client.post("/actions/untrack", data=fields)
    assert answer.status_code == 403
    assert "security token" in error_of(answer.text)
    assert _status("csrf-1") is TaskStatus.REGISTERED


def test_a_signed_out_browser_posting_a_form_gets_401_and_changes_nothing(dashboard: Dashboard):
    _register("out-1")
    page = dashboard.client.get("/signin")  # a session with a CSRF nonce, but nobody signed in
    answer = dashboard.client.post(
        "/actions/untrack", data={"csrf": csrf_of(page.text), "task_id": "out-1"}
    )
    assert answer.status_code == 401
    assert "signed out" in error_of(answer.text)
    assert _status("out-1") is TaskStatus.REGISTERED


def test_untrack_with_the_sessions_token_cancels_the_task(dashboard: Dashboard):
    _register("act-1")
    dashboard.sign_in()
    answer = dashboard.post("/actions/untrack", task_id="act-1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/tasks/act-1"
    assert _status("act-1") is TaskStatus.CANCELLED
    page = dashboard.client.get("/tasks/act-1")
    assert "task act-1 is now cancelled" in page.text
    assert "cancelled" in page.text


def test_a_revoked_token_ends_its_sessions_at_the_next_request(dashboard: Dashboard):
    _register("rev-1")
    dashboard.sign_in()
    csrf = dashboard.csrf()
    with db.session_scope() as session:
        tokens.revoke_token(session, dashboard.token_id)
    refused = dashboard.client.post("/actions/untrack", data={"csrf": csrf, "task_id": "rev-1"})
    assert refused.status_code == 401
    assert "revoked" in error_of(refused.text)
    assert _status("rev-1") is TaskStatus.REGISTERED
    assert dashboard.client.get("/tasks").status_code == 303


def test_a_page_asked_for_after_revocation_says_why_the_session_ended(dashboard: Dashboard):
    dashboard.sign_in()
    assert dashboard.client.get("/tasks").status_code == 200
    with db.session_scope() as session:
        tokens.revoke_token(session, dashboard.token_id)
    answer = dashboard.client.get("/tasks")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2Ftasks"
    assert "was revoked" in dashboard.client.get(answer.headers["location"]).text


def test_sign_out_ends_the_session(dashboard: Dashboard):
    dashboard.sign_in()
    answer = dashboard.post("/signout")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin"
    assert dashboard.client.get("/tasks").status_code == 303
    assert "signed out" in dashboard.client.get("/signin").text


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/tasks?status=finished", "status: 'finished' is not one of"),
        ("/tasks?provider=kling", "provider: 'kling' is not one of"),
        ("/tasks?created_since=yesterday", "registered from: 'yesterday' is not a time"),
        ("/tasks?cursor=page-2", "invalid cursor"),
        ("/tasks?q=%07bell", "must not contain control characters"),
        ("/deliveries?status=lost", "status: 'lost' is not one of"),
        ("/deliveries?endpoint=first", "endpoint: 'first' is not an ID"),
        ("/deliveries?event=task.done", "event: 'task.done' is not one of"),
        ("/deliveries?before=12%2F06", "written before: '12/06' is not a time"),
        ("/tasks/ctl%01char", "contains a control character"),
        ("/tasks/x?provider=kling", "provider: 'kling' is not one of"),
    ],
)
def test_nonsense_in_a_url_gets_a_422_page_that_says_what_is_wrong(
    dashboard: Dashboard, path: str, says: str
):
    dashboard.sign_in()
    answer = dashboard.client.get(path)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert says in error_of(answer.text).replace("&#39;", "'")


def test_an_unknown_task_or_delivery_is_a_404_page(dashboard: Dashboard):
    dashboard.sign_in()
    for path in ("/tasks/nobody", "/deliveries/12345", "/deliveries/msg_unknown"):
        answer = dashboard.client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")


def test_the_api_keeps_its_json_404_and_its_schema_has_no_dashboard_route(dashboard: Dashboard):
    answer = dashboard.client.get("/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    paths = dashboard.client.get("/openapi.json").json()["paths"]
    assert all(
        path.startswith("/v1/") or path in ("/healthz", "/readyz", "/metrics") for path in paths
    )


def test_filters_narrow_the_task_table(dashboard: Dashboard):
    _register("find-me-1", metadata={"customer": "acme"})
    _register("other-2", metadata={"customer": "globex"})
    dashboard.sign_in()
    by_metadata = dashboard.client.get("/tasks?q=acme").text
    assert "find-me-1" in by_metadata and "other-2" not in by_metadata
    by_id = dashboard.client.get("/tasks?q=other").text
    assert "other-2" in by_id and "find-me-1" not in by_id
    none_cancelled = dashboard.client.get("/tasks?status=cancelled").text
    assert "find-me-1" not in none_cancelled and "No task matches" in none_cancelled
    later = dashboard.client.get("/tasks?created_since=2999-01-01T00:00").text
    assert "No task matches" in later


def test_erasing_needs_the_confirmation_box_and_an_ended_task(dashboard: Dashboard):
    _register("erase-1")
    dashboard.sign_in()
    live = dashboard.post("/actions/erase", task_id="erase-1", confirm="erase")
    assert live.status_code == 409
    assert _status("erase-1") is TaskStatus.REGISTERED
    with db.session_scope() as session:
        untrack.untrack(session, "erase-1")
    unconfirmed = dashboard.post("/actions/erase", task_id="erase-1")
    assert unconfirmed.status_code == 422
    assert _status("erase-1") is TaskStatus.CANCELLED
    erased = dashboard.post("/actions/erase", task_id="erase-1", confirm="erase")
    assert erased.status_code == 303
    assert _status("erase-1") is None


def test_an_endpoints_secret_is_shown_once_and_rotating_shows_a_new_one(dashboard: Dashboard):
    dashboard.sign_in()
    added = dashboard.post("/actions/endpoint-add", url=RECEIVER_URL, events="task.failed")
    assert added.status_code == 201, added.text
    secret = added.text.split('id="new-secret" class="secret">')[1].split("<")[0]
    assert secret.startswith("whsec_")
    listing = dashboard.client.get("/endpoints").text
    assert RECEIVER_URL in listing and secret not in listing
    with db.session_scope() as session:
        [endpoint] = endpoints.list_endpoints(session)
    assert endpoint.events == ("task.failed",)
    rotated = dashboard.post("/actions/endpoint-rotate", endpoint=str(endpoint.id))
    assert rotated.status_code == 200
    new_secret = rotated.text.split('id="new-secret" class="secret">')[1].split("<")[0]
    assert new_secret.startswith("whsec_") and new_secret != secret
    assert new_secret not in dashboard.client.get("/endpoints").text
    disabled = dashboard.post("/actions/endpoint-enabled", endpoint=str(endpoint.id), enabled="no")
    assert disabled.status_code == 303
    assert "disabled by the user" in dashboard.client.get("/endpoints").text


def test_a_refused_webhook_url_is_a_422_page_and_adds_nothing(dashboard: Dashboard):
    dashboard.sign_in()
    answer = dashboard.post("/actions/endpoint-add", url="http://10.1.2.3/hook")
    assert answer.status_code == 422
    with db.session_scope() as session:
        assert endpoints.list_endpoints(session) == []


def test_deliveries_are_listed_with_filters_and_sent_again_now(dashboard: Dashboard):
    with db.session_scope() as session:
        hook = endpoints.add_endpoint(
            session,
            RECEIVER_URL,
            events=["task.cancelled"],
            policy=AddressPolicy.from_setting("127.0.0.0/8"),
        ).endpoint
    _register("hook-1")
    with db.session_scope() as session:
        untrack.untrack(session, "hook-1")
    dashboard.sign_in()
    listing = dashboard.client.get(f"/deliveries?endpoint={hook.id}&event=task.cancelled").text
    assert "hook-1" in listing and "task.cancelled" in listing
    assert "hook-1" not in dashboard.client.get("/deliveries?event=task.failed").text
    assert "hook-1" not in dashboard.client.get("/deliveries?since=2999-01-01T00:00").text
    recovered = dashboard.post("/actions/recover", endpoint=str(hook.id), since="2000-01-01T00:00")
    assert recovered.status_code == 303
    assert "0 failed deliveries" in dashboard.client.get(recovered.headers["location"]).text
    now = dashboard.post("/actions/redeliver", delivery="1", mode="now", back="/deliveries/1")
    assert now.status_code == 303
    assert "delivery 1 is due now" in dashboard.client.get("/deliveries/1").text


def test_pages_carry_a_content_security_policy_and_are_not_cached(dashboard: Dashboard):
    dashboard.sign_in()
    answer = dashboard.client.get("/")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"


def test_revoked_tokens_still_refuse_sign_in(dashboard: Dashboard):
    with db.session_scope() as session:
        tokens.revoke_token(session, dashboard.token_id, now=utc_now())
    page = dashboard.client.get("/signin")
    answer = dashboard.client.post(
        "/signin", data={"csrf": csrf_of(page.text), "token": dashboard.token}
    )
    assert answer.status_code == 401


def test_result_urls_play_inline_and_only_web_urls_become_links(dashboard: Dashboard):
    _register("media-1")
    with db.session_scope() as session:
        session.execute(
            update(TrackedTask)
            .where(TrackedTask.task_id == "media-1")
            .values(
                status=TaskStatus.COMPLETED.value,
                result_urls=["https://cdn.example.invalid/a.mp4", "javascript:alert(1)"],
            )
        )
    dashboard.sign_in()
    page = dashboard.client.get("/tasks/media-1").text
    assert (
        '<video controls preload="none" playsinline src="https://cdn.example.invalid/a.mp4">'
        in page
    )
    assert 'href="javascript:' not in page and 'src="javascript:' not in page
    assert "javascript:alert(1)" in page  # shown as text


def test_overdue_and_paused_tasks_are_marked_and_a_pause_can_be_lifted(dashboard: Dashboard):
    _register("late-1")
    now = utc_now()
    with db.session_scope() as session:
        reschedule(session, now - timedelta(minutes=5), "late-1")
    dashboard.sign_in()
    listing = dashboard.client.get("/tasks").text
    assert 'class="flag overdue"' in listing and 'class="flag paused"' not in listing
    assert "1 task overdue" in listing  # and why: no beat has ticked
    with db.session_scope() as session:
        pause = ProviderPause(
            until=now + timedelta(minutes=10),
            reason="no credits (9000)",
            cause=PauseCause.NO_CREDITS,
        )
        pause_provider(session, "tensorslab", pause, at=now)
    listing = dashboard.client.get("/tasks").text
    assert 'class="flag paused"' in listing
    overview = dashboard.client.get("/").text
    assert "Polling of tensorslab is paused" in overview and "no credits (9000)" in overview
    resumed = dashboard.post("/actions/resume", provider="tensorslab")
    assert resumed.status_code == 303
    assert "polling of tensorslab resumes" in dashboard.client.get("/").text
    assert 'class="flag paused"' not in dashboard.client.get("/tasks").text
    again = dashboard.post("/actions/resume", provider="tensorslab")
    assert again.status_code == 409  # not paused any more: nothing to lift


def test_a_session_ends_twelve_hours_after_sign_in_whatever_was_clicked(dashboard: Dashboard):
    dashboard.sign_in()
    serializer = URLSafeTimedSerializer(
        derive_key("dashboard-session", settings=get_settings()), salt=COOKIE_SALT
    )
    [cookie] = list(dashboard.client.cookies.jar)
    data = serializer.loads(cookie.value)
    data["s"] -= SESSION_MAX_AGE_S + 60  # as if signed in 12 h 1 min ago, re-signed since
    dashboard.client.cookies.set(COOKIE_NAME, serializer.dumps(data), domain=cookie.domain)
    answer = dashboard.client.get("/tasks")
    assert answer.status_code == 303
    assert "your session expired" in dashboard.client.get(answer.headers["location"]).text


def test_a_form_with_hundreds_of_fields_is_a_422_page(dashboard: Dashboard):
    _register("many-1")
    dashboard.sign_in()
    fields = {"csrf": dashboard.csrf(), "task_id": "many-1"} | {f"f{i}": "x" for i in range(300)}
    answer = dashboard.client.post("/actions/untrack", data=fields)
    assert answer.status_code == 422
    assert "more than 200 fields" in error_of(answer.text)
    assert _status("many-1") is TaskStatus.REGISTERED


@pytest.mark.parametrize("task_id", ["with/slash", "what?#hash", "ünïcode-✓", "50%"])
def test_a_task_id_with_url_characters_links_to_its_own_page(dashboard: Dashboard, task_id: str):
    _register(task_id)
    dashboard.sign_in()
    listing = dashboard.client.get("/tasks").text
    link = f'href="/tasks/{quote(task_id, safe="")}"'
    assert link in listing
    page = dashboard.client.get(f"/tasks/{quote(task_id, safe='')}")
    assert page.status_code == 200
    assert "Untrack" in page.text


def test_the_overview_charts_finished_tasks_and_says_so_when_there_are_none(
    dashboard: Dashboard,
):
    dashboard.sign_in()
    empty = dashboard.client.get("/").text
    assert "No task has completed or failed yet." in empty
    _register("chart-1")
    with db.session_scope() as session:
        session.execute(
            update(TrackedTask)
            .where(TrackedTask.task_id == "chart-1")
            .values(status=TaskStatus.COMPLETED.value, completed_at=utc_now())
        )
    charted = dashboard.client.get("/").text
    assert 'aria-label="Tasks by time from registration to result"' in charted
    assert 'aria-label="Registration to result over 1 tasks"' in charted
    assert 'aria-label="Tasks by status"' in charted


def test_a_process_replaced_by_a_restart_is_shown_stopped_and_one_with_no_successor_gone(
    dashboard: Dashboard,
):
    now = utc_now()
    with db.session_scope() as session:
        for pid, host, started_s, seen_s in (
            (101, "vm", 600, 300),  # stopped 5 minutes ago...
            (202, "vm", 200, 1),  # ...and started again since: replaced
            (303, "other", 600, 300),  # stopped, nothing took its place on its host
        ):
            heartbeats.record(
                session,
                kind="polls",
                host=host,
                pid=pid,
                started_at=now - timedelta(seconds=started_s),
                now=now - timedelta(seconds=seen_s),
            )
    dashboard.sign_in()
    rows = dashboard.client.get("/").text.split('<table class="processes">')[1]
    by_pid = {
        pid: row
        for row in rows.split("<tr")[1:]
        for pid in (101, 202, 303)
        if f'"muted">pid {pid}</span>' in row
    }
    assert 'class="dot alive"' in by_pid[202]
    assert 'class="dot stopped"' in by_pid[101] and "replaced by pid 202" in by_pid[101]
    assert 'class="dot gone"' in by_pid[303] and "replaced" not in by_pid[303]
