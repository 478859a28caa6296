"""`tracker doctor`: run the checks of `tracker.ops.doctor`, one line each; exit 1 if any fails."""

from __future__ import annotations

import typer
from rich.markup import escape

from tracker.cli import tables
from tracker.cli.output import JsonFlag, out
from tracker.ops.doctor import FAIL, OK, SKIP, WARN, run_checks

__all__ = ["doctor"]

_LABELS = {
    OK: "[green]ok  [/green]",
    WARN: "[yellow]warn[/yellow]",
    FAIL: "[red]FAIL[/red]",
    SKIP: "[dim]skip[/dim]",
}


def doctor(json_output: JsonFlag = False) -> None:
    """Check everything tracker needs: settings, database and migrations, broker, upstream and
    the key, beat, workers, overdue tasks, webhook endpoints, provider pauses, free disk.

    One line per check, with what to do when it fails. Exits 1 when any check fails.
    """
    results = run_checks()
    failed = [result for result in results if result.status == FAIL]
    if json_output:
        out.print_json(tables.to_json({"ok": not failed, "checks": results}))
    else:
        for result in results:
            fix = f" [bold]→[/bold] {escape(result.fix)}" if result.fix else ""
            out.print(
                f"{_LABELS[result.status]}  {result.name}: {escape(result.detail)}{fix}",
                highlight=False,
                soft_wrap=True,
            )
        summary = (
            f"{len(failed)} of {len(results)} checks failed" if failed else "all checks passed"
        )
        out.print(summary, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
