"""The webhook receiver, over real HTTP on loopback with `requests`: verification, recording,
every scripted behaviour, and waiting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from tracker.testing.receiver import (
    Answer,
    Drop,
    Garbage,
    Hang,
    Redirect,
    Trickle,
    WebhookReceiver,
)
from tracker.webhooks.signing import generate_secret, sign_headers

SECRET = generate_secret()
BODY = json.dumps({"type": "task.completed", "data": {"task_id": "video-1"}})


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secrets=[SECRET]) as started:
        yield started


def _post(
    receiver: WebhookReceiver,
    *,
    body: str = BODY,
    secrets: tuple[str, ...] = (SECRET,),
    path: str = "/hook",
    timeout: float = 5.0,
    message_id: str = "msg_1",
) -> requests.Response:
    headers = sign_headers(message_id=message_id, body=body, secrets=secrets, at=datetime.now(UTC))
    headers["content-type"] = "application/json"
    return requests.post(
        receiver.url + path,
        data=body.encode(),
        headers=headers,
        timeout=timeout,
        allow_redirects=False,
    )


def test_a_properly_signed_post_is_verified_and_recorded(receiver: WebhookReceiver) -> None:
    before = time.time()
    response = _post(receiver, path="/hooks/tracker?x=1")

    assert (response.status_code, response.text) == (200, "ok")
    [got] = receiver.received
    assert got.path == "/hooks/tracker?x=1"
    assert got.verified and got.verify_error is None
    assert got.body == BODY and got.payload == json.loads(BODY)
    assert got.headers["webhook-id"] == "msg_1"
    assert got.headers["content-type"] == "application/json"
    assert all(name == name.lower() for name in got.headers)
    assert before <= got.received_at <= time.time()
    assert got.answered_status == 200


def test_a_bad_signature_is_recorded_and_flagged(receiver: WebhookReceiver) -> None:
    assert _post(receiver, secrets=(generate_secret(),)).status_code == 200
    [got] = receiver.received

    assert not got.verified
    assert got.verify_error is not None and "No matching signature" in got.verify_error
    assert got.payload == json.loads(BODY)


def test_unsigned_and_non_json_posts_are_still_recorded(receiver: WebhookReceiver) -> None:
    requests.post(receiver.url + "/raw", data=b"not json", timeout=5)
    requests.post(receiver.url + "/raw", data=b"not utf-8 \xff", timeout=5)
    signed = _post(receiver, body="{truncated")
    unsigned, not_utf8, bad_json = receiver.received

    assert not unsigned.verified and unsigned.verify_error == "Missing required headers"
    assert unsigned.payload is None and unsigned.body == "not json"
    assert not not_utf8.verified and "not UTF-8" in (not_utf8.verify_error or "")
    assert not_utf8.body == "not utf-8 \ufffd"
    assert signed.status_code == 200
    assert bad_json.verified and bad_json.payload is None and bad_json.body == "{truncated"


def test_any_of_several_secrets_verifies_and_secrets_can_change(
    receiver: WebhookReceiver,
) -> None:
    other = generate_secret()
    receiver.set_secrets([generate_secret(), other])
    _post(receiver, secrets=(other,))
    receiver.set_secrets([])
    _post(receiver, secrets=(other,))

    first, second = receiver.received
    assert first.verified
    assert not second.verified and second.verify_error is not None


def test_the_script_plays_in_order_then_the_default(receiver: WebhookReceiver) -> None:
    receiver.script(
        Answer(500),
        Answer(410, body="gone"),
        Answer(429, headers=(("Retry-After", "7"),)),
        default=Answer(503, headers=(("Retry-After", "2"),)),
    )

    answers = [_post(receiver) for _ in range(5)]

    assert [a.status_code for a in answers] == [500, 410, 429, 503, 503]
    assert answers[1].text == "gone"
    assert answers[2].headers["Retry-After"] == "7"
    assert answers[3].headers["Retry-After"] == answers[4].headers["Retry-After"] == "2"
    assert [r.answered_status for r in receiver.received] == [500, 410, 429, 503, 503]

    receiver.script()  # a new script replaces the rest; the default is 200 again
    assert _post(receiver).status_code == 200


def test_an_answer_can_be_delayed(receiver: WebhookReceiver) -> None:
    receiver.script(Answer(201, delay_s=0.2))
    started = time.monotonic()

    assert _post(receiver).status_code == 201
    assert time.monotonic() - started >= 0.2


def test_a_redirect_answers_with_its_location(receiver: WebhookReceiver) -> None:
    receiver.script(Redirect("http://169.254.169.254/latest/meta-data"), Redirect("/x", 307))

    first, second = _post(receiver), _post(receiver)

    assert first.status_code == 302
    assert first.headers["Location"] == "http://169.254.169.254/latest/meta-data"
    assert (second.status_code, second.headers["Location"]) == (307, "/x")
    assert [r.answered_status for r in receiver.received] == [302, 307]


def test_a_hang_times_the_client_out_without_blocking_others_and_stop_ends_it() -> None:
    receiver = WebhookReceiver(secrets=[SECRET]).start()
    try:
        receiver.script(Hang(60))
        with pytest.raises(requests.Timeout):
            _post(receiver, timeout=0.3)
        [hung] = receiver.wait_for(1, timeout_s=1)
        assert hung.verified and hung.answered_status is None

        started = time.monotonic()
        assert _post(receiver).status_code == 200  # another request is answered meanwhile
        assert time.monotonic() - started < 1
    finally:
        started = time.monotonic()
        receiver.stop()
        assert time.monotonic() - started < 2
    assert receiver.received[0].answered_status is None  # cut short: never answered


def test_a_short_hang_answers_200_in_the_end(receiver: WebhookReceiver) -> None:
    receiver.script(Hang(0.2))

    assert _post(receiver).status_code == 200
    assert receiver.received[0].answered_status == 200


@pytest.mark.parametrize("behaviour", [Garbage(), Drop()], ids=["garbage", "drop"])
def test_garbage_and_drop_make_the_client_fail(
    receiver: WebhookReceiver, behaviour: Garbage | Drop
) -> None:
    receiver.script(behaviour)

    with pytest.raises(requests.ConnectionError):
        _post(receiver)
    [got] = receiver.received
    assert got.verified and got.answered_status is None
    assert _post(receiver).status_code == 200  # the receiver itself carries on


def test_other_methods_are_refused_and_not_recorded(receiver: WebhookReceiver) -> None:
    response = requests.get(receiver.url + "/hook", timeout=5)

    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert receiver.received == []


def test_wait_for_returns_once_enough_arrived(receiver: WebhookReceiver) -> None:
    def send_later() -> None:
        time.sleep(0.1)
        for index in range(3):
            _post(receiver, message_id=f"msg_{index}")

    sender = threading.Thread(target=send_later)
    sender.start()
    try:
        got = receiver.wait_for(3, timeout_s=5)
        only_second = receiver.wait_for(
            1, timeout_s=5, predicate=lambda r: r.headers["webhook-id"] == "msg_1"
        )
    finally:
        sender.join()

    assert [r.headers["webhook-id"] for r in got] == ["msg_0", "msg_1", "msg_2"]
    assert [r.headers["webhook-id"] for r in only_second] == ["msg_1"]


def test_wait_for_times_out_saying_what_arrived(receiver: WebhookReceiver) -> None:
    _post(receiver, path="/only-one")
    started = time.monotonic()

    with pytest.raises(TimeoutError, match="/only-one") as raised:
        receiver.wait_for(2, timeout_s=0.2)

    assert 0.2 <= time.monotonic() - started < 1
    assert "1 arrived" in str(raised.value)
    receiver.clear()
    assert receiver.received == []
    with pytest.raises(TimeoutError, match="nothing arrived"):
        receiver.wait_for(1, timeout_s=0.05)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        WebhookReceiver(secrets=["not-a-secret"])
    with pytest.raises(ValueError):
        Answer(700)
    with pytest.raises(ValueError):
        Redirect("/x", status=200)
    with pytest.raises(RuntimeError, match="not started"):
        _ = WebhookReceiver().url
    with pytest.raises(TypeError):
        WebhookReceiver().script("500")  # type: ignore[arg-type]


@pytest.mark.parametrize("slow_headers", [True, False], ids=["headers", "body-only"])
def test_a_trickle_sends_one_byte_at_a_time_and_stop_ends_it(slow_headers: bool) -> None:
    receiver = WebhookReceiver(secrets=[SECRET]).start()
    try:
        receiver.script(Trickle(0.05, status=201, body="slow", headers=slow_headers))
        started = time.monotonic()
        response = _post(receiver, timeout=5.0)  # each read gets a byte well within 5 s
        assert (response.status_code, response.text) == (201, "slow")
        assert time.monotonic() - started >= 0.05 * len("slow")
        assert receiver.received[0].answered_status == 201

        receiver.script(Trickle(30))
        with pytest.raises(requests.Timeout):
            _post(receiver, timeout=0.3)
    finally:
        started = time.monotonic()
        receiver.stop()
        assert time.monotonic() - started < 2
    with pytest.raises(ValueError):
        Trickle(0)
