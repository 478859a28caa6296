"""`--provider` on the commands about tasks: register, status, history, list, untrack, watch,
stats. The default is `tensorslab` (video tasks); `tensorslab-image` names image tasks."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.support import run_cli
from tracker import db
from tracker.db.clock import utc_now
from tracker.tasks import register, untrack
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider


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
    assert "(a tensorslab-image task has this ID: name its provider)" in err
    code, _, err = run_cli("status", "nowhere")
    assert code == 3 and "has this ID" not in err


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


def test_forget_and_resume_name_the_provider(cli_db: str) -> None:
    run_cli("register", "both-1", "--provider", "tensorslab-image")
    run_cli("register", "both-1")
    code, _, err = run_cli("forget", "both-1", "--provider", "tensorslab-image")
    assert code == 4 and "is still tracked (registered)" in err
    run_cli("untrack", "both-1", "--provider", "tensorslab-image")
    code, out, err = run_cli("forget", "both-1", "--provider", "tensorslab-image")
    assert code == 0, err
    assert out.startswith("forgot both-1 (tensorslab-image, cancelled): erased it with ")
    code, _, err = run_cli("status", "both-1", "--provider", "tensorslab-image")
    assert code == 3 and "no tracked tensorslab-image task with ID 'both-1'" in err
    code, out, _ = run_cli("status", "both-1", "--json")
    assert code == 0 and json.loads(out)["status"] == "registered"  # the video task stays
    code, _, err = run_cli("forget", "both-1", "--provider", "tensorslab-audio")
    assert code == 2 and "unknown provider 'tensorslab-audio'" in err

    now = utc_now()
    with db.session_scope(cli_db) as session:
        pause_provider(
            session,
            "tensorslab-image",
            ProviderPause(now + timedelta(hours=1), "code 9000: no credits", PauseCause.NO_CREDITS),
            at=now,
        )
    code, _, err = run_cli("list")
    assert "polling of tensorslab-image is paused (no_credits)" in err
    assert "`tracker resume tensorslab-image` lifts it now" in err
    code, _, err = run_cli("resume")
    assert code == 4 and "polling of tensorslab is not paused" in err
    code, out, err = run_cli("resume", "tensorslab-image")
    assert code == 0, err
    assert out.startswith("resumed polling of tensorslab-image (was paused: no_credits)")


def test_list_pages_of_one_provider_count_it_alone_and_keep_it_in_the_hint(cli_db: str) -> None:
    images = [f"img-{n:02d}" for n in range(7)]
    with db.session_scope(cli_db) as session:
        register.register(session, images, first_poll_delay_s=60, provider="tensorslab-image")
        register.register(session, ["vid-0", "vid-1"], first_poll_delay_s=60)

    code, out, err = run_cli("list", "--provider", "tensorslab-image", "--limit", "3")
    assert code == 0, err
    assert "3 of 7 tracked tensorslab-image tasks (newest first)" in err
    seen = [line.split("\t")[0] for line in out.splitlines()[1:]]
    while hints := [line for line in err.splitlines() if line.startswith("next page:")]:
        command = hints[0].removeprefix("next page: ").split()
        assert command[:6] == ["tracker", "list", "--provider", "tensorslab-image", "--limit", "3"]
        code, out, err = run_cli(*command[1:])
        assert code == 0, err
        seen += [line.split("\t")[0] for line in out.splitlines()[1:]]
    assert seen == list(reversed(images))

    code, out, err = run_cli("list", "--provider", "tensorslab", "--json")
    assert [task["task_id"] for task in json.loads(out)] == ["vid-1", "vid-0"]
    code, _, err = run_cli("list", "--status", "registered", "--provider", "tensorslab")
    assert "2 of 2 registered tensorslab tasks (newest first)" in err


def test_every_page_of_a_listing_has_the_same_columns(cli_db: str) -> None:
    """The newest page holds only video tasks, an older one an image task: piped, the one
    header and every line have the `provider` column all the same."""
    with db.session_scope(cli_db) as session:
        register.register(
            session,
            ["old-img"],
            first_poll_delay_s=60,
            provider="tensorslab-image",
            now=utc_now() - timedelta(hours=1),
        )
        register.register(session, [f"vid-{n:03d}" for n in range(120)], first_poll_delay_s=60)
    code, out, err = run_cli("list", "--all")
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split("\t")[:3] == ["task id", "provider", "status"]
    assert len(lines) == 121
    assert {len(line.split("\t")) for line in lines} == {len(header.split("\t"))}
    assert lines[0].split("\t")[1] == "tensorslab" and lines[-1].split("\t")[:2] == [
        "old-img",
        "tensorslab-image",
    ]
    code, out, _ = run_cli("list", "--limit", "5")  # a page of videos only, in that listing
    assert out.splitlines()[0].split("\t")[:2] == ["task id", "provider"]
    code, out, _ = run_cli("list", "--provider", "tensorslab", "--limit", "5")
    assert out.splitlines()[0].split("\t")[:2] == ["task id", "status"]


def test_watch_of_many_image_tasks_counts_that_provider_s_tasks(cli_db: str) -> None:
    images = [f"img-{n:02d}" for n in range(25)]
    with db.session_scope(cli_db) as session:
        register.register(session, images, first_poll_delay_s=60, provider="tensorslab-image")
        register.register(session, images[:5], first_poll_delay_s=60)  # same IDs, video tasks
        for task_id in images[:10]:
            untrack.untrack(session, task_id, provider="tensorslab-image")
    code, out, err = run_cli(
        "watch", "-", "--provider", "tensorslab-image", "--timeout", "0", stdin="\n".join(images)
    )
    assert code == 1
    assert out.splitlines() == ["status\ttasks", "registered\t15", "cancelled\t10"]
    assert err.startswith("10 of 25 tasks finished\n")
    code, _, err = run_cli("watch", *images[:6], "--timeout", "0")  # video: img-05 is not one
    assert code == 3 and "no tracked tensorslab task with ID 'img-05'" in err
