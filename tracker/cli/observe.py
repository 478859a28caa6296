"""`tracker watch` and `tracker stats`: parse, call the use case, format. No SQL here."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tracker import db
from tracker.cli import tables
from tracker.cli.output import JsonFlag, err, out, print_table
from tracker.cli.parsing import ProviderOption, parse_since, read_task_ids
from tracker.db.clock import database_now
from tracker.errors import InvalidInput
from tracker.settings import get_settings
from tracker.states import TaskStatus
from tracker.tasks import adaptive, learning
from tracker.tasks import stats as stats_use_case
from tracker.tasks import watch as watch_use_case
from tracker.tasks.ids import validate_provider
from tracker.tasks.schedule import policies_by_provider
from tracker.upstream.names import DEFAULT_PROVIDER

__all__ = ["WATCH_ROWS_UP_TO", "format_duration", "stats", "watch", "watch_view"]

EXIT_INTERRUPTED = 130  # what a shell reports for Ctrl-C (128 + SIGINT)


def format_duration(seconds: float) -> str:
    """`4.2s`, `3m 05s`, `2h 07m`, `3d 04h`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def _snapshot(task_ids: list[str], provider: str) -> watch_use_case.WatchSnapshot:
    with db.read_scope() as session:
        return watch_use_case.watch_snapshot(
            session, task_ids, now=database_now(session), provider=provider
        )


# Above this many tasks, `watch` shows counts by status and a progress bar, not a row each:
# a table of a thousand rows scrolls past, and redrawing it every interval is slow.
WATCH_ROWS_UP_TO = 20


def watch_view(snapshot: watch_use_case.WatchSnapshot, *, live: bool = False) -> RenderableType:
    """What `watch` shows for `snapshot`: a row per task for a few, counts and a bar for many."""
    if len(snapshot.tasks) > WATCH_ROWS_UP_TO:
        return _watch_summary(snapshot, live=live)
    return _watch_table(snapshot, live=live)


def _watch_table(snapshot: watch_use_case.WatchSnapshot, *, live: bool = False) -> Table:
    done = sum(item.status.is_terminal for item in snapshot.tasks)
    table = Table(
        title=f"{done} of {len(snapshot.tasks)} tasks finished",
        caption="refreshing; Ctrl-C stops" if live else None,
        header_style="bold",
    )
    for column in ("task id", "status", "in status for", "polls", "result / message"):
        table.add_column(column, overflow="fold")
    for item in snapshot.tasks:
        task = item.task
        table.add_row(
            Text(task.task_id),
            tables.status_text(item.status),
            format_duration(item.time_in_status_s),
            str(task.poll_count),
            Text("\n".join(item.result_urls) or task.upstream_message or task.last_error or ""),
        )
    return table


def _watch_summary(snapshot: watch_use_case.WatchSnapshot, *, live: bool = False) -> Group:
    """Counts by status (those with any task) and a bar of how many finished."""
    counts = Counter(item.status for item in snapshot.tasks)
    total = len(snapshot.tasks)
    done = sum(count for status, count in counts.items() if status.is_terminal)
    table = Table(header_style="bold")
    table.add_column("status")
    table.add_column("tasks", justify="right")
    for status in TaskStatus:
        if counts[status]:
            table.add_row(tables.status_text(status), f"{counts[status]:,}")
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        ProgressBar(total=total, completed=done, width=40),
        Text(f"{done:,} of {total:,} tasks finished ({done / total:.0%})"),
    )
    parts: list[RenderableType] = [progress, table]
    if live:
        parts.append(Text("refreshing; Ctrl-C stops", style="dim"))
    return Group(*parts)


def _print_watch(snapshot: watch_use_case.WatchSnapshot) -> None:
    """The final view: on a terminal as shown live; into a pipe as plain lines."""
    if out.is_terminal:
        out.print(watch_view(snapshot))
    elif len(snapshot.tasks) > WATCH_ROWS_UP_TO:
        counts = Counter(item.status for item in snapshot.tasks)
        done = sum(count for status, count in counts.items() if status.is_terminal)
        err.print(f"{done:,} of {len(snapshot.tasks):,} tasks finished", highlight=False)
        summary = Table()
        summary.add_column("status")
        summary.add_column("tasks")
        for status in TaskStatus:
            if counts[status]:
                summary.add_row(Text(status.value), str(counts[status]))
        print_table(summary)
    else:
        print_table(_watch_table(snapshot))


