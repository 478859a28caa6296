"""The simulator's create endpoints and request accounting, over real HTTP on loopback."""

from __future__ import annotations

import requests

from tests.conftest import SIM_API_KEY
from tracker.testing.simulator import Simulator
from tracker.testing.simulator.creates import RequestLog, parse_form

AUTH = {"Authorization": f"Bearer {SIM_API_KEY}"}


def test_a_multipart_create_is_parsed_recorded_and_plays_its_script(simulator: Simulator) -> None:
    answer = requests.post(
        f"{simulator.base_url}/v1/images/seedreamv45",
        files={"prompt": (None, "a ship, ünïcode"), "resolution": (None, "16:9")},
        headers=AUTH,
        timeout=5,
    ).json()
    assert answer["code"] == 1000
    task_id = answer["data"]["taskid"]
    [record] = simulator.creates()
    assert (record.kind, record.model, record.outcome) == ("image", "seedreamv45", "created")
    assert dict(record.fields) == {"prompt": "a ship, ünïcode", "resolution": "16:9"}
    status = requests.post(
        f"{simulator.base_url}/v1/images/infobytaskid", json={"taskid": task_id}, headers=AUTH
    ).json()
    assert status["data"]["image_status"] in (1, 2, 3)
    shown = requests.get(f"{simulator.base_url}/_sim/creates", timeout=5).json()
    assert [item["task_id"] for item in shown["creates"]] == [task_id]


def test_a_create_without_a_prompt_or_a_form_is_refused(simulator: Simulator) -> None:
    url = f"{simulator.base_url}/v1/video/seedancev2"
    assert requests.post(url, files={"ratio": (None, "16:9")}, headers=AUTH).status_code == 400
    assert requests.post(url, json={"prompt": "x"}, headers=AUTH).status_code == 400
    assert requests.post(url, files={"prompt": (None, "x")}).status_code == 401
    assert [record.outcome for record in simulator.creates()] == ["bad_request", "bad_request"]


def test_the_drop_fault_reads_the_request_and_closes_without_an_answer(
    simulator: Simulator,
) -> None:
    put = requests.put(
        f"{simulator.base_url}/_sim/create-behaviour", json={"drop_after_receiving": 1}
    )
    assert put.ok
    url = f"{simulator.base_url}/v1/video/seedancev2"
    try:
        requests.post(url, files={"prompt": (None, "x")}, headers=AUTH, timeout=5)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("the connection should have been dropped")
    after = requests.post(url, files={"prompt": (None, "y")}, headers=AUTH, timeout=5)
    assert after.json()["code"] == 1000  # only the next create was dropped
    assert [record.outcome for record in simulator.creates()] == ["dropped", "created"]


def test_requests_are_counted_per_key_for_any_sliding_window(simulator: Simulator) -> None:
    for _ in range(3):
        requests.post(
            f"{simulator.base_url}/v1/video/infobytaskid", json={"taskid": "x"}, headers=AUTH
        )
    requests.post(
        f"{simulator.base_url}/v1/video/infobytaskid",
        json={"taskid": "x"},
        headers={"Authorization": "Bearer other"},
    )
    assert len(simulator.requests.times(SIM_API_KEY)) == 3
    assert simulator.requests.api_keys() == sorted([SIM_API_KEY, "other"])
    log = RequestLog()
    for moment in (0.0, 0.5, 1.0, 1.2, 3.0, 3.1, 3.15):
        log.record("k", at=moment)
    assert log.max_in_window(1.0, "k") == 3  # 0.0-1.0 and 0.5-1.2 hold 3, 3.0-3.15 does too
    assert log.max_in_window(0.2, "k") == 3
    assert log.max_in_window(10.0, "k") == 7


def test_parse_form_reads_urlencoded_too() -> None:
    assert parse_form("application/x-www-form-urlencoded", b"prompt=a+b&ratio=16%3A9") == {
        "prompt": "a b",
        "ratio": "16:9",
    }
