"""TensorsLab's create endpoints: the table of what each model takes (pure), the answers (pure,
table-tested), and one real request each against the simulator: sent once, whatever happens.
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import SIM_API_KEY
from tracker.errors import InvalidInput
from tracker.testing.simulator import Simulator
from tracker.testing.simulator.creates import CreateBehaviour
from tracker.upstream.tensorslab_create import (
    MODELS,
    Created,
    CreateNotSent,
    CreateRefused,
    CreateUnknown,
    TensorsLabCreator,
    parse_create_response,
    validate_request,
)


def test_the_issue_s_models_are_in_the_table_with_their_endpoints() -> None:
    assert {name: spec.path for name, spec in MODELS.items()} == {
        "seedancev2": "/v1/video/seedancev2",
        "seedancev15pro": "/v1/video/seedancev15pro",
        "seedancev1profast": "/v1/video/seedancev1profast",
        "seedreamv45": "/v1/images/seedreamv45",
        "seedreamv4": "/v1/images/seedreamv4",
        "zimage": "/v1/images/zimage",
    }
    assert {spec.provider for spec in MODELS.values() if spec.kind == "image"} == {
        "tensorslab-image"
    }


@pytest.mark.parametrize(
    ("kind", "model", "options", "fields"),
    [
        ("video", "seedancev2", {"duration_s": 15, "resolution": "1440p"}, {"duration": "15"}),
        ("video", "seedancev1profast", {"ratio": "9:16", "duration_s": "10"}, {"ratio": "9:16"}),
        (
            "video",
            "seedancev2",
            {"image_url": "https://x.example/a.png"},
            {"imageUrl": "https://x.example/a.png"},
        ),
        ("image", "seedreamv45", {"resolution": "4K", "batch_size": 3}, {"batchsize": "3"}),
        ("image", "seedreamv45", {"resolution": "3750x1250"}, {"resolution": "3750x1250"}),
        ("image", "zimage", {"resolution": "1024x768"}, {"resolution": "1024*768"}),
    ],
)
def test_accepted_requests_become_the_form_fields_tensorslab_names(
    kind: str, model: str, options: dict[str, object], fields: dict[str, str]
) -> None:
    request = validate_request(kind, model, prompt="a cat", **options)
    form = request.form_fields()
    assert form["prompt"] == "a cat"
    assert fields.items() <= form.items()


@pytest.mark.parametrize(
    ("kind", "model", "options", "said"),
    [
        ("video", "seedancev3", {}, "unknown video model 'seedancev3'; known: seedancev2"),
        ("video", "seedreamv45", {}, "unknown video model"),  # an image model as a video
        ("audio", "seedancev2", {}, "unknown kind"),
        ("video", "seedancev2", {"prompt": "x" * 8193}, "8193 characters long"),
        ("video", "seedancev2", {"prompt": "   "}, "the prompt is empty"),
        ("video", "seedancev2", {"duration_s": 4}, "5 to 15 seconds; got 4"),
        ("video", "seedancev15pro", {"duration_s": 12}, "5 to 10 seconds"),
        ("video", "seedancev2", {"duration_s": True}, "seconds"),
        ("video", "seedancev15pro", {"resolution": "1440p"}, "takes resolution 480p, 720p"),
        ("video", "seedancev2", {"ratio": "2:1"}, "takes ratio"),
        ("video", "seedancev2", {"image_url": "ftp://x/a.png"}, "http:// or https://"),
        ("video", "seedancev2", {"image_url": "javascript:alert(1)"}, "http:// or https://"),
        ("image", "seedreamv45", {"resolution": "1500x1500"}, "3,686,400"),
        ("image", "seedreamv4", {"resolution": "2K"}, "takes resolution"),
        ("image", "seedreamv45", {"ratio": "16:9"}, "as the resolution"),
        ("image", "seedreamv45", {"batch_size": 16}, "1 to 15 images"),
        ("image", "zimage", {"image_url": "https://x.example/a.png"}, "no source image"),
        ("image", "zimage", {"resolution": "99999*2"}, "W*H"),
    ],
)
def test_refused_requests_say_what_is_wrong_in_one_line(
    kind: str, model: str, options: dict[str, object], said: str
) -> None:
    options = {"prompt": "a cat", **options}
    with pytest.raises(InvalidInput) as caught:
        validate_request(kind, model, **options)
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "text", "kind", "said"),
    [
        (200, '{"code": 1000, "data": {"taskid": "t_1"}}', Created, "t_1"),
        (200, '{"code": 9000, "msg": "Insufficient credits"}', CreateRefused, "code 9000"),
        (200, '{"code": 9999, "msg": "bad prompt"}', CreateRefused, "bad prompt"),
        (400, '{"code": 9999, "msg": "prompt is required"}', CreateRefused, "HTTP 400"),
        (429, "slow down", CreateRefused, "HTTP 429"),
        (401, '{"msg": "invalid api key"}', CreateRefused, "invalid api key"),
        (502, "<html>bad gateway</html>", CreateUnknown, "HTTP 502"),
        (200, '{"code": 1000, "data": {}}', CreateUnknown, "without a task ID"),
        (200, "<html>busy</html>", CreateUnknown, "not a JSON object"),
        (200, '{"msg": "?"}', CreateUnknown, "`code` missing"),
    ],
)
def test_each_answer_is_one_outcome(status: int, text: str, kind: type, said: str) -> None:
    result = parse_create_response(status_code=status, text=text)
    assert isinstance(result, kind)
    shown = result.task_id if isinstance(result, Created) else result.message
    assert said in shown


def _creator(base_url: str) -> TensorsLabCreator:
    return TensorsLabCreator(
        base_url=base_url, api_key=SIM_API_KEY, connect_timeout_s=1, read_timeout_s=2
    )


def test_a_create_is_multipart_with_the_key_and_makes_one_task(simulator: Simulator) -> None:
    request = validate_request("video", "seedancev2", prompt="a fox", duration_s=5, ratio="16:9")
    result = _creator(simulator.base_url).create(request)
    assert isinstance(result, Created)
    [record] = simulator.creates()
    assert record.task_id == result.task_id and record.outcome == "created"
    assert dict(record.fields) == {"prompt": "a fox", "duration": "5", "ratio": "16:9"}
    assert simulator.task_state(result.task_id)["taskid"] == result.task_id


def test_a_dropped_connection_after_sending_is_unknown_and_not_retried(
    simulator: Simulator,
) -> None:
    simulator.set_create_behaviour(CreateBehaviour(drop_after_receiving=1))
    request = validate_request("image", "seedreamv4", prompt="a fox")
    result = _creator(simulator.base_url).create(request)
    assert isinstance(result, CreateUnknown)
    assert [record.outcome for record in simulator.creates()] == ["dropped"]  # sent once


def test_a_refused_connection_is_not_sent() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = validate_request("video", "seedancev2", prompt="a fox")
    result = _creator(f"http://127.0.0.1:{port}").create(request)
    assert isinstance(result, CreateNotSent)


def test_a_refusal_is_refused_with_upstream_s_message(simulator: Simulator) -> None:
    simulator.set_create_behaviour(CreateBehaviour(refuse_code=9000, refuse_msg="no credits"))
    request = validate_request("video", "seedancev2", prompt="a fox")
    result = _creator(simulator.base_url).create(request)
    assert result == CreateRefused("code 9000: no credits", http_status=200)
