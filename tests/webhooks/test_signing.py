"""Signing, checked from the receiver's side: `standardwebhooks.Webhook(secret).verify()`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import standardwebhooks

from tracker.webhooks import signing
from tracker.webhooks.signing import (
    SECRET_PREFIX,
    WebhookVerificationError,
    generate_secret,
    sign_headers,
    validate_secret,
    verify,
)

BODY = json.dumps({"type": "task.completed", "data": {"task_id": "video-1"}})


def _now() -> datetime:
    return datetime.now(UTC)


def _signed(*secrets: str, at: datetime | None = None, body: str = BODY) -> dict[str, str]:
    return sign_headers(message_id="msg_1", body=body, secrets=secrets, at=at or _now())


def test_headers_verify_with_the_reference_library() -> None:
    secret = generate_secret()
    at = _now()

    headers = _signed(secret, at=at)

    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert standardwebhooks.Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    assert verify(body=BODY.encode(), headers=headers, secret=secret) == json.loads(BODY)


def test_two_secrets_give_two_signatures_each_verifying_alone() -> None:
    old, new = generate_secret(), generate_secret()

    headers = _signed(new, old)

    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert signatures[0] == _signed(new)["webhook-signature"]  # in the order given
    for secret in (old, new):
        assert standardwebhooks.Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(BODY, headers)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b.replace("video-1", "video-2")),
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
    ],
    ids=["body", "id", "timestamp"],
)
def test_any_change_fails_verification(tamper) -> None:
    secret = generate_secret()
    headers, body = tamper(_signed(secret), BODY)

    with pytest.raises(WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        verify(body=body, headers=headers, secret=secret)


def test_verify_turns_malformed_headers_into_a_verification_error() -> None:
    secret = generate_secret()
    headers = {**_signed(secret), "webhook-signature": "no-comma-here"}

    with pytest.raises(WebhookVerificationError):
        verify(body=BODY, headers=headers, secret=secret)
    with pytest.raises(WebhookVerificationError, match="Missing"):
        verify(body=BODY, headers={}, secret=secret)


def test_an_old_timestamp_fails_verification() -> None:
    secret = generate_secret()
    headers = _signed(secret, at=_now() - timedelta(minutes=10))

    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(body=BODY, headers=headers, secret=secret)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _signed(generate_secret(), at=datetime.now())  # naive on purpose


def test_an_aware_non_utc_datetime_signs_like_its_utc_equivalent() -> None:
    secret = generate_secret()
    at_utc = _now().replace(microsecond=0)
    at_elsewhere = at_utc.astimezone(timezone(timedelta(hours=-5, minutes=-30)))

    assert _signed(secret, at=at_elsewhere) == _signed(secret, at=at_utc)
    standardwebhooks.Webhook(secret).verify(BODY, _signed(secret, at=at_elsewhere))


def test_signing_needs_a_secret_and_an_id() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        sign_headers(message_id="msg_1", body=BODY, secrets=[], at=_now())
    with pytest.raises(ValueError, match="message_id"):
        sign_headers(message_id="", body=BODY, secrets=[generate_secret()], at=_now())
    with pytest.raises(ValueError):
        sign_headers(message_id="msg_1", body=BODY, secrets=["whsec_junk!"], at=_now())


def test_generated_secrets_are_unique_and_valid() -> None:
    made = [generate_secret() for _ in range(200)]

    assert len(set(made)) == len(made)
    for secret in made:
        assert secret.startswith(SECRET_PREFIX)
        assert validate_secret(secret) == secret
        assert len(base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)) == 24
        standardwebhooks.Webhook(secret)  # the library takes it too


def test_validate_secret_accepts_unpadded_base64_of_24_to_64_bytes() -> None:
    for size in (24, 32, 64):
        encoded = base64.b64encode(bytes(range(size))).decode()
        assert validate_secret(SECRET_PREFIX + encoded) == SECRET_PREFIX + encoded
        assert validate_secret(SECRET_PREFIX + encoded.rstrip("="))


@pytest.mark.parametrize(
    ("junk", "message"),
    [
        ("", "whsec_"),
        ("abc", "whsec_"),
        (base64.b64encode(bytes(24)).decode(), "whsec_"),  # the prefix is missing
        ("whsec_", "empty"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(bytes(24)).decode() + " ", "base64"),
        ("whsec_" + base64.b64encode(bytes(8)).decode(), "8 bytes"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "65 bytes"),
    ],
)
def test_validate_secret_rejects_junk_with_a_clear_message(junk: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_secret(junk)


def test_module_exports_what_it_documents() -> None:
    assert set(signing.__all__) <= set(dir(signing))