def watch(
    task_ids: Annotated[
        list[str], typer.Argument(help="Task IDs; `-` reads one per line from stdin.")
    ],
    interval_s: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between refreshes.")
    ] = 2.0,
    timeout_s: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="Give up (exit 1) after this many seconds."),
    ] = None,
    provider: ProviderOption = DEFAULT_PROVIDER,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Show nothing while waiting; print one JSON snapshot of every task at the end "
            "(when all are terminal, or at the timeout).",
        ),
    ] = False,
) -> None:
    """Show tasks live until every one has reached a terminal status.

    For each task: status, how long it has been in it, polls, result URLs or message; for more
    than 20 tasks, counts by status and a progress bar instead.
    Exits 0 when all are terminal, 1 at --timeout, 130 when stopped with Ctrl-C.
    """
    ids = list(read_task_ids(task_ids))
    snapshot = _snapshot(ids, provider)  # unknown IDs fail here, before any output
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # Transient: the live view gives way to one final table, printed the same way on a terminal
    # and into a pipe or a file (where a live view shows nothing).
    live = Live(console=out, auto_refresh=False, transient=True)
    try:
        with nullcontext() if json_output else live:
            while not snapshot.all_terminal:
                if not json_output:
                    live.update(watch_view(snapshot, live=True), refresh=True)
                pause = (
                    interval_s if deadline is None else min(interval_s, deadline - time.monotonic())
                )
                if pause <= 0:
                    break
                time.sleep(pause)
                snapshot = _snapshot(ids, provider)
    except KeyboardInterrupt:
        if not json_output:
            _print_watch(snapshot)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if json_output:
        out.print_json(tables.to_json(snapshot))
    else:
        _print_watch(snapshot)
    if not snapshot.all_terminal:
        waiting = [item for item in snapshot.tasks if not item.status.is_terminal]
        shown = ", ".join(f"{item.task.task_id} ({item.status.value})" for item in waiting[:10])
        more = f" and {len(waiting) - 10} more" if len(waiting) > 10 else ""
        err.print(
            f"[red]error:[/red] timed out after {timeout_s:g} s; {len(waiting)} of "
            f"{len(snapshot.tasks)} tasks not finished: {escape(shown)}{more}",
            highlight=False,
        )
        raise typer.Exit(1)


_FIGURE_ROWS = (
    ("polls per task", "polls_per_task"),
    ("registration → result", "time_to_result_s"),
    ("detection window", "detection_window_s"),
)


def _stats_tables(figures: stats_use_case.Stats) -> Group:
    scope = []
    if figures.provider:
        scope.append(f"provider {figures.provider}")
    if figures.since:
        scope.append(f"registered since {figures.since:%Y-%m-%d %H:%M:%S} UTC")
    counts = Table(
        title=Text("tasks by status" + (f" ({', '.join(scope)})" if scope else "")),
        header_style="bold",
    )
    counts.add_column("status")
    counts.add_column("tasks", justify="right")
    for status in TaskStatus:
        counts.add_row(tables.status_text(status), str(figures.counts[status]))
    counts.add_row(Text("total", style="bold"), Text(str(figures.total), style="bold"))

    table = Table(
        title=f"over the {figures.finished} tasks that ended completed or failed",
        header_style="bold",
    )
    table.add_column("figure")
    for column in ("mean", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="right")
    for label, field in _FIGURE_ROWS:
        distribution = getattr(figures, field)
        if distribution is None:
            table.add_row(label, *(["-"] * 5))
            continue
        values = (
            distribution.mean,
            distribution.p50,
            distribution.p95,
            distribution.p99,
            distribution.max,
        )
        if field == "polls_per_task":
            cells = [f"{distribution.mean:.1f}", *(f"{value:.0f}" for value in values[1:])]
        else:
            cells = [format_duration(value) for value in values]
        table.add_row(label, *cells)
    notes = Text(
        "polls per task: every request sent for the task, failed ones included "
        f"({figures.total_polls} polls for all {figures.total} tasks, live ones included).\n"
        "registration → result: from registration to the poll that saw completed or failed.\n"
        "detection window: from the last poll that saw the task unfinished (or its "
        "registration) to the poll that saw it finished. Upstream never says when a task "
        "finished: it did inside this window, so the detection delay is at most this, about "
        "half of it on average.\n"
        "Percentiles are nearest-rank.",
        style="dim",
    )
    if len(figures.by_provider) < 2:
        return Group(counts, table, notes)
    return Group(counts, table, _by_provider_table(figures), notes)


