"""The webhook commands of `tracker`: `webhooks ...`, `deliveries ...`, `redeliver`.

Thin like the rest of the CLI: parse, call `webhooks.endpoints`, format. Secrets are printed
only by the commands that create them, once.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tracker import db
from tracker.cli import tables
from tracker.cli.output import JsonFlag, friendly_errors, out
from tracker.cli.parsing import parse_since
from tracker.db.clock import database_now
from tracker.errors import InvalidInput
from tracker.settings import get_settings
from tracker.webhooks import deliveries as deliveries_use_case
from tracker.webhooks import endpoints
from tracker.webhooks.events import ALL_EVENTS, DEFAULT_EVENTS
from tracker.webhooks.guard import AddressPolicy

__all__ = ["deliveries_app", "redeliver", "webhooks_app"]

webhooks_app = typer.Typer(
    help="Where webhooks go: add, list, remove, disable, enable, rotate.", no_args_is_help=True
)
deliveries_app = typer.Typer(
    help="Webhook deliveries and their attempts.", invoke_without_command=True
)


def _endpoint_table(views: list[endpoints.EndpointView]) -> Table:
    table = Table(header_style="bold", title=f"{len(views)} webhook endpoints")
    for column in ("id", "url", "events", "state", "since"):
        table.add_column(column, overflow="fold")
    for view in views:
        state = "enabled" if view.enabled else f"disabled: {view.disabled_reason}"
        if view.enabled and view.failing_since:
            state = f"failing since {view.failing_since:%Y-%m-%d %H:%M} UTC"
        table.add_row(
            str(view.id),
            Text(
                view.url + ("" if view.all_tasks else f"\n(for {_count(view.task_count, 'task')})")
            ),
            "\n".join(view.events),
            Text(state),
            f"{view.created_at:%Y-%m-%d %H:%M}",
        )
    return table


@webhooks_app.command("add")
@friendly_errors
def webhooks_add(
    url: Annotated[str, typer.Argument(help="http(s) URL that receives the POSTs.")],
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--events",
            "-e",
            help=(
                "Events to send (repeat or comma-separate). Default: "
                f"{', '.join(DEFAULT_EVENTS)}. All: {', '.join(ALL_EVENTS)}."
            ),
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Add an endpoint for every task. Its signing secret is printed now and never again.

    A URL has one endpoint: adding it again prints that endpoint (no secret), which now hears
    every task and these events too.
    """
    with db.session_scope() as session:
        created = endpoints.add_endpoint(
            session, url, events=events or (), policy=AddressPolicy.from_settings(get_settings())
        )
    if json_output:
        out.print_json(
            tables.to_json(
                {"endpoint": created.endpoint, "secret": created.secret, "created": created.created}
            )
        )
        return
    if not created.created:
        out.print(
            f"webhook endpoint [bold]{created.endpoint.id}[/bold] already sends to "
            f"{escape(created.endpoint.url)} (its secret was shown when it was created); "
            f"it hears every task; events: {', '.join(created.endpoint.events)}",
            highlight=False,
        )
        return
    out.print(
        f"added webhook endpoint [bold]{created.endpoint.id}[/bold]: "
        f"{escape(created.endpoint.url)}\n"
        f"events: {', '.join(created.endpoint.events)}\n"
        f"signing secret (shown once, keep it): [bold]{created.secret}[/bold]",
        highlight=False,
    )


