"""`redeliver --now`, `webhooks test`, `--header`, `--endpoint` and unresolvable webhook hosts,
as a user types them: output, exit codes, and what ends up stored."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import standardwebhooks
from sqlalchemy import update

from tests.conftest import Configure
from tests.support import run_cli
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import WebhookDelivery
from tracker.testing.receiver import Answer, WebhookReceiver

UNRESOLVABLE = "http://hooks.tracker-test.invalid/hook"  # RFC 6761: never resolves


@pytest.fixture
def receiver(cli_db: str, configure: Configure) -> Iterator[WebhookReceiver]:
    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    with WebhookReceiver() as running:
        yield running


def _add(receiver: WebhookReceiver, *args: str) -> dict[str, object]:
    code, out, err = run_cli("webhooks", "add", receiver.url + "/hook", *args, "--json")
    assert code == 0, err
    created = json.loads(out)
    receiver.set_secrets([str(created["secret"])])
    return dict(created)


def _endpoints() -> list[dict[str, object]]:
    code, out, _ = run_cli("webhooks", "list", "--all", "--json")
    assert code == 0
    return list(json.loads(out))


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("webhook-signature: v1,abc", "set by tracker itself"),
        ("Webhook-Id: msg_1", "set by tracker itself"),
        ("webhook-timestamp: 1", "set by tracker itself"),
        ("host: evil.example", "set by tracker itself"),
        ("Content-Length: 0", "set by tracker itself"),
        ("CONTENT-TYPE: text/plain", "set by tracker itself"),
        ("X Env: prod", "not an HTTP token"),
        ("X-Env: prod\r\nHost: evil.example", "line break"),
        ("X-Env: a\x01b", "control character"),
        ("X-Env prod", "'Name: value'"),
    ],
)
def test_a_bad_header_is_refused_in_one_line_and_nothing_is_stored(
    receiver: WebhookReceiver, header: str, says: str
) -> None:
    code, out, err = run_cli("webhooks", "add", receiver.url + "/hook", "--header", header)
    assert code == 2 and says in err, err
    assert err.count("\n") == 1 and out == ""
    assert _endpoints() == []


def test_header_values_are_stored_but_never_shown(receiver: WebhookReceiver) -> None:
    created = _add(receiver, "--header", "X-Env: prod", "-H", "Auth: Bearer tok-123")
    assert "tok-123" not in json.dumps(created)
    code, out, _ = run_cli("webhooks", "list")
    assert code == 0 and "X-Env: ***" in out and "Auth: ***" in out, out
    assert "prod" not in out and "tok-123" not in out
    [listed] = _endpoints()
    assert listed["header_names"] == ["Auth", "X-Env"] and "tok-123" not in str(listed)


def test_webhooks_headers_replaces_the_whole_set(receiver: WebhookReceiver) -> None:
    _add(receiver, "--header", "X-Env: prod")
    code, out, err = run_cli("webhooks", "headers", "1", "-H", "X-Team: video", "-H", "X-A: 1")
    assert code == 0 and "webhook endpoint 1 headers: X-A, X-Team" in out, err
    code, _, err = run_cli("webhooks", "headers", "1", "-H", "Host: evil.example")
    assert code == 2 and "set by tracker itself" in err
    assert _endpoints()[0]["header_names"] == ["X-A", "X-Team"]
    code, out, _ = run_cli("webhooks", "headers", "1")
    assert code == 0 and "headers: none" in out and _endpoints()[0]["header_names"] == []


def test_adding_a_url_that_has_an_endpoint_leaves_its_headers_and_says_so(
    receiver: WebhookReceiver,
) -> None:
    _add(receiver, "--header", "X-Env: prod")
    code, out, err = run_cli("webhooks", "add", receiver.url + "/hook", "-H", "X-Env: staging")
    assert code == 0 and "webhook endpoint 1 already sends to" in out, err
    assert "headers given were not applied" in err and "webhooks headers 1" in err
    assert "staging" not in err + out  # a value is never quoted back
    [listed] = _endpoints()
    assert listed["header_names"] == ["X-Env"]
    code, out, err = run_cli("webhooks", "add", receiver.url + "/hook", "-H", "X-Env: prod")
    assert code == 0 and "not applied" not in err  # the same headers: nothing to say
    code, out, _ = run_cli("webhooks", "add", receiver.url + "/hook", "-H", "X-A: 1", "--json")
    assert code == 0 and json.loads(out)["headers_unchanged"] is True


def test_webhooks_test_sends_a_signed_event_with_the_headers_and_shows_the_attempt(
    receiver: WebhookReceiver,
) -> None:
    created = _add(receiver, "--header", "X-Env: prod")
    endpoint_id = str(dict(created["endpoint"])["id"])  # type: ignore[call-overload]

    code, out, err = run_cli("webhooks", "test", endpoint_id)

    assert code == 0, err
    assert "webhook.test to " + receiver.url + "/hook: delivery 1 (msg_" in out
    assert "ok: HTTP 200 in " in out and " ms" in out
    [message] = receiver.wait_for(1)
    payload = standardwebhooks.Webhook(str(created["secret"])).verify(message.body, message.headers)
    assert payload["type"] == "webhook.test" and message.headers["x-env"] == "prod"
    code, out, _ = run_cli("deliveries", "--json")
    [listed] = json.loads(out)
    assert listed["task_id"] is None and listed["status"] == "delivered"
    assert [a["status_code"] for a in listed["attempts"]] == [200]  # as the API shows them
    code, out, _ = run_cli("deliveries")
    assert code == 0 and "webhook.test" in out


def test_a_failing_test_exits_1_with_the_answer_and_a_disabled_endpoint_is_a_conflict(
    receiver: WebhookReceiver,
) -> None:
    _add(receiver)
    receiver.script(Answer(503, body="maintenance"))
    code, out, _ = run_cli("webhooks", "test", "1")
    assert code == 1 and "failed: HTTP 503 in " in out and "maintenance" in out

    assert run_cli("webhooks", "disable", "1")[0] == 0
    code, _, err = run_cli("webhooks", "test", "1")
    assert code == 4 and "webhook endpoint 1 is disabled" in err
    code, _, err = run_cli("webhooks", "test", "7")
    assert code == 3 and "no webhook endpoint with ID 7" in err


def test_redeliver_now_makes_a_pending_delivery_due_and_refuses_a_delivered_one(
    receiver: WebhookReceiver, cli_db: str
) -> None:
    _add(receiver, "-e", "task.cancelled")
    run_cli("register", "vid-1")
    run_cli("untrack", "vid-1")
    later = utc_now().replace(year=utc_now().year + 1)
    with db.session_scope(cli_db) as session:  # as if its next retry were far off
        session.execute(update(WebhookDelivery).values(next_attempt_at=later, attempt_count=3))

    code, out, err = run_cli("redeliver", "1", "--now")
    assert code == 0, err
    assert out.startswith("delivery 1 (msg_") and "is due now: the next tick sends it" in out
    code, out, _ = run_cli("deliveries", "show", "1", "--json")
    shown = json.loads(out)
    assert shown["status"] == "pending" and shown["attempt_count"] == 3
    assert shown["next_attempt_at"] < later.isoformat()

    run_cli("webhooks", "test", "1")  # delivery 2: delivered
    code, out, _ = run_cli("deliveries", "show", "2", "--json")
    before = json.loads(out)
    code, _, err = run_cli("redeliver", before["message_id"], "--now")
    assert code == 4 and "delivery 2 was delivered already" in err
    assert json.loads(run_cli("deliveries", "show", "2", "--json")[1]) == before

    run_cli("webhooks", "disable", "1")
    run_cli("register", "vid-2")
    run_cli("untrack", "vid-2")
    code, _, err = run_cli("redeliver", "3", "--now")
    assert code == 4 and "is held: endpoint 1 is disabled, and it stays held" in err


def test_redeliver_failed_takes_endpoint_and_refuses_odd_combinations(
    receiver: WebhookReceiver, cli_db: str
) -> None:
    _add(receiver, "-e", "task.cancelled")
    code, _, err = run_cli("webhooks", "add", receiver.url + "/other", "-e", "task.cancelled")
    assert code == 0, err  # one endpoint per URL: the second one has its own
    run_cli("register", "vid-1")
    run_cli("untrack", "vid-1")
    with db.session_scope(cli_db) as session:
        session.execute(update(WebhookDelivery).values(status="failed", next_attempt_at=None))

    code, out, err = run_cli("redeliver", "--failed", "--since", "1d", "--endpoint", "2")
    assert code == 0, err
    assert "1 failed deliveries of endpoint 2 queued to be sent again" in out
    code, _, err = run_cli("redeliver", "--failed", "--since", "1d", "--endpoint", "9")
    assert code == 3 and "no webhook endpoint with ID 9" in err
    code, _, err = run_cli("redeliver", "1", "--endpoint", "2")
    assert code == 2 and "--endpoint goes with --failed" in err
    code, _, err = run_cli("redeliver", "--failed", "--since", "1d", "--now")
    assert code == 2 and "--now takes one delivery ID" in err
    code, _, err = run_cli("redeliver", "msg_unknown", "--now")
    assert code == 3 and "no webhook delivery 'msg_unknown'" in err


def test_a_url_that_does_not_resolve_now_is_added_with_a_warning(cli_db: str) -> None:
    code, out, err = run_cli("webhooks", "add", UNRESOLVABLE)
    assert code == 0 and "added webhook endpoint 1" in out
    assert err.startswith("warning: the host hooks.tracker-test.invalid does not resolve right")
    assert err.count("\n") == 1

    code, out, err = run_cli("register", "vid-1", "--webhook", UNRESOLVABLE + "/task", "--json")
    assert code == 0 and "does not resolve right now" in err
    registered = json.loads(out)
    assert registered["webhook_secret"].startswith("whsec_")
    assert "does not resolve right now" in registered["webhook_warning"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://10.0.0.1/hook", "10.0.0.1, a private address; refused"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address; refused"),
        ("https://user:pass@hooks.tracker-test.invalid/x", "user name or password"),
    ],
)
def test_refused_urls_stay_refused_and_store_nothing(cli_db: str, url: str, says: str) -> None:
    code, _, err = run_cli("webhooks", "add", url)
    assert code == 2 and says in err
    code, _, err = run_cli("register", "vid-1", "--webhook", url)
    assert code == 2 and says in err
    assert _endpoints() == [] and json.loads(run_cli("list", "--json")[1]) == []
