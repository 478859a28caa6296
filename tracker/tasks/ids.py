"""What a task ID and a provider name must look like: validation with messages for people."""

from __future__ import annotations

import unicodedata

from tracker.errors import InvalidInput, InvalidTaskId
from tracker.upstream.names import DEFAULT_PROVIDER, PROVIDERS

__all__ = ["DEFAULT_PROVIDER", "MAX_TASK_ID_LENGTH", "validate_provider", "validate_task_id"]

MAX_TASK_ID_LENGTH = 256


def validate_task_id(raw: object, *, position: int | None = None) -> str:
    """`raw` if it is a usable task ID, else `InvalidTaskId` saying what is wrong with it."""
    where = f"task ID #{position}" if position is not None else "task ID"
    if not isinstance(raw, str):
        raise InvalidTaskId(f"{where} must be a string, got {type(raw).__name__}")
    if not raw:
        raise InvalidTaskId(f"{where} is empty")
    if len(raw) > MAX_TASK_ID_LENGTH:
        raise InvalidTaskId(
            f"{where} is {len(raw)} characters long; the limit is {MAX_TASK_ID_LENGTH}"
        )
    for index, char in enumerate(raw):
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Zs"):
            kind = "whitespace" if char.isspace() else "a control character"
            raise InvalidTaskId(
                f"{where} {shown(raw)} contains {kind} ({char!r}) at position {index}"
            )
    return raw


def shown(raw: str) -> str:
    """`raw` quoted for a message, cut to 40 characters."""
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def validate_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise InvalidInput(f"unknown provider {shown(provider)}; known: {', '.join(PROVIDERS)}")
    return provider
