"""The webhook commands of `tracker`: `webhooks ...`, `deliveries ...`, `redeliver`.

Thin like the rest of the CLI: parse, call `webhooks.endpoints`, format. Secrets are printed
only by the commands that create them, once; custom header values never (they may be
credentials): listings show the names only.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tracker import db
from tracker.cli import tables
from tracker.cli.output import JsonFlag, err, friendly_errors, out
from tracker.cli.parsing import parse_since
from tracker.db.clock import database_now
from tracker.errors import InvalidInput
from tracker.settings import get_settings
from tracker.webhooks import deliveries as deliveries_use_case
from tracker.webhooks import endpoints, probe
from tracker.webhooks.events import ALL_EVENTS, DEFAULT_EVENTS
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session
from tracker.webhooks.headers import parse_header
from tracker.webhooks.vetting import vet_webhook_url

__all__ = ["deliveries_app", "redeliver", "webhooks_app"]

webhooks_app = typer.Typer(
    help="Where webhooks go: add, list, test, headers, remove, disable, enable, rotate.",
    no_args_is_help=True,
)
deliveries_app = typer.Typer(
    help="Webhook deliveries and their attempts.", invoke_without_command=True
)


def _endpoint_table(views: list[endpoints.EndpointView]) -> Table:
    table = Table(header_style="bold", title=f"{len(views)} webhook endpoints")
    with_headers = any(view.header_names for view in views)  # else no column for them
    for column in ("id", "url", "events", *(["headers"] if with_headers else []), "state", "since"):
        table.add_column(column, overflow="fold")
    for view in views:
        state = "enabled" if view.enabled else f"disabled: {view.disabled_reason}"
        if view.enabled and view.failing_since:
            state = f"failing since {view.failing_since:%Y-%m-%d %H:%M} UTC"
        # Header values may be credentials: only their names are shown.
        headers = [Text("\n".join(f"{name}: ***" for name in view.header_names))]
        table.add_row(
            str(view.id),
            Text(
                view.url + ("" if view.all_tasks else f"\n(for {_count(view.task_count, 'task')})")
            ),
            "\n".join(view.events),
            *(headers if with_headers else []),
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
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            help="A header sent with every attempt, 'Name: value' (repeatable). Not one of "
            "webhook-id/-signature/-timestamp, Host, Content-Length, Content-Type. Values are "
            "never shown again (they may be credentials).",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Add an endpoint for every task. Its signing secret is printed now and never again.

    A URL has one endpoint: adding it again prints that endpoint (no secret), which now hears
    every task and these events too; its headers stay as they were (`webhooks headers ID`
    replaces them). A URL whose host does not resolve right now is added, with a warning:
    every send resolves it again, and attempts fail (recorded, retried) until it does.
    """
    headers = [parse_header(item) for item in header or ()]
    vetted = vet_webhook_url(url, AddressPolicy.from_settings(get_settings()))  # DNS: no session
    with db.session_scope() as session:
        created = endpoints.add_endpoint(
            session,
            vetted,
            events=events or (),
            headers=headers,
            policy=AddressPolicy.from_settings(get_settings()),
        )
    if vetted.warning:
        err.print(f"[yellow]warning:[/yellow] {escape(vetted.warning)}", highlight=False)
    if json_output:
        out.print_json(
            tables.to_json(
                {
                    "endpoint": created.endpoint,
                    "secret": created.secret,
                    "created": created.created,
                    "headers_unchanged": created.headers_unchanged,
                    "warning": vetted.warning,
                }
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
        if created.headers_unchanged:
            err.print(
                f"[yellow]note:[/yellow] the headers given were not applied: endpoint "
                f"{created.endpoint.id} keeps its own "
                f"({escape(', '.join(created.endpoint.header_names) or 'none')}); "
                f"`tracker webhooks headers {created.endpoint.id} --header ...` replaces them",
                highlight=False,
            )
        return
    names = ", ".join(created.endpoint.header_names)
    out.print(
        f"added webhook endpoint [bold]{created.endpoint.id}[/bold]: "
        f"{escape(created.endpoint.url)}\n"
        f"events: {', '.join(created.endpoint.events)}\n"
        + (f"headers: {escape(names)}\n" if names else "")
        + f"signing secret (shown once, keep it): [bold]{created.secret}[/bold]",
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


@webhooks_app.command("headers")
@friendly_errors
def webhooks_headers(
    endpoint_id: Annotated[int, typer.Argument(help="Endpoint ID.")],
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="'Name: value' (repeatable); none removes them all."),
    ] = None,
) -> None:
    """Replace an endpoint's custom headers (the whole set; values are never shown)."""
    headers = [parse_header(item) for item in header or ()]
    with db.session_scope() as session:
        view = endpoints.update_endpoint(
            session,
            endpoint_id,
            policy=AddressPolicy.from_settings(get_settings()),
            headers=headers,
        )
    names = ", ".join(view.header_names) or "none"
    out.print(f"webhook endpoint {view.id} headers: {escape(names)}", highlight=False)


@webhooks_app.command("test")
@friendly_errors
def webhooks_test(
    endpoint_id: Annotated[int, typer.Argument(help="Endpoint ID.")],
    json_output: JsonFlag = False,
) -> None:
    """Send a signed webhook.test event to the endpoint now and show how it answered.

    It goes the way every webhook goes (signed with the endpoint's secrets, its headers, the
    address guard of this process's TRACKER_WEBHOOK_ALLOWED_NETWORKS), once, without retries;
    the delivery stays listed. Exit 0 when the endpoint answered 2xx, 1 otherwise.
    """
    settings = get_settings()
    with guarded_session(AddressPolicy.from_settings(settings)) as http:
        view = probe.send_test_event(
            endpoint_id,
            session_scope=db.session_scope,
            http=http,
            timeout_s=settings.webhook_timeout_s,
            disable_after_s=settings.webhook_disable_after_s,
        )
    if json_output:
        out.print_json(tables.to_json(view))
    else:
        out.print(
            f"{view.event_type} to {escape(view.url)}: delivery {view.id} ({view.message_id})",
            highlight=False,
            soft_wrap=True,
        )
        for attempt in view.attempts:
            answer = f"HTTP {attempt.status_code}" if attempt.status_code else "no answer"
            line = f"{answer} in {attempt.duration_ms:.0f} ms"
            if attempt.error and attempt.error != f"HTTP {attempt.status_code}":
                line += f": {attempt.error}"
            if attempt.response_excerpt:
                line += f"; response: {attempt.response_excerpt[:200]!r}"
            out.print(Text(("ok: " if attempt.succeeded else "failed: ") + line), soft_wrap=True)
        if not view.attempts:  # e.g. the endpoint was disabled while the test was on its way
            out.print(Text(f"not sent: {view.status}, {view.last_error or 'held'}"))
    if view.status != "delivered":
        raise typer.Exit(1)


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
            Text(view.task_id or "-"),
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
        f"delivery [bold]{view.id}[/bold] ({view.message_id}) {view.event_type}"
        + (f" for task {escape(view.task_id)}" if view.task_id is not None else "")
        + f" to {escape(view.url)}: [bold]{view.status}[/bold], "
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
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="Send a pending delivery at the next tick, however far off its retry is "
            "(a failed one is sent again; a delivered one is refused).",
        ),
    ] = False,
    failed: Annotated[
        bool, typer.Option("--failed", help="Send again every failed delivery (with --since).")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="With --failed: created since (2h, 1d, or ISO time).")
    ] = None,
    endpoint_id: Annotated[
        int | None, typer.Option("--endpoint", help="With --failed: only this endpoint's.")
    ] = None,
) -> None:
    """Send deliveries again, with the same webhook-id, through a fresh retry schedule.

    `--now` makes a pending delivery due now instead (a held one, for a disabled endpoint,
    stays held: enable the endpoint to send it).
    """
    if (ref is None) == (not failed):
        raise InvalidInput("give either a delivery ID or --failed --since TIME")
    if failed and since is None:
        raise InvalidInput("--failed needs --since TIME (e.g. --since 1d)")
    if ref is not None and endpoint_id is not None:
        raise InvalidInput("--endpoint goes with --failed --since TIME, not with a delivery ID")
    if failed and now:
        raise InvalidInput("--now takes one delivery ID; --failed already sends them now")
    with db.session_scope() as session:
        moment = database_now(session)
        if ref is not None and now:
            view = deliveries_use_case.send_now(session, ref, now=moment)
            out.print(
                f"delivery {view.id} ({view.message_id}) is due now: the next tick sends it",
                highlight=False,
                soft_wrap=True,
            )
        elif ref is not None:
            view = deliveries_use_case.redeliver(session, ref, now=moment)
            out.print(
                f"delivery {view.id} ({view.message_id}) queued to be sent again", highlight=False
            )
        else:
            assert since is not None
            count = deliveries_use_case.redeliver_failed(
                session, since=parse_since(since, now=moment), endpoint_id=endpoint_id, now=moment
            )
            scope = f" of endpoint {endpoint_id}" if endpoint_id is not None else ""
            out.print(f"{count} failed deliveries{scope} queued to be sent again", highlight=False)
