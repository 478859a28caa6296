"""What every `tracker` command shares for output: the consoles, the --json flag, and how
tracker's errors end a command (one line on stderr and an exit code per branch of the tree).

Exit codes: 0 success, 1 unavailable or misconfigured (and anything else), 2 bad input (typer's
usage errors too), 3 not found, 4 conflict. The HTTP API maps the same branches to 422, 404,
409 and 503 (`tracker.api.errors`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tracker.errors import Conflict, InvalidInput, NotFound, TrackerError

__all__ = ["EXIT_CODES", "JsonFlag", "err", "fail", "friendly_errors", "out"]

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

# The first branch that matches decides.
EXIT_CODES: tuple[tuple[type[TrackerError], int], ...] = (
    (InvalidInput, 2),
    (NotFound, 3),
    (Conflict, 4),
    (TrackerError, 1),
)

F = TypeVar("F", bound=Callable[..., Any])


def exit_code(error: TrackerError) -> int:
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))


def fail(message: str, *, code: int = 1) -> typer.Exit:
    """Print `message` (taken literally, never as markup) as an error; the Exit to raise."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def friendly_errors(command: F) -> F:
    """Turn tracker's own errors into one clear line and the exit code of their branch."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TrackerError as error:
            raise fail(str(error), code=exit_code(error)) from None

    return wrapper  # type: ignore[return-value]
