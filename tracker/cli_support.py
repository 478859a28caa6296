"""What every `tracker` command shares: the consoles, the --json flag, and error handling."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from tracker.errors import InvalidInput, TrackerError
from tracker.settings import SettingsError

__all__ = ["JsonFlag", "err", "friendly_errors", "out", "read_task_ids"]

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(command: F) -> F:
    """Turn tracker's own errors into one clear line: exit 2 for bad input, 1 otherwise."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InvalidInput as error:
            err.print(f"[red]error:[/red] {error}", highlight=False)
            raise typer.Exit(2) from None
        except (TrackerError, SettingsError) as error:
            err.print(f"[red]error:[/red] {error}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def read_task_ids(task_ids: Iterable[str]) -> Iterator[str]:
    """The IDs given, with `-` replaced by the non-blank lines of stdin (stripped)."""
    for task_id in task_ids:
        if task_id == "-":
            yield from (line.strip() for line in sys.stdin if line.strip())
        else:
            yield task_id
