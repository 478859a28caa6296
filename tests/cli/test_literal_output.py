"""What a user typed is printed literally: rich markup in task IDs, URLs and names is shown,
never interpreted (in messages and in tables)."""

from __future__ import annotations

import json

from tests.conftest import Configure
from tests.support import run_cli

TASK_ID = "v[bold]1"


def test_a_bracketed_ipv6_webhook_url_is_shown_whole_in_the_error(cli_db: str) -> None:
    code, _, err = run_cli("webhooks", "add", "http://[fd00::1]/")

    assert code == 2
    assert "http://[fd00::1]/" in err and "http:///" not in err


def test_a_task_id_with_markup_is_printed_literally_everywhere(cli_db: str) -> None:
    code, out, _ = run_cli("register", TASK_ID)
    assert code == 0 and f"registered {TASK_ID}" in out
    code, out, _ = run_cli("register", TASK_ID)
    assert code == 0 and f"already tracked {TASK_ID}" in out

    for args in (("status", TASK_ID), ("list",), ("history", TASK_ID)):
        code, out, err = run_cli(*args)  # not a terminal: a table's title is on stderr
        assert code == 0 and TASK_ID in out + err, (args, out, err)
    code, out, err = run_cli("watch", TASK_ID, "--timeout", "0", "--interval", "0.1")
    assert code == 1 and TASK_ID in out and f"{TASK_ID} (registered)" in err, (out, err)

    code, out, _ = run_cli("untrack", TASK_ID)
    assert code == 0 and f"untracked {TASK_ID}" in out
    code, out, _ = run_cli("untrack", TASK_ID)
    assert code == 0 and f"{TASK_ID} is already cancelled" in out
    code, _, err = run_cli("status", "[red]nope")
    assert code == 3 and "[red]nope" in err


def test_webhook_urls_with_markup_are_printed_literally(cli_db: str, configure: Configure) -> None:
    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    url = "http://127.0.0.1:9/[bold]h"

    code, out, _ = run_cli("webhooks", "add", url)
    assert code == 0 and url in out, out
    code, out, _ = run_cli("webhooks", "list", "--json")
    [endpoint] = json.loads(out)
    code, out, _ = run_cli("webhooks", "list")
    assert code == 0 and "1:9/[bold]" in out, out
    for command in ("disable", "enable", "remove"):
        code, out, _ = run_cli("webhooks", command, str(endpoint["id"]))
        assert code == 0 and url in out, (command, out)

    code, out, err = run_cli("register", TASK_ID, "--webhook", url)
    assert code == 0 and url in out, (out, err)
    code, out, err = run_cli("untrack", TASK_ID)
    assert code == 0, (out, err)
    code, out, _ = run_cli("deliveries", "--task", TASK_ID, "--json")
    [delivery] = json.loads(out)
    code, out, _ = run_cli("deliveries", "show", str(delivery["id"]))
    flat = " ".join(out.split())
    assert code == 0 and f"for task {TASK_ID} to {url}:" in flat, out
    assert f'"task_id":"{TASK_ID}"' in out, out
    code, out, _ = run_cli("deliveries", "--task", TASK_ID)
    assert code == 0 and TASK_ID in out, out


def test_a_token_name_with_markup_is_printed_literally(cli_db: str) -> None:
    code, out, _ = run_cli("tokens", "create", "[bold]ops")
    assert code == 0 and "([bold]ops)" in out, out
    code, out, _ = run_cli("tokens", "list")
    assert code == 0 and "[bold]ops" in out, out
    code, out, _ = run_cli("tokens", "revoke", "1")
    assert code == 0 and "([bold]ops) is revoked" in out, out
