"""Custom endpoint headers: what is accepted, what is refused and how the refusal reads."""

from __future__ import annotations

import pytest

from tracker.errors import InvalidWebhookHeader
from tracker.webhooks.headers import MAX_HEADERS, parse_header, validate_headers


def test_a_typed_header_is_split_at_its_first_colon_and_trimmed() -> None:
    assert parse_header("X-Env: prod") == ("X-Env", "prod")
    assert parse_header("Authorization:Bearer a:b") == ("Authorization", "Bearer a:b")
    assert parse_header("X-Empty:") == ("X-Empty", "")
    assert validate_headers({"X-Tab": "\ta b\t "}) == {"X-Tab": "a b"}


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("webhook-id", "x", "set by tracker itself"),
        ("Webhook-Signature", "v1,x", "set by tracker itself"),
        ("WEBHOOK-TIMESTAMP", "1", "set by tracker itself"),
        ("Host", "evil.example", "set by tracker itself"),
        ("content-length", "0", "set by tracker itself"),
        ("Content-Type", "text/plain", "set by tracker itself"),
        ("Transfer-Encoding", "chunked", "set by tracker itself"),
        ("X Env", "prod", "not an HTTP token"),
        ("X-Env\r\nHost", "prod", "not an HTTP token"),
        ("X:Env", "prod", "not an HTTP token"),
        ("", "prod", "must not be empty"),
        ("Ünicode", "x", "not an HTTP token"),
        ("X-Env", "prod\r\nHost: evil.example", "line break, a control character"),
        ("X-Env", "prod\nX-Other: 1", "line break, a control character"),
        ("X-Env", "a\x00b", "line break, a control character"),
        ("X-Env", "a\x7fb", "line break, a control character"),
        ("X-Env", "café", "non-ASCII"),
        ("X-Env", "x" * 2049, "longer than 2048"),
        ("X-" + "a" * 100, "x", "longer than 100"),
    ],
)
def test_bad_headers_are_refused_with_one_clear_line(name: str, value: str, says: str) -> None:
    with pytest.raises(InvalidWebhookHeader) as refused:
        validate_headers({name: value})
    message = str(refused.value)
    assert says in message and "\n" not in message and "\r" not in message


def test_a_refused_value_is_never_quoted_back() -> None:
    with pytest.raises(InvalidWebhookHeader) as refused:
        validate_headers({"Authorization": "Bearer s3cret\n"})
    assert "s3cret" not in str(refused.value)
    with pytest.raises(InvalidWebhookHeader) as refused:
        parse_header("Bearer s3cret")  # the name forgotten
    assert "s3cret" not in str(refused.value) and "'Name: value'" in str(refused.value)


def test_one_name_twice_or_too_many_headers_are_refused() -> None:
    with pytest.raises(InvalidWebhookHeader, match="given twice"):
        validate_headers([("X-Env", "a"), ("x-env", "b")])
    with pytest.raises(InvalidWebhookHeader, match=f"at most {MAX_HEADERS}"):
        validate_headers({f"X-{n}": "v" for n in range(MAX_HEADERS + 1)})
    assert len(validate_headers({f"X-{n}": "v" for n in range(MAX_HEADERS)})) == MAX_HEADERS
