"""`parse_response` as a table: one HTTP answer (status, headers, body) -> one `PollResult`.

Each row is what a user would check when reading an answer from TensorsLab: which kind of result
it is, and the fields that matter (status, URLs, message, details, retry-after).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from tracker.states import TaskStatus
from tracker.upstream.base import (
    ContractViolation,
    InsufficientCredits,
    PollResult,
    TaskMissing,
    TaskReport,
    Throttled,
    Unauthorized,
    Unavailable,
    UpstreamFailure,
)
from tracker.upstream.tensorslab import MAX_RETRY_AFTER_S, parse_response

TASK_ID = "task-abc-123"
S = TaskStatus
URL_A = "https://cdn.example.invalid/a.mp4"
URL_B = "https://cdn.example.invalid/b.mp4"
MORE_INFO = {
    "prompt": "a cat surfing",
    "imageurl": "https://img.example.invalid/cat.png",
    "resolution": "1080p",
    "fps": 30,
    "source": "model-x",
    "duration": 10,
    "seed": 42,
    "ratio": "9:16",
}
HTML = "<!DOCTYPE html><html><body><h1>Bad Gateway</h1></body></html>"


def data(**fields: Any) -> dict[str, Any]:
    """A documented `data` object for TASK_ID, processing, with `fields` replacing or added."""
    base: dict[str, Any] = {"taskid": TASK_ID, "task_status": 2, "url": [], "message": ""}
    base.update(fields)
    return base


def body(obj: object) -> str:
    return json.dumps(obj)


def success(**fields: Any) -> str:
    return body({"code": 1000, "msg": "success", "data": data(**fields)})


def without(key: str) -> str:
    """A success body whose `data` lacks `key`."""
    d = data()
    del d[key]
    return body({"code": 1000, "msg": "success", "data": d})


@dataclass(frozen=True)
class Expect:
    """The result type, fields that must be equal, and words the message must contain."""

    kind: type
    fields: dict[str, Any] = field(default_factory=dict)
    says: tuple[str, ...] = ()


def report(status: TaskStatus, **fields: Any) -> Expect:
    return Expect(TaskReport, {"status": status, **fields})


def violation(*says: str) -> Expect:
    return Expect(ContractViolation, says=says)


def check(result: PollResult, expected: Expect) -> None:
    assert type(result) is expected.kind, result
    for name, value in expected.fields.items():
        assert getattr(result, name) == value, name
    text = getattr(result, "message", "")
    for words in expected.says:
        assert words in text, (words, text)


def parse(status_code: int, text: str, headers: dict[str, str] | None = None) -> PollResult:
    return parse_response(TASK_ID, status_code=status_code, headers=headers or {}, text=text)


# -- 200 with code 1000: the task report ----------------------------------------------------------

SUCCESS_ROWS = [
    pytest.param(success(task_status=1), report(S.PENDING), id="status-1-pending"),
    pytest.param(success(task_status=2), report(S.PROCESSING), id="status-2-processing"),
    pytest.param(
        success(task_status=3, url=[URL_A]),
        report(S.COMPLETED, result_urls=(URL_A,)),
        id="status-3-completed",
    ),
    pytest.param(
        success(task_status=4, message="content policy"),
        report(S.FAILED, message="content policy"),
        id="status-4-failed-with-message",
    ),
    pytest.param(success(task_status=5), report(S.UPLOADING), id="status-5-uploading"),
    pytest.param(
        success(task_status=3, url=[URL_A, URL_B]),
        report(S.COMPLETED, result_urls=(URL_A, URL_B)),
        id="two-urls-in-order",
    ),
    pytest.param(
        success(task_status=3, url=[]),
        report(S.COMPLETED, result_urls=()),
        id="completed-empty-url-list",
    ),
    pytest.param(without("url"), report(S.PROCESSING, result_urls=()), id="url-absent"),
    pytest.param(without("message"), report(S.PROCESSING, message=""), id="message-absent"),
    pytest.param(without("taskid"), report(S.PROCESSING), id="taskid-absent-is-fine"),
    pytest.param(
        success(task_status=2, **MORE_INFO),
        report(S.PROCESSING, details=MORE_INFO),
        id="details-from-all-more-task-info-fields",
    ),
    pytest.param(
        success(prompt="p", imageurl="", seed=0, fps=None, colour="red", credits=3),
        report(S.PROCESSING, details={"prompt": "p", "seed": 0}),
        id="details-skip-empty-null-and-unknown-fields-keep-zero",
    ),
    pytest.param(success(), report(S.PROCESSING, details={}), id="no-details"),
    pytest.param(
        body({"code": 1000, "data": data(task_status=1)}),
        report(S.PENDING),
        id="top-level-msg-absent",
    ),
]


@pytest.mark.parametrize(("text", "expected"), SUCCESS_ROWS)
def test_a_successful_answer_is_a_task_report(text: str, expected: Expect) -> None:
    check(parse(200, text), expected)


def test_a_report_keeps_the_whole_answer_as_payload() -> None:
    text = success(task_status=3, url=[URL_A], **MORE_INFO)

    result = parse(200, text)

    assert isinstance(result, TaskReport)
    assert result.payload == json.loads(text)


# -- 200 with an error code or a broken shape -----------------------------------------------------

CODE_ROWS = [
    pytest.param(
        body({"code": 9999, "msg": "task query failed"}),
        Expect(UpstreamFailure, says=("code 9999", "task query failed")),
        id="9999-with-msg",
    ),
    pytest.param(
        body({"code": 9999}),
        Expect(UpstreamFailure, says=("code 9999", "(no message)")),
        id="9999-without-msg",
    ),
    pytest.param(
        body({"code": 9999, "msg": "boom", "data": data()}),
        Expect(UpstreamFailure, says=("boom",)),
        id="9999-even-with-data",
    ),
    pytest.param(
        body({"code": 9000, "msg": "insufficient credits"}),
        Expect(InsufficientCredits, says=("code 9000", "insufficient credits")),
        id="9000-insufficient-credits",
    ),
    pytest.param(
        body({"code": 9000, "msg": ""}),
        Expect(InsufficientCredits, says=("insufficient credits",)),
        id="9000-empty-msg",
    ),
    pytest.param(body({"code": 1234, "msg": "?"}), violation("unknown code 1234"), id="code-1234"),
    pytest.param(body({"code": 0, "msg": "?"}), violation("unknown code 0"), id="code-0"),
    pytest.param(body({"code": 200, "msg": "ok"}), violation("unknown code 200"), id="code-200"),
    pytest.param(body({"msg": "success", "data": data()}), violation("`code`"), id="code-missing"),
    pytest.param(
        body({"code": "1000", "msg": "success", "data": data()}),
        violation("`code`"),
        id="code-is-a-string",
    ),
    pytest.param(
        body({"code": True, "msg": "success", "data": data()}),
        violation("`code`"),
        id="code-is-a-bool",
    ),
    pytest.param(
        body({"code": 1000.0, "msg": "success", "data": data()}),
        violation("`code`"),
        id="code-is-a-float",
    ),
    pytest.param(
        body({"code": None, "msg": "success", "data": data()}),
        violation("`code`"),
        id="code-is-null",
    ),
    pytest.param(body({"code": 1000, "msg": "success"}), violation("`data`"), id="data-missing"),
    pytest.param(
        body({"code": 1000, "msg": "success", "data": None}), violation("`data`"), id="data-null"
    ),
    pytest.param(
        body({"code": 1000, "msg": "success", "data": [data()]}),
        violation("`data`"),
        id="data-is-a-list",
    ),
    pytest.param(
        body({"code": 1000, "msg": "success", "data": "done"}),
        violation("`data`"),
        id="data-is-a-string",
    ),
    pytest.param(success(task_status=7), violation("task_status 7"), id="task-status-7"),
    pytest.param(success(task_status=0), violation("task_status 0"), id="task-status-0"),
    pytest.param(success(task_status=6), violation("task_status 6"), id="task-status-6"),
    pytest.param(success(task_status=-1), violation("task_status -1"), id="task-status-minus-1"),
    pytest.param(success(task_status="3"), violation("`task_status`"), id="task-status-string-3"),
    pytest.param(success(task_status=3.0), violation("`task_status`"), id="task-status-float"),
    pytest.param(success(task_status=True), violation("`task_status`"), id="task-status-bool"),
    pytest.param(success(task_status=None), violation("`task_status`"), id="task-status-null"),
    pytest.param(without("task_status"), violation("`task_status`"), id="task-status-missing"),
    pytest.param(success(task_status=3, url=URL_A), violation("`url`"), id="url-is-a-string"),
    pytest.param(success(task_status=3, url={"0": URL_A}), violation("`url`"), id="url-is-object"),
    pytest.param(success(task_status=3, url=[1, 2]), violation("`url`"), id="url-of-numbers"),
    pytest.param(success(task_status=3, url=[URL_A, None]), violation("`url`"), id="url-has-null"),
    pytest.param(success(task_status=3, url=[[URL_A]]), violation("`url`"), id="url-nested-list"),
    pytest.param(success(task_status=4, message=5), violation("`message`"), id="message-number"),
    pytest.param(success(task_status=4, message=["x"]), violation("`message`"), id="message-list"),
    pytest.param(
        success(task_status=4, message={"e": 1}), violation("`message`"), id="message-object"
    ),
    pytest.param(success(taskid="other-task"), violation("other-task", TASK_ID), id="taskid-other"),
    pytest.param(success(taskid=""), violation(TASK_ID), id="taskid-empty"),
    pytest.param(success(taskid=123), violation("123"), id="taskid-is-a-number"),
]


@pytest.mark.parametrize(("text", "expected"), CODE_ROWS)
def test_a_200_with_an_error_code_or_outside_the_contract(text: str, expected: Expect) -> None:
    check(parse(200, text), expected)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(success(task_status=3, url=""), id="url-empty-string"),
        pytest.param(success(task_status=3, url={}), id="url-empty-object"),
        pytest.param(success(task_status=3, url=0), id="url-zero"),
        pytest.param(success(task_status=3, url=False), id="url-false"),
        pytest.param(success(task_status=4, message=0), id="message-zero"),
        pytest.param(success(task_status=4, message=False), id="message-false"),
        pytest.param(success(task_status=4, message=[]), id="message-empty-list"),
    ],
)
def test_a_falsy_value_of_the_wrong_type_is_a_contract_violation_too(text: str) -> None:
    """`url` must be an array and `message` a string; `""`, `{}`, `0`, `false` are neither."""
    check(parse(200, text), violation())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(HTML, id="html-page"),
        pytest.param('{"code": 1000, "msg": "success", "data": {"taskid"', id="truncated-json"),
        pytest.param("[1, 2, 3]", id="json-array"),
        pytest.param(body([{"code": 1000}]), id="json-array-of-objects"),
        pytest.param("null", id="json-null"),
        pytest.param('"success"', id="json-string"),
        pytest.param("1000", id="json-number"),
        pytest.param("", id="empty-body"),
        pytest.param("   \n", id="blank-body"),
    ],
)
def test_a_200_whose_body_is_not_a_json_object_is_a_contract_violation(text: str) -> None:
    check(parse(200, text), violation("not a JSON object"))


# -- 404 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            body({"code": 9999, "msg": "task not found"}),
            Expect(TaskMissing, {"message": "task not found"}),
            id="documented-error-body",
        ),
        pytest.param(
            body({"code": 9999, "msg": ""}),
            Expect(TaskMissing, {"message": ""}),
            id="documented-body-empty-msg",
        ),
        pytest.param(HTML, violation("HTTP 404", "Bad Gateway"), id="html-page"),
        pytest.param("Not Found", violation("HTTP 404"), id="plain-text"),
        pytest.param("", violation("HTTP 404"), id="empty-body"),
        pytest.param(body({"error": "no route"}), violation("HTTP 404"), id="json-without-code"),
        pytest.param(
            body({"code": "9999", "msg": "x"}), violation("HTTP 404"), id="json-code-string"
        ),
        pytest.param(body([9999]), violation("HTTP 404"), id="json-array"),
    ],
)
def test_a_404_is_task_missing_only_with_the_documented_body(text: str, expected: Expect) -> None:
    check(parse(404, text), expected)


def test_task_missing_keeps_the_answer_as_payload() -> None:
    result = parse(404, body({"code": 9999, "msg": "task not found"}))

    assert isinstance(result, TaskMissing)
    assert result.payload == {"code": 9999, "msg": "task not found"}


def test_a_404_with_a_bool_code_is_not_the_documented_body() -> None:
    check(parse(404, body({"code": True, "msg": "x"})), violation("HTTP 404"))


def test_a_404_with_a_null_msg_does_not_report_the_word_none() -> None:
    result = parse(404, body({"code": 9999, "msg": None}))

    assert isinstance(result, TaskMissing) and result.message == ""


# -- auth, throttling, server errors, other statuses ----------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "text"),
    [
        pytest.param(401, body({"code": 9999, "msg": "invalid api key"}), id="401-json"),
        pytest.param(401, "", id="401-empty"),
        pytest.param(403, HTML, id="403-html"),
        pytest.param(403, body({"code": 9999, "msg": "forbidden"}), id="403-json"),
    ],
)
def test_401_and_403_mean_the_api_key_was_refused(status_code: int, text: str) -> None:
    check(parse(status_code, text), Expect(Unauthorized, says=(f"HTTP {status_code}", "API key")))


THROTTLED = body({"code": 9999, "msg": "too many requests"})


@pytest.mark.parametrize(
    ("headers", "retry_after_s"),
    [
        pytest.param({"Retry-After": "30"}, 30.0, id="seconds-30"),
        pytest.param({"Retry-After": "0"}, 0.0, id="seconds-0"),
        pytest.param({"Retry-After": " 7 "}, 7.0, id="seconds-with-spaces"),
        pytest.param({"Retry-After": "2.5"}, 2.5, id="fractional-seconds"),
        pytest.param({"Retry-After": "3600"}, 3600.0, id="exactly-the-cap"),
        pytest.param({"Retry-After": "3601"}, MAX_RETRY_AFTER_S, id="just-over-the-cap"),
        pytest.param({"Retry-After": "999999999"}, MAX_RETRY_AFTER_S, id="huge-capped-1h"),
        pytest.param({"Retry-After": "1e400"}, MAX_RETRY_AFTER_S, id="overflowing-capped"),
        pytest.param({"Retry-After": "inf"}, MAX_RETRY_AFTER_S, id="infinity-capped"),
        pytest.param({"Retry-After": "-5"}, 0.0, id="negative-is-zero"),
        pytest.param({"Retry-After": "nan"}, None, id="nan-ignored"),
        pytest.param({"Retry-After": "soon"}, None, id="garbage-ignored"),
        pytest.param({"Retry-After": "Wed, 99 Foo 20xx"}, None, id="broken-date-ignored"),
        pytest.param({"Retry-After": ""}, None, id="empty-ignored"),
        pytest.param({}, None, id="absent"),
        pytest.param({"Content-Type": "application/json"}, None, id="other-headers-only"),
    ],
)
def test_429_is_throttled_with_the_retry_after_in_seconds(
    headers: dict[str, str], retry_after_s: float | None
) -> None:
    check(
        parse(429, THROTTLED, headers),
        Expect(Throttled, {"retry_after_s": retry_after_s}, says=("HTTP 429", "too many")),
    )


@pytest.mark.parametrize(
    ("offset_s", "expected_s"),
    [
        pytest.param(120, 120.0, id="date-in-2-minutes"),
        pytest.param(-600, 0.0, id="date-in-the-past-is-zero"),
        pytest.param(86400, MAX_RETRY_AFTER_S, id="date-tomorrow-capped-1h"),
    ],
)
def test_429_retry_after_as_an_http_date(offset_s: float, expected_s: float) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=offset_s), usegmt=True)

    result = parse(429, THROTTLED, {"Retry-After": when})

    assert isinstance(result, Throttled)
    assert result.retry_after_s == pytest.approx(expected_s, abs=3)


def test_retry_after_is_found_whatever_the_header_case() -> None:
    headers = CaseInsensitiveDict({"retry-after": "12"})

    result = parse_response(TASK_ID, status_code=429, headers=headers, text=THROTTLED)

    assert isinstance(result, Throttled) and result.retry_after_s == 12.0


@pytest.mark.parametrize("status_code", [500, 502, 503, 504, 520, 599], ids=lambda c: f"http-{c}")
@pytest.mark.parametrize(
    "text",
    [
        pytest.param(HTML, id="html"),
        pytest.param("", id="empty"),
        pytest.param(body({"code": 1000, "msg": "success", "data": data()}), id="success-json"),
    ],
)
def test_5xx_is_unavailable_whatever_the_body(status_code: int, text: str) -> None:
    check(
        parse(status_code, text),
        Expect(Unavailable, {"retry_after_s": None}, says=(f"HTTP {status_code}",)),
    )


def test_a_503_with_retry_after_passes_it_on() -> None:
    result = parse(503, HTML, {"Retry-After": "120"})

    check(result, Expect(Unavailable, {"retry_after_s": 120.0}, says=("HTTP 503",)))


@pytest.mark.parametrize(
    ("status_code", "text"),
    [
        pytest.param(301, "", id="301"),
        pytest.param(302, HTML, id="302"),
        pytest.param(304, "", id="304"),
        pytest.param(418, "I'm a teapot", id="418"),
        pytest.param(400, body({"code": 9999, "msg": "taskid is required"}), id="400-json"),
        pytest.param(405, body({"code": 9999, "msg": "method not allowed"}), id="405"),
        pytest.param(201, success(task_status=3, url=[URL_A]), id="201-with-success-body"),
        pytest.param(204, "", id="204"),
        pytest.param(100, "", id="100"),
    ],
)
def test_any_other_http_status_is_a_contract_violation(status_code: int, text: str) -> None:
    check(parse(status_code, text), violation(f"unexpected HTTP {status_code}"))


# -- messages stay readable -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "text"),
    [
        pytest.param(200, "x" * 10_000, id="200-huge-garbage"),
        pytest.param(404, "<p>" * 5_000, id="404-huge-html"),
        pytest.param(502, "y" * 50_000, id="502-huge-page"),
        pytest.param(429, "z" * 10_000, id="429-huge"),
    ],
)
def test_a_huge_body_is_cut_to_a_short_excerpt(status_code: int, text: str) -> None:
    result = parse(status_code, text)

    message = getattr(result, "message", "")
    assert 0 < len(message) < 300
    assert message.endswith("...")


def test_whitespace_in_an_excerpt_is_collapsed() -> None:
    result = parse(502, "<html>\n  <body>\n\n    Bad   Gateway\n  </body>\n</html>")

    assert isinstance(result, Unavailable)
    assert result.message == "HTTP 502: <html> <body> Bad Gateway </body> </html>"