@webhooks_app.command("list")
@friendly_errors
def webhooks_list(
    all_endpoints: Annotated[
        bool,
        typer.Option(
            "--all", help="Include endpoints for the tasks registered with them (--webhook)."
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """List endpoints (never their secrets)."""
    with db.read_scope() as session:
        views = endpoints.list_endpoints(session, include_per_task=all_endpoints)
    if json_output:
        out.print_json(tables.to_json(views))
    else:
        out.print(_endpoint_table(views))


@webhooks_app.command("remove")
@friendly_errors
def webhooks_remove(endpoint_id: Annotated[int, typer.Argument(help="Endpoint ID.")]) -> None:
    """Stop sending to an endpoint; its deliveries stay on record."""
    with db.session_scope() as session:
        view = endpoints.remove_endpoint(session, endpoint_id)
    out.print(f"removed webhook endpoint {view.id} ({escape(view.url)})", highlight=False)


@webhooks_app.command("disable")
@friendly_errors
def webhooks_disable(endpoint_id: Annotated[int, typer.Argument(help="Endpoint ID.")]) -> None:
    """Pause an endpoint: its deliveries are held, not sent, until it is enabled.

    Events that happen meanwhile are kept too; enabling sends them all, with their webhook-ids.
    """
    with db.session_scope() as session:
        view = endpoints.set_enabled(session, endpoint_id, False)
    out.print(f"disabled webhook endpoint {view.id} ({escape(view.url)})", highlight=False)


@webhooks_app.command("enable")
@friendly_errors
def webhooks_enable(endpoint_id: Annotated[int, typer.Argument(help="Endpoint ID.")]) -> None:
    """Resume an endpoint (also one tracker disabled after failures or a 410).

    Every delivery held while it was disabled is sent now, with its webhook-id.
    """
    with db.session_scope() as session:
        view = endpoints.set_enabled(session, endpoint_id, True)
    out.print(f"enabled webhook endpoint {view.id} ({escape(view.url)})", highlight=False)


@webhooks_app.command("rotate")
@friendly_errors
def webhooks_rotate(
    endpoint_id: Annotated[int, typer.Argument(help="Endpoint ID.")],
    overlap_hours: Annotated[
        float, typer.Option(min=0, max=24 * 30, help="How long the old secret also signs.")
    ] = 24,
) -> None:
    """New signing secret; during the overlap every message carries both signatures."""
    with db.session_scope() as session:
        created = endpoints.rotate_secret(session, endpoint_id, overlap_s=overlap_hours * 3600)
    out.print(
        f"new signing secret for endpoint {endpoint_id} (shown once): "
        f"[bold]{created.secret}[/bold]\nthe previous secret also signs until "
        f"{created.endpoint.rotating_until:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )


def _deliveries_table(views: list[deliveries_use_case.DeliveryView]) -> Table:
    table = Table(header_style="bold", title=f"{len(views)} deliveries (newest first)")
    for column in ("id", "task", "event", "status", "attempts", "last", "url"):
        table.add_column(column, overflow="fold")
    for view in views:
        last = str(view.last_status_code or "") or (view.last_error or "")
        table.add_row(
            str(view.id),
            Text(view.task_id),
            view.event_type,
            view.status,
            str(view.attempt_count),
            Text(last[:60]),
            Text(view.url),
        )
    return table


@deliveries_app.callback()
@friendly_errors
def deliveries(
    ctx: typer.Context,
    task_id: Annotated[str | None, typer.Option("--task", help="Only this task's.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, delivered or failed.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    json_output: JsonFlag = False,
) -> None:
    """List webhook deliveries; `tracker deliveries show ID` shows one with its attempts."""
    if ctx.invoked_subcommand is not None:
        return
    with db.read_scope() as session:
        views = deliveries_use_case.page_deliveries(
            session, task_id=task_id, status=status, limit=limit, with_attempts=json_output
        ).deliveries
    if json_output:
        out.print_json(tables.to_json(views))
    else:
        out.print(_deliveries_table(views))


@deliveries_app.command("show")
@friendly_errors
def deliveries_show(
    ref: Annotated[str, typer.Argument(help="Delivery number or its msg_ ID.")],
    json_output: JsonFlag = False,
) -> None:
    """One delivery: its body, its state, and every attempt."""
    with db.read_scope() as session:
        view = deliveries_use_case.get_delivery(session, ref)
    if json_output:
        out.print_json(tables.to_json(view))
        return
    out.print(
        f"delivery [bold]{view.id}[/bold] ({view.message_id}) {view.event_type} for task "
        f"{escape(view.task_id)} to {escape(view.url)}: [bold]{view.status}[/bold], "
        f"{_count(len(view.attempts), 'attempt')}"
        + (f" ({view.attempt_count} since the last redelivery)" if _redelivered(view) else "")
        + (f", next at {view.next_attempt_at:%H:%M:%S} UTC" if view.next_attempt_at else "")
        + (
            ", held until its endpoint is enabled"
            if view.status == "pending" and view.next_attempt_at is None
            else ""
        ),
        highlight=False,
    )
    out.print(Text(f"body: {view.payload}"), highlight=False, soft_wrap=True)
    table = Table(header_style="bold", title="attempts")
    for column in ("when (UTC)", "HTTP", "ms", "error", "response"):
        table.add_column(column, overflow="fold")
    for attempt in view.attempts:
        table.add_row(
            f"{attempt.attempted_at:%Y-%m-%d %H:%M:%S}",
            str(attempt.status_code or "-"),
            f"{attempt.duration_ms:.0f}",
            Text(attempt.error or ""),
            Text((attempt.response_excerpt or "")[:200]),
        )
    out.print(table)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _redelivered(view: deliveries_use_case.DeliveryView) -> bool:
    return view.attempt_count != len(view.attempts)  # a redelivery restarts the count


def redeliver(
    ref: Annotated[
        str | None, typer.Argument(help="Delivery number or msg_ ID to send again.")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Send again every failed delivery (with --since).")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="With --failed: created since (2h, 1d, or ISO time).")
    ] = None,
) -> None:
    """Send deliveries again, with the same webhook-id, through a fresh retry schedule."""
    if (ref is None) == (not failed):
        raise InvalidInput("give either a delivery ID or --failed --since TIME")
    if failed and since is None:
        raise InvalidInput("--failed needs --since TIME (e.g. --since 1d)")
    with db.session_scope() as session:
        now = database_now(session)
        if ref is not None:
            view = deliveries_use_case.redeliver(session, ref, now=now)
            out.print(
                f"delivery {view.id} ({view.message_id}) queued to be sent again", highlight=False
            )
        else:
            assert since is not None
            count = deliveries_use_case.redeliver_failed(
                session, since=parse_since(since, now=now), now=now
            )
            out.print(f"{count} failed deliveries queued to be sent again", highlight=False)
