"""What every `tracker` command shares for output: the consoles, the --json flag, tables that
stay one record per line in a pipe, and how tracker's errors end a command (one line on stderr
and an exit code per branch of the tree).

Output that is not a terminal (a pipe, a file) never wraps: `out` is as wide as any line, so an
ID, a URL or a secret stays whole on its line, and `print_table` writes a table there as
tab-separated lines (a header, then one record per line) with its title on stderr.

Exit codes: 0 success, 1 unavailable or misconfigured (and anything else), 2 bad input (typer's
usage errors too), 3 not found, 4 conflict. The HTTP API maps the same branches to 422, 404,
409 and 503 (`tracker.api.errors`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tracker.errors import Conflict, InvalidInput, NotFound, TrackerError

__all__ = [
    "EXIT_CODES",
    "PIPE_WIDTH",
    "JsonFlag",
    "err",
    "fail",
    "friendly_errors",
    "out",
    "plain_cell",
    "print_table",
]

# The width of output that is not a terminal: wider than any line tracker prints, so that
# nothing is wrapped or cut (rich would take a terminal's width from stdin or stderr, or 80).
PIPE_WIDTH = 1_000_000


class _Console(Console):
    """A console that is as wide as its lines when it does not write to a terminal."""

    def _get_size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size  # type: ignore[no-any-return]

    size = property(_get_size, Console.size.fset)  # type: ignore[attr-defined]


out = _Console()
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


def plain_cell(cell: RenderableType) -> str:
    """A table cell as plain text on one line (its newlines and tabs become spaces)."""
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = Text.from_markup(cell).plain  # as the table would have shown it
    else:
        text = str(cell)
    return " ".join(text.replace("\t", " ").splitlines())


def print_table(table: Table, *, header: bool = True) -> None:
    """`table` on a terminal; elsewhere its title on stderr, then tab-separated lines on
    stdout: the column names (unless `header` is False), then one line per row."""
    if out.is_terminal:
        out.print(table)
        return
    if table.title:
        err.print(Text(plain_cell(table.title)), highlight=False)
    lines = []
    if header and table.show_header:
        lines.append("\t".join(plain_cell(column.header) for column in table.columns))
    rows = zip(*(list(column.cells) for column in table.columns), strict=True)
    lines.extend("\t".join(plain_cell(cell) for cell in row) for row in rows)
    # Written as they are: rich would turn the tabs into spaces.
    out.file.write("".join(f"{line}\n" for line in lines))
    out.file.flush()
