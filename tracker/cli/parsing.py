"""Reading what people type: task IDs (`-` for stdin), times (`2h`, `1d`, ISO 8601),
`--metadata` (a JSON object) and the `--provider` option of the commands that name tasks."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from tracker.errors import InvalidInput, InvalidMetadata
from tracker.upstream.names import PROVIDERS

__all__ = ["ProviderOption", "parse_metadata", "parse_since", "read_task_ids"]

# A task is identified by its provider and its ID: the same ID may be a video and an image task.
ProviderOption = Annotated[
    str,
    typer.Option(
        "--provider",
        help=f"Whose task ID it is: {' or '.join(PROVIDERS)} "
        f"(TensorsLab's video tasks, the default, or its image tasks).",
    ),
]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def read_task_ids(task_ids: Iterable[str]) -> Iterator[str]:
    """The IDs given, with `-` replaced by the non-blank lines of stdin (stripped)."""
    for task_id in task_ids:
        if task_id == "-":
            yield from (line.strip() for line in sys.stdin if line.strip())
        else:
            yield task_id


def parse_since(value: str, *, now: datetime) -> datetime:
    """`2h`, `30m`, `1d`, `45s` ago, or an ISO 8601 time (UTC when no offset is given)."""
    text = value.strip()
    match = _RELATIVE.match(text)
    try:
        if match:
            return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"--since {value!r} is out of range") from None
    except ValueError:
        raise InvalidInput(
            f"--since {value!r} is neither a duration (30m, 2h, 1d) nor an ISO time "
            "(2026-11-29T10:00)"
        ) from None


def parse_metadata(value: str | None) -> dict[str, Any] | None:
    """`--metadata`: a JSON object (None when not given). Anything else is bad input."""
    if value is None:
        return None
    try:
        parsed = json.loads(value, parse_constant=_refuse_constant)
    except ValueError as error:
        raise InvalidMetadata(f"--metadata is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise InvalidMetadata(
            f"--metadata must be a JSON object such as '{{\"order\": 42}}', "
            f"not {_json_kind(parsed)}"
        )
    return parsed


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN and Infinity; JSON not


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")
