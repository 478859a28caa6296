"""The TensorsLab simulator through real HTTP on loopback: lifecycles, auth, faults, admin API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tracker.testing.simulator import Faults, ScriptError, Simulator, Step, TaskScript

API_KEY = "sim-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(api_key=API_KEY, seed=1) as sim:
        yield sim


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    return server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def ask(
    http: requests.Session,
    sim: Simulator,
    task_id: str,
    *,
    more: bool | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    body: dict[str, Any] = {"taskid": task_id}
    if more is not None:
        body["moreTaskInfo"] = more
    url = f"{sim.base_url}/v1/video/infobytaskid"
    return http.post(url, json=body, headers=AUTH if headers is None else headers, timeout=5)


def status_of(http: requests.Session, sim: Simulator, task_id: str) -> int:
    reply = ask(http, sim, task_id)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["data"]["task_status"])


# -- lifecycles -------------------------------------------------------------------------------


def test_a_task_goes_pending_processing_uploading_completed_one_poll_at_a_time(
    sim: Simulator, http: requests.Session
) -> None:
    steps = (Step(1, polls=1), Step(2, polls=2), Step(5, polls=1), Step(3))
    sim.add_task(TaskScript("t1", steps, urls=("https://x.invalid/y.mp4",)))
    before = time.time()

    seen = [status_of(http, sim, "t1") for _ in range(6)]

    assert seen == [1, 2, 2, 5, 3, 3]
    reply = ask(http, sim, "t1").json()
    assert reply == {
        "code": 1000,
        "msg": "success",
        "data": {
            "taskid": "t1",
            "task_status": 3,
            "url": ["https://x.invalid/y.mp4"],
            "message": "",
        },
    }
    state = sim.task_state("t1")
    assert state["status"] == 3 and state["polls"] == 7
    assert before <= state["finished_at"] <= time.time()


def test_a_timed_lifecycle_finishes_at_exactly_the_scripted_moment(
    sim: Simulator, http: requests.Session
) -> None:
    created = sim.add_task(
        TaskScript("timed", (Step(1, after_s=0.15), Step(2, after_s=0.15), Step(3)))
    )
    seen: list[int] = []
    deadline = time.monotonic() + 5
    while (not seen or seen[-1] != 3) and time.monotonic() < deadline:
        seen.append(status_of(http, sim, "timed"))
        time.sleep(0.02)

    assert seen[0] == 1 and seen[-1] == 3 and seen == sorted(seen)
    state = sim.task_state("timed")
    assert state["finished_at"] == pytest.approx(created["created_at"] + 0.3, abs=1e-6)


def test_a_failed_task_reports_its_message_and_no_urls(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript.fails("f1", message="content policy", after_polls=1))

    assert status_of(http, sim, "f1") == 2
    data = ask(http, sim, "f1").json()["data"]

    assert data == {"taskid": "f1", "task_status": 4, "url": [], "message": "content policy"}
    assert sim.task_state("f1")["finished_at"] is not None


def test_a_task_answers_404_until_it_appears_after_some_polls(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript("late", (Step(3),), missing_for_polls=2))

    first, second = ask(http, sim, "late"), ask(http, sim, "late")

    assert first.status_code == second.status_code == 404
    assert first.json() == {"code": 9999, "msg": "task not found"}
    assert sim.task_state("late")["missing"] is True
    assert status_of(http, sim, "late") == 3
    assert ask(http, sim, "late").json()["data"]["url"] == ["https://cdn.example.invalid/late.mp4"]


def test_a_task_answers_404_until_it_appears_after_some_time(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript("later", (Step(2),), missing_for_s=0.2))

    assert ask(http, sim, "later").status_code == 404
    time.sleep(0.25)
    assert status_of(http, sim, "later") == 2


def test_an_unknown_task_is_404(sim: Simulator, http: requests.Session) -> None:
    reply = ask(http, sim, "never-created")

    assert reply.status_code == 404
    assert reply.json() == {"code": 9999, "msg": "task not found"}
    assert reply.headers["Content-Type"] == "application/json"


def test_more_task_info_adds_the_details_with_defaults(
    sim: Simulator, http: requests.Session
) -> None:
    details: dict[str, str | int] = {"prompt": "a cat", "seed": 42, "fps": 30}
    sim.add_task(TaskScript("d1", (Step(2),), details=details))

    plain = ask(http, sim, "d1", more=False).json()["data"]
    more = ask(http, sim, "d1", more=True).json()["data"]

    assert set(plain) == {"taskid", "task_status", "url", "message"}
    assert more["prompt"] == "a cat" and more["seed"] == 42 and more["fps"] == 30
    assert more["resolution"] == "720p" and more["duration"] == 5 and more["ratio"] == "16:9"
    assert more["imageurl"] == "" and more["source"] == "tensorslab-sim"


# -- auth and bad requests ----------------------------------------------------------------------


def test_both_authorization_forms_are_accepted_and_a_wrong_key_is_401(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript("a1", (Step(1),)))

    assert ask(http, sim, "a1", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert ask(http, sim, "a1", headers={"Authorization": API_KEY}).status_code == 200
    wrong = ask(http, sim, "a1", headers={"Authorization": "Bearer nope"})
    missing = ask(http, sim, "a1", headers={})

    assert wrong.status_code == missing.status_code == 401
    assert wrong.json() == {"code": 9999, "msg": "invalid api key"}


def test_without_a_configured_key_any_non_empty_authorization_is_accepted(
    http: requests.Session,
) -> None:
    with Simulator(api_key=None) as sim:
        sim.add_task(TaskScript("a2", (Step(1),)))
        assert ask(http, sim, "a2", headers={"Authorization": "whatever"}).status_code == 200
        assert ask(http, sim, "a2", headers={}).status_code == 401


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"x": 1}', b'{"taskid": 5}'])
def test_a_body_without_a_taskid_string_is_400(
    sim: Simulator, http: requests.Session, body: bytes
) -> None:
    url = f"{sim.base_url}/v1/video/infobytaskid"
    reply = http.post(url, data=body, headers=AUTH, timeout=5)

    assert reply.status_code == 400
    assert reply.json()["code"] == 9999 and reply.json()["msg"]


# -- faults ---------------------------------------------------------------------------------------


def test_latency_delays_the_answer(sim: Simulator, http: requests.Session) -> None:
    sim.add_task(TaskScript("slow", (Step(1),)))
    sim.set_faults(Faults(latency_ms=80))

    started = time.monotonic()
    assert status_of(http, sim, "slow") == 1
    assert time.monotonic() - started >= 0.08


def test_error_next_gives_5xx_with_a_non_json_body_then_stops(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript("e1", (Step(2),)))
    sim.set_faults(Faults(error_next=3))

    errors = [ask(http, sim, "e1") for _ in range(3)]

    assert all(r.status_code in (500, 502, 503) for r in errors)
    with pytest.raises(requests.JSONDecodeError):
        errors[0].json()
    assert status_of(http, sim, "e1") == 2
    assert sim.faults() == Faults()


def test_throttle_next_gives_429_with_retry_after(sim: Simulator, http: requests.Session) -> None:
    sim.add_task(TaskScript("r1", (Step(2),)))
    sim.set_faults(Faults(throttle_next=2, retry_after_s=3))

    throttled = [ask(http, sim, "r1") for _ in range(2)]

    for reply in throttled:
        assert reply.status_code == 429 and reply.headers["Retry-After"] == "3"
        assert reply.json() == {"code": 9999, "msg": "too many requests"}
    assert status_of(http, sim, "r1") == 2


def test_malformed_next_cycles_through_broken_bodies(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript("m1", (Step(2),)))
    sim.set_faults(Faults(malformed_next=4))

    truncated, html, bad_status, no_data = (ask(http, sim, "m1") for _ in range(4))

    assert all(r.status_code == 200 for r in (truncated, html, bad_status, no_data))
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.text)
    assert html.text.startswith("<!DOCTYPE html>")
    assert bad_status.json()["data"]["task_status"] == 7
    assert "data" not in no_data.json()
    assert status_of(http, sim, "m1") == 2


def test_a_forced_code_applies_to_every_answer_or_to_the_next_n(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript("c1", (Step(2),)))
    sim.set_faults(Faults(code=9999))
    assert [ask(http, sim, "c1").json()["code"] for _ in range(3)] == [9999] * 3

    sim.set_faults(Faults(code=9000, code_next=2))
    answers = [ask(http, sim, "c1") for _ in range(3)]

    assert answers[0].status_code == 200
    assert answers[0].json() == {"code": 9000, "msg": "insufficient credits"}
    assert [a.json()["code"] for a in answers] == [9000, 9000, 1000]


def test_task_faults_override_the_global_ones_and_faulted_queries_do_not_advance_steps(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript("own", (Step(1, polls=1), Step(3)), faults=Faults(error_next=1)))
    sim.add_task(TaskScript("other", (Step(1),)))
    sim.set_faults(Faults(code=9999))

    assert ask(http, sim, "own").status_code >= 500
    assert [status_of(http, sim, "own") for _ in range(2)] == [1, 3]
    assert ask(http, sim, "other").json()["code"] == 9999
    assert sim.task_state("own")["polls"] == 3


def test_rates_follow_the_seeded_generator(sim: Simulator, http: requests.Session) -> None:
    sim.add_task(TaskScript("rate", (Step(1),)))
    sim.set_faults(Faults(error_rate=0.5))

    codes = [ask(http, sim, "rate").status_code for _ in range(100)]

    assert 20 < sum(c >= 500 for c in codes) < 80
    assert sim.stats()["by_outcome"]["error"] == sum(c >= 500 for c in codes)


# -- admin API ------------------------------------------------------------------------------------


def test_admin_creates_reads_counts_and_resets_tasks(
    sim: Simulator, http: requests.Session
) -> None:
    base = f"{sim.base_url}/_sim"
    task = {"taskid": "adm", "script": [{"status": 2, "polls": 1}, {"status": 3}], "urls": ["u"]}

    created = http.post(f"{base}/tasks", json=task, timeout=5)
    many = [{"taskid": f"bulk-{i}", "script": [{"status": 1}]} for i in range(1000)]
    bulk = http.post(f"{base}/tasks", json={"tasks": many}, timeout=5)
    status_of(http, sim, "adm")
    status_of(http, sim, "adm")
    ask(http, sim, "nobody")

    assert created.status_code == 201 and created.json()["status"] == 2
    assert bulk.status_code == 201 and bulk.json() == {"created": 1000}
    state = http.get(f"{base}/tasks/adm", timeout=5).json()
    assert state["status"] == 3 and state["polls"] == 2 and state["finished_at"] > 0
    assert state["script"]["script"] == task["script"]
    stats = http.get(f"{base}/stats", timeout=5).json()
    assert stats["tasks"] == 1001 and stats["tasks_finished"] == 1
    assert stats["queries"] == 3 and stats["by_http_status"] == {"200": 2, "404": 1}
    assert http.get(f"{base}/tasks/nobody", timeout=5).status_code == 404

    assert http.post(f"{base}/reset", timeout=5).status_code == 200
    assert http.get(f"{base}/stats", timeout=5).json()["tasks"] == 0


def test_admin_sets_and_reads_faults(sim: Simulator, http: requests.Session) -> None:
    base = f"{sim.base_url}/_sim"
    sim.add_task(TaskScript("af", (Step(1),)))

    put = http.put(f"{base}/faults", json={"throttle_next": 1, "retry_after_s": 2}, timeout=5)
    throttled = ask(http, sim, "af")

    assert put.status_code == 200 and put.json()["throttle_next"] == 1
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert http.get(f"{base}/faults", timeout=5).json()["throttle_next"] == 0
    assert http.put(f"{base}/faults", json={"error_rate": 2}, timeout=5).status_code == 400
    task_faults = http.put(f"{base}/tasks/af/faults", json={"code": 9000}, timeout=5)
    assert task_faults.json()["faults"]["code"] == 9000
    assert ask(http, sim, "af").json()["code"] == 9000


@pytest.mark.parametrize(
    ("task", "words"),
    [
        ({"taskid": "x", "script": [{"status": 9}]}, "status"),
        ({"taskid": "x", "script": [{"status": 1}, {"status": 3}]}, "after_s or polls"),
        ({"taskid": "x", "script": []}, "at least one step"),
        ({"taskid": "x", "script": [{"status": 1, "after_s": 1, "polls": 1}]}, "not both"),
        ({"taskid": "x", "script": [{"status": 1}], "colour": "red"}, "unknown field"),
        ({"tasks": [{"taskid": "ok", "script": [{"status": 1}]}, {"taskid": "y"}]}, "tasks[1]"),
    ],
)
def test_an_invalid_script_is_400_with_a_clear_message(
    sim: Simulator, http: requests.Session, task: dict[str, Any], words: str
) -> None:
    reply = http.post(f"{sim.base_url}/_sim/tasks", json=task, timeout=5)

    assert reply.status_code == 400
    assert words in reply.json()["error"]
    assert sim.stats()["tasks"] == 0


def test_the_python_api_validates_and_raises() -> None:
    with pytest.raises(ScriptError):
        TaskScript("x", (Step(1), Step(3)))
    with pytest.raises(ScriptError):
        Faults(code_next=1)
    with Simulator() as sim, pytest.raises(KeyError):
        sim.task_state("nope")


def test_stop_ends_kept_alive_connections(http: requests.Session) -> None:
    sim = Simulator().start()
    sim.add_task(TaskScript("k", (Step(1),)))
    url = f"{sim.base_url}/v1/video/infobytaskid"
    reply = http.post(url, json={"taskid": "k"}, headers={"Authorization": "k"}, timeout=5)
    assert reply.headers["Connection"] == "keep-alive"

    sim.stop()

    with pytest.raises(requests.ConnectionError):
        http.post(url, json={"taskid": "k"}, headers={"Authorization": "k"}, timeout=5)


def test_trickle_sends_the_answer_one_byte_at_a_time_and_counts_it_in_flight(
    sim: Simulator, http: requests.Session
) -> None:
    sim.add_task(TaskScript("drip", (Step(2),), faults=Faults(trickle_s=0.005)))
    started = time.monotonic()

    reply = ask(http, sim, "drip")

    assert reply.status_code == 200 and reply.json()["data"]["task_status"] == 2
    assert time.monotonic() - started >= 0.005 * len(reply.content)
    state = sim.task_state("drip")
    assert state["faults"]["trickle_s"] == 0.005 and state["max_concurrent_queries"] == 1
    with pytest.raises(ScriptError, match="trickle_s"):
        Faults(trickle_s=-1)
