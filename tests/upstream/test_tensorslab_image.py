"""`TensorsLabImageClient` over real HTTP against the simulator's image endpoint; nothing mocked.

Every `image_status`, the failure's `error_message`, the details, 404, the error codes, answers
outside the contract, and what goes over the wire (read from the requests `requests` sent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tracker.states import TaskStatus
from tracker.testing.simulator import Faults, ScriptError, Simulator, Step, TaskScript
from tracker.upstream.base import (
    ContractViolation,
    InsufficientCredits,
    TaskMissing,
    TaskReport,
    Throttled,
    Unauthorized,
    UpstreamFailure,
    UpstreamProblem,
)
from tracker.upstream.tensorslab import TensorsLabClient
from tracker.upstream.tensorslab_image import STATUS_PATH, TensorsLabImageClient

API_KEY = "image-test-key"
URLS = ("https://cdn.example.invalid/cat-1.png", "https://cdn.example.invalid/cat-2.png")


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(port=0, api_key=API_KEY, seed=5) as sim:
        yield sim


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    return server


def client(sim: Simulator, *, key: str = API_KEY, session: requests.Session | None = None) -> Any:
    return TensorsLabImageClient(
        base_url=sim.base_url, api_key=key, read_timeout_s=5, session=session
    )


def image(task_id: str, *steps: Step, **fields: Any) -> TaskScript:
    return TaskScript(task_id, steps, kind="image", **fields)


def test_an_image_task_goes_queued_processing_completed_with_its_urls_and_details(
    sim: Simulator,
) -> None:
    sim.add_task(
        image(
            "img-1",
            Step(1, polls=1),
            Step(2, polls=1),
            Step(3),
            urls=URLS,
            details={"category": "seedreamv4", "width": 1024, "height": 768, "prompt": "a cat"},
        )
    )
    images = client(sim)
    seen = [images.fetch("img-1") for _ in range(3)]
    assert all(isinstance(result, TaskReport) for result in seen)
    reports = [result for result in seen if isinstance(result, TaskReport)]
    assert [report.status for report in reports] == [
        TaskStatus.PENDING,
        TaskStatus.PROCESSING,
        TaskStatus.COMPLETED,
    ]
    assert reports[0].result_urls == ()
    assert reports[2].result_urls == URLS
    details = reports[2].details
    assert (details["category"], details["width"], details["height"]) == ("seedreamv4", 1024, 768)
    assert details["prompt"] == "a cat"
    assert len(str(details["starttime"])) == len("2026-01-30 12:00:00")
    assert reports[2].payload["data"]["image_status"] == 3


def test_a_failed_image_task_carries_its_error_message(sim: Simulator) -> None:
    sim.add_task(
        image("img-bad", Step(2, polls=1), Step(4), message="prompt refused by moderation")
    )
    images = client(sim)
    assert images.fetch("img-bad").status is TaskStatus.PROCESSING
    failed = images.fetch("img-bad")
    assert isinstance(failed, TaskReport)
    assert failed.status is TaskStatus.FAILED
    assert failed.message == "prompt refused by moderation"
    assert failed.result_urls == ()


def test_an_unknown_image_task_is_missing_and_a_video_task_is_unknown_to_the_image_endpoint(
    sim: Simulator,
) -> None:
    sim.add_task(TaskScript.completes("video-only", after_polls=0))
    images = client(sim)
    assert isinstance(images.fetch("nowhere"), TaskMissing)
    assert isinstance(images.fetch("video-only"), TaskMissing)
    video = TensorsLabClient(base_url=sim.base_url, api_key=API_KEY, read_timeout_s=5)
    assert isinstance(video.fetch("video-only"), TaskReport)
    assert sim.stats()["by_kind"] == {"video": 1, "image": 2}


def test_one_id_can_be_a_video_task_and_an_image_task_at_once(sim: Simulator) -> None:
    sim.add_task(TaskScript.completes("same-id", after_polls=0, urls=("https://v/x.mp4",)))
    sim.add_task(TaskScript.completes("same-id", after_polls=0, urls=URLS, kind="image"))
    video = TensorsLabClient(base_url=sim.base_url, api_key=API_KEY, read_timeout_s=5)
    from_video, from_image = video.fetch("same-id"), client(sim).fetch("same-id")
    assert isinstance(from_video, TaskReport) and isinstance(from_image, TaskReport)
    assert from_video.result_urls == ("https://v/x.mp4",)
    assert from_image.result_urls == URLS


@pytest.mark.parametrize(
    ("code", "expected"), [(9000, InsufficientCredits), (9999, UpstreamFailure)]
)
def test_error_codes_are_problems_not_transitions(
    sim: Simulator, code: int, expected: type[UpstreamProblem]
) -> None:
    sim.add_task(image("img-code", Step(2)))
    sim.set_faults(Faults(code=code, code_next=1))
    result = client(sim).fetch("img-code")
    assert isinstance(result, expected)
    assert str(code) in result.describe()
    assert client(sim).fetch("img-code").status is TaskStatus.PROCESSING


def test_answers_outside_the_contract_are_contract_violations(sim: Simulator) -> None:
    """Truncated JSON, an HTML page, an `image_status` of 7, a code 1000 without `data`."""
    sim.add_task(image("img-odd", Step(2)))
    sim.set_faults(Faults(malformed_next=4))
    images = client(sim)
    results = [images.fetch("img-odd") for _ in range(4)]
    assert all(isinstance(result, ContractViolation) for result in results), results
    messages = [result.message for result in results if isinstance(result, ContractViolation)]
    assert "not a JSON object" in messages[0]
    assert "not a JSON object" in messages[1]
    assert messages[2] == "image_status 7 is not one of 1, 2, 3, 4"
    assert "without a `data` object" in messages[3]


def test_throttling_and_a_refused_key(sim: Simulator) -> None:
    sim.add_task(image("img-slow", Step(1)))
    sim.set_faults(Faults(throttle_next=1, retry_after_s=7))
    throttled = client(sim).fetch("img-slow")
    assert isinstance(throttled, Throttled)
    assert throttled.retry_after_s == 7
    assert isinstance(client(sim, key="wrong-key").fetch("img-slow"), Unauthorized)


def test_what_goes_over_the_wire(sim: Simulator) -> None:
    sim.add_task(image("img-wire", Step(3)))
    session = requests.Session()
    sent: list[requests.PreparedRequest] = []
    session.hooks["response"].append(lambda response, *a, **k: sent.append(response.request))
    client(sim, session=session).fetch("img-wire")
    (request,) = sent
    assert request.method == "POST"
    assert request.url == sim.base_url + STATUS_PATH
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body or b"") == {"taskid": "img-wire"}


def test_an_image_script_refuses_the_uploading_status() -> None:
    with pytest.raises(ScriptError, match=r"image task's step status must be one of 1\.\.4"):
        image("img-5", Step(5, polls=1), Step(3))
