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
from tracker.cli.parsing import ProviderOption, read_task_ids
from tracker.db.clock import database_now
from tracker.settings import get_settings
from tracker.states import TaskStatus
from tracker.tasks import queries
from tracker.tasks import register as register_use_case
from tracker.tasks import untrack as untrack_use_case
from tracker.tasks.ids import validate_provider
from tracker.tasks.schedule import PollPolicy
from tracker.upstream.names import DEFAULT_PROVIDER
from tracker.webhooks.guard import AddressPolicy

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
            "cancelled) to this URL, signed by the URL's one endpoint (made, and its secret "
            "printed once, if the URL has none)."
        ),
    ] = None,
    provider: ProviderOption = DEFAULT_PROVIDER,
    json_output: JsonFlag = False,
) -> None:
    """Start tracking task IDs. All are stored, or none if any is invalid.

    Registering an ID that is already tracked is harmless: it changes nothing (but adds
    --webhook if the task does not send to that URL yet) and says so.
    """
    validate_provider(provider)
    ids = list(read_task_ids(task_ids))
    settings = get_settings()
    with db.session_scope() as session:
        registrations = register_use_case.register(
            session,
            ids,
            first_poll_delay_s=PollPolicy.for_provider(settings, provider).first_delay_s,
            provider=provider,
            webhook_url=webhook,
            policy=AddressPolicy.from_settings(settings),
        )
    secret = next((item.webhook_secret for item in registrations if item.webhook_secret), None)
    endpoint_id = next(
        (item.webhook_endpoint_id for item in registrations if item.webhook_endpoint_id), None
    )
    if json_output:
        tasks = [{"created": item.created, "task": item.task} for item in registrations]
        out.print_json(
            tables.to_json({"tasks": tasks, "webhook_id": endpoint_id, "webhook_secret": secret})
        )
        return
    if secret is not None:
        out.print(
            f"webhook {escape(str(webhook))}: new endpoint {endpoint_id}, signing secret "
            f"(shown once, keep it): [bold]{secret}[/bold]",
            highlight=False,
        )
    elif endpoint_id is not None:
        out.print(
            f"webhook {escape(str(webhook))}: signed by endpoint {endpoint_id} "
            "(secret shown when it was created)",
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
    task_id: Annotated[str, typer.Argument(help="The task ID.")],
    provider: ProviderOption = DEFAULT_PROVIDER,
    json_output: JsonFlag = False,
) -> None:
    """Show one task: status, result URLs, messages, poll counts and times."""
    with db.read_scope() as session:
        task = queries.get_task(session, task_id, provider=provider)
    if json_output:
        out.print_json(tables.to_json(task))
    else:
        out.print(tables.task_table(task))


@friendly_errors
def history(
    task_id: Annotated[str, typer.Argument(help="The task ID.")],
    provider: ProviderOption = DEFAULT_PROVIDER,
    json_output: JsonFlag = False,
) -> None:
    """Show every status change of a task, oldest first."""
    with db.read_scope() as session:
        transitions = queries.history(session, task_id, provider=provider)
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
    provider: Annotated[
        str | None, typer.Option(help="Only this provider's tasks (tensorslab, tensorslab-image).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """List tracked tasks, newest first."""
    if provider is not None:
        validate_provider(provider)
    with db.read_scope() as session:
        tasks = queries.list_tasks(session, status=status_filter, provider=provider, limit=limit)
        pauses = queries.provider_pauses(session, now=database_now(session))
    if json_output:
        out.print_json(tables.to_json(tasks))
        return
    which = f"{provider} " if provider is not None else ""
    title = f"{len(tasks)} tracked {which}tasks (newest first)"
    out.print(tables.tasks_table(tasks, title=title))
    for pause in pauses:
        err.print(
            f"[yellow]polling of {escape(pause.provider)} is paused until "
            f"{pause.paused_until:%H:%M:%S} UTC:[/yellow] {escape(pause.reason)}",
            highlight=False,
        )


@friendly_errors
def untrack(
    task_id: Annotated[str, typer.Argument(help="The task ID.")],
    provider: ProviderOption = DEFAULT_PROVIDER,
    json_output: JsonFlag = False,
) -> None:
    """Stop tracking a task: it becomes `cancelled` and is never polled again.

    A task that already completed, failed, expired or was not found is a conflict (exit 4).
    """
    with db.session_scope() as session:
        result = untrack_use_case.untrack(session, task_id, provider=provider)
    if json_output:
        out.print_json(tables.to_json({"changed": result.changed, "task": result.task}))
    elif result.changed:
        out.print(f"untracked [bold]{escape(task_id)}[/bold]: now cancelled", highlight=False)
    else:
        out.print(f"{escape(task_id)} is already cancelled; nothing changed", highlight=False)
