"""One URL, one endpoint, one secret, as a user of the `tracker` command sees it."""

from __future__ import annotations

import json
import re

from tests.conftest import Configure
from tests.support import run_cli

URL = "http://127.0.0.1:9/hooks"  # allowed by the test's settings; never called here


def _cli(*args: str) -> tuple[int, str]:
    """Exit code and stdout with rich's line wrapping undone."""
    code, out, _ = run_cli(*args)
    return code, " ".join(out.split())


def test_two_registrations_with_one_url_share_one_endpoint_and_one_secret(
    cli_db: str, configure: Configure
) -> None:
    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    code, out = _cli("register", "s1", "--webhook", URL)
    assert code == 0
    found = re.search(
        r"new endpoint (\d+), signing secret \(shown once, keep it\): (whsec_\S+)", out
    )
    assert found, out
    endpoint_id, secret = found.groups()

    code, out = _cli("register", "s2", "--webhook", URL)
    assert code == 0 and "whsec_" not in out
    assert f"signed by endpoint {endpoint_id} (secret shown when it was created)" in out
    code, out, _ = run_cli("register", "s3", "--webhook", URL, "--json")
    assert json.loads(out)["webhook_id"] == int(endpoint_id)
    assert json.loads(out)["webhook_secret"] is None

    code, out, _ = run_cli("webhooks", "list", "--all", "--json")
    [endpoint] = json.loads(out)
    assert (endpoint["id"], endpoint["all_tasks"], endpoint["task_count"]) == (
        int(endpoint_id),
        False,
        3,
    )
    assert secret not in out
    code, out = _cli("webhooks", "list", "--all")
    assert "(for 3 tasks)" in out


def test_adding_a_url_twice_makes_one_endpoint(cli_db: str, configure: Configure) -> None:
    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    code, out, _ = run_cli("webhooks", "add", URL, "--json")
    first = json.loads(out)
    assert code == 0 and first["created"] and first["secret"].startswith("whsec_")

    code, out = _cli("webhooks", "add", URL, "-e", "task.cancelled")
    assert code == 0 and "whsec_" not in out
    assert f"webhook endpoint {first['endpoint']['id']} already sends to {URL}" in out
    code, out, _ = run_cli("webhooks", "list", "--json")
    [endpoint] = json.loads(out)
    assert endpoint["events"] == ["task.completed", "task.failed", "task.cancelled"]

    # A task registered with it needs no subscription: the endpoint hears every task.
    code, out = _cli("register", "s1", "--webhook", URL)
    assert f"signed by endpoint {first['endpoint']['id']}" in out
    assert "registered s1" in out


def test_adding_the_url_of_a_per_task_endpoint_makes_it_an_endpoint_for_every_task(
    cli_db: str, configure: Configure
) -> None:
    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    run_cli("register", "s1", "--webhook", URL)
    assert json.loads(run_cli("webhooks", "list", "--json")[1]) == []  # for s1 only

    code, out = _cli("webhooks", "add", URL)
    assert code == 0 and "already sends to" in out and "it hears every task" in out
    [endpoint] = json.loads(run_cli("webhooks", "list", "--json")[1])
    assert endpoint["all_tasks"] is True
    # the events of both: the per-task ones (how a task ends) and the requested defaults
    assert set(endpoint["events"]) >= {"task.completed", "task.failed", "task.cancelled"}
