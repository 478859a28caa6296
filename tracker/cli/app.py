"""The `tracker` command: the typer app, its help panels, and every command in its place.

The commands live by group (`tasks`, `observe`, `run`, `webhooks`, `tokens`); each parses its
arguments, calls a use case and prints the result, with no SQL. Errors that tracker raises on
purpose end the command with one red line on stderr, never a traceback, and an exit code per
kind (`output.EXIT_CODES`: 2 bad input, 3 not found, 4 conflict, 1 unavailable or anything else).
"""

from __future__ import annotations

from typing import Annotated

import typer

from tracker import __version__
from tracker.cli import doctor, observe, operate, run, secrets, submit, tasks, tokens, webhooks
from tracker.cli.output import friendly_errors

__all__ = ["app", "main"]

app = typer.Typer(
    help=(
        "Follow TensorsLab video and image tasks until they finish: register task IDs, let the "
        "worker poll them, query every status change.\n\n"
        "Settings come from the environment or a .env file (see the README). "
        "New here? Run `tracker demo`."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
TASKS, RUN, WEBHOOKS = "Tasks", "Running tracker", "Webhooks and API access"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tracker {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print tracker's version and exit.",
        ),
    ] = False,
) -> None:
    pass


app.command("register", rich_help_panel=TASKS)(tasks.register)
app.command("status", rich_help_panel=TASKS)(tasks.status)
app.command("history", rich_help_panel=TASKS)(tasks.history)
app.command("list", rich_help_panel=TASKS)(tasks.list_)
app.command("untrack", rich_help_panel=TASKS)(tasks.untrack)
app.add_typer(submit.submit_app, name="submit", rich_help_panel=TASKS)
app.command("submissions", rich_help_panel=TASKS)(submit.submissions)
app.command("watch", rich_help_panel=TASKS)(friendly_errors(observe.watch))
app.command("stats", rich_help_panel=TASKS)(friendly_errors(observe.stats))
app.command("forget", rich_help_panel=TASKS)(friendly_errors(operate.forget))
app.command("worker", rich_help_panel=RUN)(run.worker)
app.command("beat", rich_help_panel=RUN)(run.beat)
app.command("up", rich_help_panel=RUN)(run.up)
app.command("api", rich_help_panel=RUN)(run.serve_api)
app.command("doctor", rich_help_panel=RUN)(doctor.doctor)
app.command("simulate", rich_help_panel=RUN)(run.simulate)
app.command("demo", rich_help_panel=RUN)(run.demo)
app.add_typer(run.db_app, name="db", rich_help_panel=RUN)
app.command("resume", rich_help_panel=RUN)(friendly_errors(operate.resume))
app.command("prune", rich_help_panel=RUN)(friendly_errors(operate.prune))
app.add_typer(webhooks.webhooks_app, name="webhooks", rich_help_panel=WEBHOOKS)
app.add_typer(webhooks.deliveries_app, name="deliveries", rich_help_panel=WEBHOOKS)
app.command("redeliver", rich_help_panel=WEBHOOKS)(friendly_errors(webhooks.redeliver))
app.add_typer(tokens.tokens_app, name="tokens", rich_help_panel=WEBHOOKS)
app.add_typer(secrets.secrets_app, name="secrets", rich_help_panel=WEBHOOKS)


def main() -> None:
    app()
