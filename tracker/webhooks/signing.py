"""Standard Webhooks signing: secrets, the three signature headers, and their verification.

Pure functions, no I/O. A message carries `webhook-id` (stable across retries),
`webhook-timestamp` (unix seconds) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`, one per secret, space-separated (two while a secret is being rotated).
The HMAC itself is computed by the `standardwebhooks` library, the reference implementation a
receiver is likely to use too; this module only validates inputs and assembles the headers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets as _random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

__all__ = [
    "SECRET_PREFIX",
    "WebhookVerificationError",
    "generate_secret",
    "sign_headers",
    "validate_secret",
    "verify",
    "verify_signature",
]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # what generate_secret() draws
# The spec asks for keys of 24 to 64 bytes; anything outside is refused, never silently used.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def generate_secret() -> str:
    """A new signing secret: `whsec_` followed by the base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode("ascii")


def validate_secret(secret: str) -> str:
    """Return `secret` unchanged if it is `whsec_<base64 of 24..64 bytes>`; ValueError if not.

    Base64 padding may be left out (as the `standardwebhooks` library allows); no other
    character, whitespace included, is accepted.
    """
    if not isinstance(secret, str):
        raise ValueError(f"a webhook secret must be a string, not {type(secret).__name__}")
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    if not encoded:
        raise ValueError(f"the webhook secret is empty after {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"the webhook secret after {SECRET_PREFIX!r} is not valid base64"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"the webhook secret decodes to {len(key)} bytes; "
            f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} are required"
        )
    return secret


def sign_headers(
    *, message_id: str, body: str, secrets: Sequence[str], at: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers for `body`, signed with every secret, in order.

    `at` must be timezone-aware: it is converted to UTC before signing, because
    `standardwebhooks.Webhook.sign()` replaces (not converts) the timezone of what it is given.
    `body` must be sent byte for byte as given (UTF-8), or the signatures will not verify.
    """
    if not message_id:
        raise ValueError("message_id must not be empty")
    if isinstance(secrets, str):  # a lone string is a Sequence[str] too: one secret per letter
        raise ValueError("secrets must be a sequence of secrets, not one string")
    if not secrets:
        raise ValueError("at least one secret is needed to sign a webhook")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"`at` must be timezone-aware, got naive {at.isoformat()}")
    at_utc = at.astimezone(UTC)
    signatures = [
        Webhook(validate_secret(secret)).sign(msg_id=message_id, timestamp=at_utc, data=body)
        for secret in secrets
    ]
    return {
        "webhook-id": message_id,
        # floor(), as the library does when it signs, so header and signed text always agree
        "webhook-timestamp": str(math.floor(at_utc.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def verify_signature(*, body: str | bytes, headers: Mapping[str, str], secret: str) -> None:
    """Check the signature headers against `body` with one secret; parse nothing.

    Raises WebhookVerificationError when a header is missing or malformed, the timestamp is
    more than five minutes off, or no `v1` signature matches (and for a body that is not
    UTF-8); ValueError when `secret` itself is malformed.
    """
    webhook = Webhook(validate_secret(secret))
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise WebhookVerificationError(f"the body is not UTF-8: {error}") from error
    try:
        webhook.verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError:
        raise
    except (ValueError, TypeError) as error:  # e.g. a signature without "v1,", bad base64
        raise WebhookVerificationError(f"Malformed webhook: {error}") from error


def verify(*, body: str | bytes, headers: Mapping[str, str], secret: str) -> Any:
    """Verify like `standardwebhooks.Webhook(secret).verify()` and return the parsed JSON body.

    Raises WebhookVerificationError as `verify_signature()` does; json.JSONDecodeError (a
    ValueError) when the signature is right but the body is not JSON.
    """
    verify_signature(body=body, headers=headers, secret=secret)
    return json.loads(body)
