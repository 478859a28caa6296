"""`tracker resume`, `prune` and `forget`: parse, call the use case, format. No SQL here.

Also how a provider's pause reads on a terminal (`pause_line`), for `list` and `status`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from tracker import db
from tracker.cli import tables
from tracker.cli.output import JsonFlag, out
from tracker.cli.parsing import ProviderOption
from tracker.db.clock import database_now
from tracker.errors import InvalidInput
from tracker.settings import get_settings
from tracker.tasks import forget as forget_use_case
from tracker.tasks import pauses, retention
from tracker.tasks.erase import Erased
from tracker.tasks.ids import DEFAULT_PROVIDER
from tracker.tasks.views import ProviderPauseView
from tracker.upstream.names import PROVIDERS

__all__ = ["forget", "pause_line", "prune", "resume"]


def pause_line(pause: ProviderPauseView, *, now: datetime | None = None) -> str:
    """One line (rich markup, values escaped) saying that polling is paused, why, until when."""
    now = now or datetime.now(UTC)
    since = f" since {pause.started_at:%H:%M:%S}" if pause.started_at else ""
    if pause.paused_until > now:
        when = f"until {pause.paused_until:%H:%M:%S} UTC"
    else:
        when = "(its time is up: the next poll decides)"
    return (
        f"[yellow]polling of {escape(pause.provider)} is paused ({escape(pause.cause)}){since} "
        f"{when}:[/yellow] {escape(pause.reason)}; "
        f"{escape(pauses.resume_command(pause.provider))} lifts it now"
    )


def resume(
    provider: Annotated[
        str,
        typer.Argument(
            help=f"The provider whose polling to resume: {' or '.join(PROVIDERS)}.",
        ),
    ] = DEFAULT_PROVIDER,
    json_output: JsonFlag = False,
) -> None:
    """Lift a provider's pause now (e.g. after buying credits or fixing the API key).

    Its tasks held back by the pause become due at once. A provider that is not paused is a
    conflict (exit 4), and nothing changes.
    """
    with db.session_scope() as session:
        resumed = pauses.resume(session, provider, now=database_now(session))
    if json_output:
        out.print_json(tables.to_json(resumed))
        return
    out.print(
        f"resumed polling of [bold]{escape(resumed.provider)}[/bold] (was paused: "
        f"{escape(resumed.cause)}); {resumed.tasks_due} held-back "
        f"{'task is' if resumed.tasks_due == 1 else 'tasks are'} due now",
        highlight=False,
        soft_wrap=True,
    )


def _counts(erased: Erased) -> str:
    return (
        f"{erased.transitions} transitions, {erased.deliveries} deliveries, "
        f"{erased.attempts} attempts, {erased.subscriptions} webhook subscriptions"
    )


def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Remove tasks that ended before then: a duration ago (90d, 12h, 2w) or an ISO "
            "time. Default: TRACKER_RETENTION_DAYS.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would go; change nothing.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Remove tasks that ended before a cutoff, with their history, in small batches.

    Never a task still tracked, nor one with a delivery still pending. Held deliveries (for a
    disabled endpoint) created before the cutoff are marked failed first.
    """
    days = get_settings().retention_days
    if older_than is None and days == 0:
        raise InvalidInput(
            "retention is off (TRACKER_RETENTION_DAYS=0): give --older-than, e.g. 90d"
        )
    with db.read_scope() as session:
        now = database_now(session)
    cutoff = retention.cutoff_from(older_than or f"{days}d", now=now)
    report = retention.prune(db.session_scope, cutoff=cutoff, now=now, dry_run=dry_run)
    if json_output:
        out.print_json(tables.to_json(report))
        return
    verb = "would remove" if dry_run else "removed"
    held = "would be marked" if dry_run else "marked"
    out.print(
        f"{verb} {report.erased.tasks} tasks that ended before "
        f"{report.cutoff:%Y-%m-%d %H:%M:%S} UTC ({_counts(report.erased)}); "
        f"{report.held_failed} held deliveries {held} failed first; "
        f"{report.kept_pending} tasks kept for a pending delivery"
        + ("; nothing changed (--dry-run)" if dry_run else ""),
        highlight=False,
        soft_wrap=True,
    )


def forget(
    task_id: Annotated[str, typer.Argument(help="The task ID.")],
    provider: ProviderOption = DEFAULT_PROVIDER,
    json_output: JsonFlag = False,
) -> None:
    """Erase one ended task and its whole history (for data deletion requests).

    Its transitions, deliveries (unsent ones too), attempts and webhook subscriptions go. A task
    still tracked is refused (exit 4): untrack it first.
    """
    with db.session_scope() as session:
        forgotten = forget_use_case.forget(session, task_id, provider=provider)
    if json_output:
        out.print_json(tables.to_json(forgotten))
        return
    which = "" if provider == DEFAULT_PROVIDER else f"{provider}, "
    out.print(
        f"forgot [bold]{escape(task_id)}[/bold] ({which}{forgotten.status.value}): erased it with "
        f"{_counts(forgotten.erased)}",
        highlight=False,
        soft_wrap=True,
    )
