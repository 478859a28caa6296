"""`--provider` on the commands about tasks: register, status, history, list, untrack, watch,
stats. The default is `tensorslab` (video tasks); `tensorslab-image` names image tasks."""

from __future__ import annotations

import json

from tests.support import run_cli


def test_one_id_for_two_providers_from_the_command_line(cli_db: str) -> None:
    code, out, _ = run_cli("register", "same-1", "--provider", "tensorslab-image")
    assert code == 0 and "registered same-1" in out
    code, out, _ = run_cli("register", "same-1")
    assert code == 0 and "registered same-1" in out

    code, out, _ = run_cli("status", "same-1", "--provider", "tensorslab-image", "--json")
    assert code == 0 and json.loads(out)["provider"] == "tensorslab-image"
    code, out, _ = run_cli("status", "same-1", "--json")
    assert code == 0 and json.loads(out)["provider"] == "tensorslab"

    code, out, _ = run_cli("untrack", "same-1", "--provider", "tensorslab-image")
    assert code == 0 and "now cancelled" in out
    code, out, _ = run_cli("history", "same-1", "--provider", "tensorslab-image", "--json")
    assert code == 0
    assert [(t["from_status"], t["to_status"]) for t in json.loads(out)] == [
        ("registered", "cancelled")
    ]
    code, out, _ = run_cli("status", "same-1", "--json")
    assert json.loads(out)["status"] == "registered"  # the video task is untouched

    code, out, _ = run_cli("list", "--provider", "tensorslab-image", "--json")
    assert code == 0
    assert [(t["task_id"], t["provider"]) for t in json.loads(out)] == [
        ("same-1", "tensorslab-image")
    ]
    code, out, _ = run_cli("list")
    assert code == 0 and "tensorslab-image" in out  # the table names each task's provider

    code, out, _ = run_cli(
        "watch", "same-1", "--provider", "tensorslab-image", "--json", "--timeout", "0"
    )
    assert code == 0 and json.loads(out)["tasks"][0]["task"]["provider"] == "tensorslab-image"

    code, out, _ = run_cli("stats", "--provider", "tensorslab-image", "--json")
    assert code == 0
    figures = json.loads(out)
    assert figures["provider"] == "tensorslab-image"
    assert figures["total"] == 1 and figures["counts"]["cancelled"] == 1


def test_an_unknown_provider_is_one_line_and_exit_2_storing_nothing(cli_db: str) -> None:
    for args in (
        ("register", "x-1", "--provider", "tensorslab-audio"),
        ("status", "x-1", "--provider", "tensorslab-audio"),
        ("history", "x-1", "--provider", "tensorslab-audio"),
        ("untrack", "x-1", "--provider", "tensorslab-audio"),
        ("list", "--provider", "tensorslab-audio"),
        ("stats", "--provider", "tensorslab-audio"),
    ):
        code, _, err = run_cli(*args)
        assert code == 2, args
        assert err.strip().count("\n") == 0, err
        assert "unknown provider 'tensorslab-audio'; known: tensorslab, tensorslab-image" in err
    code, out, _ = run_cli("list", "--json")
    assert json.loads(out) == []


def test_a_task_of_the_other_provider_is_not_found(cli_db: str) -> None:
    run_cli("register", "img-only", "--provider", "tensorslab-image")
    code, _, err = run_cli("status", "img-only")
    assert code == 3
    assert "no tracked tensorslab task with ID 'img-only'" in err


def test_stats_shows_each_provider_beside_the_whole(cli_db: str) -> None:
    run_cli("register", "v-1", "v-2")
    run_cli("register", "i-1", "--provider", "tensorslab-image")
    code, out, _ = run_cli("stats")
    assert code == 0
    assert "by provider" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│ tensorslab" in line}
    assert set(rows) == {"tensorslab", "tensorslab-image"}
    assert rows["tensorslab"].split("│")[2].strip() == "2"
    assert rows["tensorslab-image"].split("│")[2].strip() == "1"
    code, out, _ = run_cli("stats", "--json")
    by_provider = json.loads(out)["by_provider"]
    assert {name: each["total"] for name, each in by_provider.items()} == {
        "tensorslab": 2,
        "tensorslab-image": 1,
    }
    code, out, _ = run_cli("stats", "--provider", "tensorslab")
    assert code == 0 and "by provider" not in out and "provider tensorslab" in out
