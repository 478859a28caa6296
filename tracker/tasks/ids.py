"""What a task ID and a provider name must look like: validation with messages for people.

A task ID is 1 to `MAX_TASK_ID_LENGTH` characters, none of them whitespace or a control or
format character (`refused_in_task_id`). `task_id_pattern()` states the same rule as a regular
expression for the OpenAPI document, derived from that one predicate, so the published contract
is exactly what the server enforces.
"""

from __future__ import annotations

import sys
import unicodedata
from functools import cache

from tracker.errors import InvalidInput, InvalidTaskId
from tracker.upstream.names import DEFAULT_PROVIDER, PROVIDERS

__all__ = [
    "DEFAULT_PROVIDER",
    "MAX_TASK_ID_LENGTH",
    "refused_in_task_id",
    "task_id_pattern",
    "validate_provider",
    "validate_task_id",
]

MAX_TASK_ID_LENGTH = 256
REFUSED_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Zs")  # controls, format characters, separators
_SURROGATES = range(0xD800, 0xE000)  # no JSON or UTF-8 text carries them


def refused_in_task_id(char: str) -> bool:
    """Whether `char` may not appear in a task ID: whitespace, control or format characters."""
    return char.isspace() or unicodedata.category(char) in REFUSED_CATEGORIES


@cache
def task_id_pattern() -> str:
    """A regular expression (ECMA-262 and Python alike) matching every allowed task ID's
    characters; its length bounds are separate (`minLength`/`maxLength`).

    Ranges of the Basic Multilingual Plane are written as `\\uXXXX` escapes, which every
    engine reads the same; the few refused characters above it are written literally.
    """
    refused: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if code in _SURROGATES or not refused_in_task_id(chr(code)):
            continue
        if refused and refused[-1][1] == code - 1:
            refused[-1] = (refused[-1][0], code)
        else:
            refused.append((code, code))

    def written(code: int) -> str:
        return f"\\u{code:04X}" if code <= 0xFFFF else chr(code)

    ranges = "".join(
        written(low) if low == high else f"{written(low)}-{written(high)}" for low, high in refused
    )
    return f"^[^{ranges}]*$"


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
        if refused_in_task_id(char):
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
