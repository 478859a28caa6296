"""The task commands of `tracker`: register, status, history, list, untrack.

Thin: parse, call one task use case, format. Output is taken literally (`escape`): an ID or a
URL is never read as rich markup.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tracker import db
from tracker.cli import listing, operate, tables
from tracker.cli.output import JsonFlag, err, friendly_errors, out, print_table
from tracker.cli.parsing import ProviderOption, parse_metadata, read_task_ids
from tracker.db.clock import database_now
from tracker.ops import overdue
from tracker.settings import get_settings
from tracker.states import TaskStatus
from tracker.tasks import pauses, queries
from tracker.tasks import register as register_use_case
from tracker.tasks import untrack as untrack_use_case
from tracker.tasks.ids import validate_provider
from tracker.tasks.schedule import PollPolicy
from tracker.tasks.views import Registration
from tracker.upstream.names import DEFAULT_PROVIDER
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.vetting import vet_webhook_url

__all__ = ["REGISTER_LINES_UP_TO", "history", "list_", "register", "status", "untrack"]


# Up to this many IDs, `register` names each one; beyond it only the summary line (and the
# webhook secret), unless --verbose: 5,000 lines of "registered ..." hide what matters.
REGISTER_LINES_UP_TO = 10


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
    metadata: Annotated[
        str | None,
        typer.Option(
            help="A JSON object stored with each task and returned with it (listings, "
            "webhooks), e.g. '{\"order\": 42}'; at most 16 KiB.",
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help=f"One line per task ID even for more than {REGISTER_LINES_UP_TO} IDs.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Start tracking task IDs. All are stored, or none if any is invalid.

    Registering an ID that is already tracked is harmless: it changes nothing (but adds
    --webhook if the task does not send to that URL yet) and says so. Ends with one summary
    line (registered, already tracked); the line per ID is printed for up to
    10 IDs, or with --verbose.
    """
    validate_provider(provider)
    ids = list(read_task_ids(task_ids))
    fields = parse_metadata(metadata)
    settings = get_settings()
    policy = AddressPolicy.from_settings(settings)
    vetted = None if webhook is None else vet_webhook_url(webhook, policy)  # before the session
    if vetted is not None and vetted.warning:
        err.print(f"[yellow]warning:[/yellow] {escape(vetted.warning)}", highlight=False)
    with db.session_scope() as session:
        registrations = register_use_case.register(
            session,
            ids,
            first_poll_delay_s=PollPolicy.for_provider(settings, provider).first_delay_s,
            provider=provider,
            metadata=fields,
            webhook_url=vetted,
            policy=policy,
        )
    secret = next((item.webhook_secret for item in registrations if item.webhook_secret), None)
    endpoint_id = next(
        (item.webhook_endpoint_id for item in registrations if item.webhook_endpoint_id), None
    )
    if json_output:
        tasks = [{"created": item.created, "task": item.task} for item in registrations]
        warning = vetted.warning if vetted is not None else None
        out.print_json(
            tables.to_json(
                {
                    "tasks": tasks,
                    "webhook_id": endpoint_id,
                    "webhook_secret": secret,
                    "webhook_warning": warning,
                }
            )
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
            soft_wrap=True,
        )
    if verbose or len(registrations) <= REGISTER_LINES_UP_TO:
        for item in registrations:
            _print_registration(item)
    out.print(_registration_summary(registrations, webhook=webhook), highlight=False)


def _print_registration(item: Registration) -> None:
    task_id = escape(item.task.task_id)
    if item.created:
        out.print(f"registered [bold]{task_id}[/bold]", highlight=False, soft_wrap=True)
        return
    change = "webhook added" if item.webhook_added else "nothing changed"
    out.print(
        f"already tracked [bold]{task_id}[/bold] (status {item.task.status.value}); {change}",
        highlight=False,
        soft_wrap=True,
    )


def _registration_summary(registrations: list[Registration], *, webhook: str | None) -> str:
    created = sum(item.created for item in registrations)
    line = f"registered {created:,}, already tracked {len(registrations) - created:,}"
    if webhook is not None:
        line += f"; webhook added to {sum(item.webhook_added for item in registrations):,}"
    return line


