"""An endpoint's own HTTP headers (`--header 'X-Env: prod'`): validated here, sent with every
attempt by `sender.py`, never able to replace what tracker itself must send.

Pure functions, no I/O. A name must be an HTTP token (RFC 9110) and a value printable ASCII
(spaces and tabs inside allowed): CR, LF and every other control character are refused, so a
header can never start another header or end the request's head. The Standard Webhooks
headers and those that frame the request (`Host`, `Content-Length`, `Content-Type`,
`Transfer-Encoding`, `Connection`) are tracker's and are refused, whatever their case.

Values are treated as credentials (a receiver may want `Authorization: Bearer ...`): views
show only the names, and nothing logs a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from tracker.errors import InvalidWebhookHeader

__all__ = [
    "MAX_HEADERS",
    "MAX_VALUE_LENGTH",
    "RESERVED_HEADERS",
    "parse_header",
    "validate_headers",
]

MAX_HEADERS = 20
MAX_NAME_LENGTH = 100
MAX_VALUE_LENGTH = 2048
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-signature",
        "webhook-timestamp",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\x20-\x7e\t]*")  # printable ASCII, space and tab


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` as typed on the command line, checked; InvalidWebhookHeader if refused."""
    name, colon, value = text.partition(":")
    if not colon:
        # Not quoted back: what was typed may be a credential without its name.
        raise InvalidWebhookHeader("a header must be written 'Name: value' (with a colon)")
    return _checked(name, value)


def validate_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers to store, names as given and values stripped; refuses the whole set when
    one is invalid, reserved, or given twice (names compare case-insensitively)."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if len(pairs) > MAX_HEADERS:
        raise InvalidWebhookHeader(
            f"{len(pairs)} custom headers given; an endpoint has at most {MAX_HEADERS}"
        )
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        name, value = _checked(name, value)
        if name.lower() in seen:
            raise InvalidWebhookHeader(f"header {name!r} is given twice")
        seen.add(name.lower())
        checked[name] = value
    return checked


def _checked(name: object, value: object) -> tuple[str, str]:
    if not isinstance(name, str) or not isinstance(value, str):
        raise InvalidWebhookHeader("a header's name and value must be strings")
    if not name:
        raise InvalidWebhookHeader("a header name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidWebhookHeader(
            f"header name {_shown(name)} is longer than {MAX_NAME_LENGTH} characters"
        )
    if not _TOKEN.fullmatch(name):
        raise InvalidWebhookHeader(
            f"header name {_shown(name)} is not an HTTP token: use letters, digits and "
            "!#$%&'*+-.^_`|~ only (no spaces, colons or control characters)"
        )
    if name.lower() in RESERVED_HEADERS:
        raise InvalidWebhookHeader(
            f"header {name!r} is set by tracker itself (webhook-id, webhook-signature, "
            "webhook-timestamp, Host, Content-Length, Content-Type, Transfer-Encoding, "
            "Connection) and cannot be replaced"
        )
    value = value.strip(" \t")
    if not _VALUE.fullmatch(value):
        # The value is not quoted back: it may be a credential.
        raise InvalidWebhookHeader(
            f"the value of header {name!r} contains a line break, a control character or a "
            "non-ASCII character; only printable ASCII is allowed"
        )
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidWebhookHeader(
            f"the value of header {name!r} is longer than {MAX_VALUE_LENGTH} characters"
        )
    return name, value


def _shown(name: str) -> str:
    """A header name as the user typed it, escaped and cut."""
    return repr(name[:MAX_NAME_LENGTH] + ("..." if len(name) > MAX_NAME_LENGTH else ""))