def _by_provider_table(figures: stats_use_case.Stats) -> Table:
    """One row per provider: its tasks, results and the figures' p50 / p95."""
    table = Table(title="by provider", header_style="bold")
    table.add_column("provider", no_wrap=True)
    for column in ("tasks", "completed", "failed", "polls per task (mean)"):
        table.add_column(column, justify="right")
    for column in ("registration → result p50 / p95", "detection window p95"):
        table.add_column(column, justify="right")
    for name, each in figures.by_provider.items():
        polls = each.polls_per_task
        result = each.time_to_result_s
        window = each.detection_window_s
        table.add_row(
            Text(name),
            str(each.total),
            str(each.counts[TaskStatus.COMPLETED]),
            str(each.counts[TaskStatus.FAILED]),
            "-" if polls is None else f"{polls.mean:.1f}",
            "-"
            if result is None
            else f"{format_duration(result.p50)} / {format_duration(result.p95)}",
            "-" if window is None else format_duration(window.p95),
        )
    return table


def stats(
    since: Annotated[
        str | None,
        typer.Option(help="Only tasks registered since then: 24h, 30m, 7d, or an ISO time."),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="Only this provider's tasks (tensorslab, tensorslab-image)."),
    ] = None,
    schedule: Annotated[
        bool,
        typer.Option(
            "--schedule",
            help="Instead: what the adaptive schedule learned, per bucket of alike tasks.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Counts by status, polls per task, time to result, and a bound on detection delay.

    Percentiles are nearest-rank, over the tasks that ended completed or failed. Upstream never
    says when a task finished, so the detection delay itself is not known: the `detection
    window` (last poll that saw it unfinished -> poll that saw it finished) bounds it.

    With --schedule: the learned buckets (provider, model, resolution, duration), their
    samples, quantiles of the completion ages and the early age the schedule uses.
    """
    if provider is not None:
        validate_provider(provider)
    if schedule:
        if since is not None:
            raise InvalidInput("--since does not apply to --schedule (the learned buckets)")
        _schedule(provider, json_output=json_output)
        return
    with db.read_scope() as session:
        now = database_now(session)
        moment = None if since is None else parse_since(since, now=now)
        figures = stats_use_case.compute_stats(session, now=now, provider=provider, since=moment)
    if json_output:
        out.print_json(tables.to_json(figures))
    else:
        out.print(_stats_tables(figures))


def _schedule(provider: str | None, *, json_output: bool) -> None:
    settings = get_settings()
    adaptive_on = settings.poll_schedule == "adaptive"
    with db.read_scope() as session:
        buckets = learning.learned_schedule(
            session,
            policies=policies_by_provider(settings),
            adaptive_on=adaptive_on,
            provider=provider,
        )
    if json_output:
        out.print_json(tables.to_json({"schedule": settings.poll_schedule, "buckets": buckets}))
        return
    table = Table(
        title=f"learned buckets ({len(buckets)}; TRACKER_POLL_SCHEDULE={settings.poll_schedule})",
        header_style="bold",
    )
    for column in ("provider", "model", "resolution", "duration"):
        table.add_column(column, no_wrap=True)
    for column in ("samples", "p01", "p10", "p50", "p90", "early age", "2nd poll at"):
        table.add_column(column, justify="right")
    for row in buckets:
        ages = (row.p01_s, row.p10_s, row.p50_s, row.p90_s, row.early_age_s)
        table.add_row(
            Text(row.provider),
            Text(row.model),
            Text(row.resolution),
            f"{row.duration_s}s" if row.duration_s else "-",
            f"{row.samples:,}",
            *("-" if age is None else format_duration(age) for age in ages),
            "default"
            if row.second_poll_at_age_s is None
            else format_duration(row.second_poll_at_age_s),
        )
    print_table(table)
    if not any(row.early_age_s is not None for row in buckets):
        lag_s = settings.poll_lease_s + learning.REFRESH_EVERY_S
        err.print(
            Text(
                f"no bucket has learned an early age yet: a bucket needs {adaptive.MIN_SAMPLES} "
                f"completed tasks, and a task is learned from about {format_duration(lag_s)} "
                "after it completed (beat's tracker.learn); until then every task follows "
                "the default schedule"
            ),
            highlight=False,
        )
    err.print(
        Text(
            "Ages after registration at which the bucket's tasks finished, as far as polls "
            f"tell; quantiles over the last {adaptive.SAMPLE_SIZE} (nearest-rank). "
            f"early age: p01 less {adaptive.MARGIN_RATIO:.0%}, once a bucket has "
            f"{adaptive.MIN_SAMPLES} samples. 2nd poll at: when a task of the bucket is polled "
            "after its first poll (default: the TRACKER_POLL_* schedule).",
            style="dim",
        )
    )
