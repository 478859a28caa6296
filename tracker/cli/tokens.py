"""`tracker tokens ...`: who may call the HTTP API.

Thin like the rest of the CLI. A token is printed once, by `tokens create`; only its hash is kept.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tracker import db, tokens
from tracker.cli import tables
from tracker.cli.output import JsonFlag, friendly_errors, out
from tracker.settings import get_settings

__all__ = ["tokens_app"]

tokens_app = typer.Typer(
    help="Bearer tokens for the HTTP API: create (shown once), list, revoke.",
    no_args_is_help=True,
)


@tokens_app.command("create")
@friendly_errors
def tokens_create(
    name: Annotated[str, typer.Argument(help="Who or what uses it, e.g. `video-backend`.")],
    json_output: JsonFlag = False,
) -> None:
    """Create a token. It is printed now and never again; tracker keeps only its hash."""
    with db.session_scope() as session:
        created = tokens.create_token(session, name)
    if json_output:
        out.print_json(tables.to_json({"token": created.token, "secret": created.secret}))
        return
    out.print(
        f"token [bold]{created.token.id}[/bold] ({escape(created.token.name)}), shown once, "
        "keep it:",
        highlight=False,
    )
    out.print(Text(created.secret), highlight=False, soft_wrap=True)
    settings = get_settings()
    out.print(
        f"use it as: curl -H 'Authorization: Bearer {created.token.prefix}...' "
        f"http://{escape(settings.api_host)}:{settings.api_port}/v1/tasks",
        style="dim",
        highlight=False,
        soft_wrap=True,
    )


@tokens_app.command("list")
@friendly_errors
def tokens_list(
    include_revoked: Annotated[
        bool, typer.Option("--all", help="Also list revoked tokens.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """List tokens (never the tokens themselves: their first characters only)."""
    with db.read_scope() as session:
        views = tokens.list_tokens(session, include_revoked=include_revoked)
    if json_output:
        out.print_json(tables.to_json(views))
        return
    table = Table(
        header_style="bold", title=f"{len(views)} API token{'s' if len(views) != 1 else ''}"
    )
    for column in ("id", "name", "starts with", "created", "last used", "state"):
        table.add_column(column)
    for view in views:
        table.add_row(
            str(view.id),
            Text(view.name),
            view.prefix + "...",
            f"{view.created_at:%Y-%m-%d %H:%M}",
            f"{view.last_used_at:%Y-%m-%d %H:%M}" if view.last_used_at else "never",
            f"revoked {view.revoked_at:%Y-%m-%d %H:%M}" if view.revoked_at else "active",
        )
    out.print(table)


@tokens_app.command("revoke")
@friendly_errors
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's ID (see `tokens list`).")],
    json_output: JsonFlag = False,
) -> None:
    """Revoke a token: requests presenting it get 401 from now on."""
    with db.session_scope() as session:
        view = tokens.revoke_token(session, token_id)
    if json_output:
        out.print_json(tables.to_json(view))
    else:
        out.print(f"token {view.id} ({escape(view.name)}) is revoked", highlight=False)