@friendly_errors
def status(
    task_id: Annotated[str, typer.Argument(help="The task ID.")],
    provider: ProviderOption = DEFAULT_PROVIDER,
    json_output: JsonFlag = False,
) -> None:
    """Show one task: status, result URLs, messages, poll counts and times."""
    with db.read_scope() as session:
        now = database_now(session)
        [task] = pauses.annotate(
            session, [queries.get_task(session, task_id, provider=provider)], now=now
        )
        note = overdue.task_note(session, task, now=now, settings=get_settings())
    if json_output:
        out.print_json(tables.to_json(task))
    else:
        print_table(tables.task_table(task))
    if note is not None:
        err.print(f"[yellow]{escape(note)}[/yellow]", highlight=False)


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
        print_table(tables.history_table(task_id, transitions))


@friendly_errors
def list_(
    status_filter: Annotated[
        TaskStatus | None, typer.Option("--status", "-s", help="Only tasks in this status.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=10_000, help="Tasks per page.")
    ] = 50,
    provider: Annotated[
        str | None, typer.Option(help="Only this provider's tasks (tensorslab, tensorslab-image).")
    ] = None,
    cursor: Annotated[
        str | None,
        typer.Option(help="Continue after a previous page (the `next page:` hint it printed)."),
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Every matching task, page after page.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """List tracked tasks, newest first, a page at a time ("50 of 5,002").

    When there is more, a hint on stderr gives the command for the next page (--cursor);
    --all prints every page. Into a pipe or a file, one task per tab-separated line.
    """
    if provider is not None:
        validate_provider(provider)
    with db.read_scope() as session:
        total = queries.count_tasks(session, status=status_filter, provider=provider)
        with_provider = _any_other_provider(
            queries.count_by_provider(session, status=status_filter), provider
        )
        now = database_now(session)
        paused = queries.provider_pauses(session, now=now)
        note = overdue.list_note(session, now=now, settings=get_settings())
    what = _what(status_filter, provider)
    if all_pages:
        _list_all(
            status_filter,
            provider,
            cursor,
            title=f"{total:,} {what} (newest first)",
            with_provider=with_provider,
            json_output=json_output,
        )
    else:
        tasks, next_cursor = listing.read_tasks(
            status=status_filter, provider=provider, limit=limit, cursor=cursor
        )
        if json_output:
            out.print_json(tables.to_json(tasks))
        else:
            print_table(
                tables.tasks_table(
                    tasks,
                    title=f"{len(tasks):,} of {total:,} {what} (newest first)",
                    with_provider=with_provider,
                )
            )
        if next_cursor is not None:
            again = ["tracker list"]
            if status_filter is not None:
                again.append(f"--status {status_filter.value}")
            if provider is not None:
                again.append(f"--provider {provider}")
            if limit != 50:
                again.append(f"--limit {limit}")
            err.print(
                f"next page: {' '.join(again)} --cursor {next_cursor}",
                highlight=False,
                markup=False,
            )
    for pause in paused:
        err.print(operate.pause_line(pause), highlight=False)
    if note is not None:
        err.print(f"[yellow]{escape(note)}[/yellow]", highlight=False)


def _what(status_filter: TaskStatus | None, provider: str | None) -> str:
    """What a listing holds, for its title: `tracked tasks`, `completed tensorslab-image tasks`."""
    words = [status_filter.value if status_filter else "tracked"]
    if provider is not None:
        words.append(provider)
    return " ".join([*words, "tasks"])


def _any_other_provider(by_provider: dict[str, int], provider: str | None) -> bool:
    """Whether the listing holds a task that is not a video task, so that every page (and the
    one header of a piped --all) has the same `provider` column."""
    if provider is not None:
        return provider != DEFAULT_PROVIDER
    return any(count for name, count in by_provider.items() if name != DEFAULT_PROVIDER)


def _list_all(
    status_filter: TaskStatus | None,
    provider: str | None,
    cursor: str | None,
    *,
    title: str,
    with_provider: bool,
    json_output: bool,
) -> None:
    """Every page after `cursor`, each printed as soon as it is read: a JSON array written as it
    grows, or one table per page (header once into a pipe)."""
    shown = 0
    pages = listing.every_page(status=status_filter, provider=provider, cursor=cursor)
    for number, tasks in enumerate(pages):
        if json_output:
            if tasks:
                items = ",\n".join(tables.to_json(task) for task in tasks)
                out.file.write(("[\n" if shown == 0 else ",\n") + items)
        else:
            table = tables.tasks_table(
                tasks, title=title if number == 0 else None, with_provider=with_provider
            )
            print_table(table, header=number == 0)
        shown += len(tasks)
    if json_output:
        out.file.write("\n]\n" if shown else "[]\n")
        out.file.flush()
    else:
        err.print(f"{shown:,} tasks listed", highlight=False)


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
