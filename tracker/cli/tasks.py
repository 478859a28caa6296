"""The task commands of `tracker`: register, status, history, list, untrack.

Thin: parse, call one task use case, format. Output is taken literally (`escape`): an ID or a
URL is never read as rich markup.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tracker import db
from tracker.cli import tables
from tracker.cli.output import JsonFlag, err, friendly_errors, out
from tracker.cli.parsing import read_task_ids
from tracker.db.clock import database_now
from tracker.settings import get_settings
from tracker.states import TaskStatus
from tracker.tasks import queries
from tracker.tasks import register as register_use_case
from tracker.tasks import untrack as untrack_use_case
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.vetting import vet_webhook_url

__all__ = ["history", "list_", "register", "status", "untrack"]


@friendly_errors
def register(
    task_ids: Annotated[
        list[str], typer.Argument(help="TensorsLab task IDs; `-` reads one per line from stdin.")
    ],
    webhook: Annotated[
        str | None,
        typer.Option(
            help="Also POST how these tasks end (completed, failed, not_found, expired, "
            "cancelled) to this URL, signed with a secret printed once."
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Start tracking task IDs. All are stored, or none if any is invalid.

    Registering an ID that is already tracked is harmless: it changes nothing (but adds
    --webhook if the task does not send to that URL yet) and says so.
    """
    ids = list(read_task_ids(task_ids))
    settings = get_settings()
    policy = AddressPolicy.from_settings(settings)
    vetted = None if webhook is None else vet_webhook_url(webhook, policy)  # before the session
    if vetted is not None and vetted.warning:
        err.print(f"[yellow]warning:[/yellow] {escape(vetted.warning)}", highlight=False)
    with db.session_scope() as session:
        registrations = register_use_case.register(
            session,
            ids,
            first_poll_delay_s=settings.poll_first_delay_s,
            webhook_url=vetted,
            policy=policy,
        )
    secret = next((item.webhook_secret for item in registrations if item.webhook_secret), None)
    if json_output:
        tasks = [{"created": item.created, "task": item.task} for item in registrations]
        warning = vetted.warning if vetted is not None else None
        out.print_json(
            tables.to_json({"tasks": tasks, "webhook_secret": secret, "webhook_warning": warning})
        )
        return
    if secret is not None:
        out.print(
            f"webhook {escape(str(webhook))} signing secret (shown once, keep it): "
            f"[bold]{secret}[/bold]",
            highlight=False,
        )
    for item in registrations:
        task_id = escape(item.task.task_id)
        if item.created:
            out.print(f"registered [bold]{task_id}[/bold]", highlight=False)
            continue
        change = "webhook added" if item.webhook_added else "nothing changed"
        out.print(
            f"already tracked [bold]{task_id}[/bold] (status {item.task.status.value}); {change}",
            highlight=False,
        )


@friendly_errors
def status(
    task_id: Annotated[str, typer.Argument(help="The task ID.")], json_output: JsonFlag = False
) -> None:
    """Show one task: status, result URLs, messages, poll counts and times."""
    with db.read_scope() as session:
        task = queries.get_task(session, task_id)
    if json_output:
        out.print_json(tables.to_json(task))
    else:
        out.print(tables.task_table(task))


@friendly_errors
def history(
    task_id: Annotated[str, typer.Argument(help="The task ID.")], json_output: JsonFlag = False
) -> None:
    """Show every status change of a task, oldest first."""
    with db.read_scope() as session:
        transitions = queries.history(session, task_id)
    if json_output:
        out.print_json(tables.to_json(transitions))
    else:
        out.print(tables.history_table(task_id, transitions))


@friendly_errors
def list_(
    status_filter: Annotated[
        TaskStatus | None, typer.Option("--status", "-s", help="Only tasks in this status.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    json_output: JsonFlag = False,
) -> None:
    """List tracked tasks, newest first."""
    with db.read_scope() as session:
        tasks = queries.list_tasks(session, status=status_filter, limit=limit)
        pauses = queries.provider_pauses(session, now=database_now(session))
    if json_output:
        out.print_json(tables.to_json(tasks))
        return
    out.print(tables.tasks_table(tasks, title=f"{len(tasks)} tracked tasks (newest first)"))
    for pause in pauses:
        err.print(
            f"[yellow]polling of {escape(pause.provider)} is paused until "
            f"{pause.paused_until:%H:%M:%S} UTC:[/yellow] {escape(pause.reason)}",
            highlight=False,
        )


@friendly_errors
def untrack(
    task_id: Annotated[str, typer.Argument(help="The task ID.")], json_output: JsonFlag = False
) -> None:
    """Stop tracking a task: it becomes `cancelled` and is never polled again.

    A task that already completed, failed, expired or was not found is a conflict (exit 4).
    """
    with db.session_scope() as session:
        result = untrack_use_case.untrack(session, task_id)
    if json_output:
        out.print_json(tables.to_json({"changed": result.changed, "task": result.task}))
    elif result.changed:
        out.print(f"untracked [bold]{escape(task_id)}[/bold]: now cancelled", highlight=False)
    else:
        out.print(f"{escape(task_id)} is already cancelled; nothing changed", highlight=False)
