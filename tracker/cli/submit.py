"""`tracker submit video|image` and `tracker submissions`: create a task upstream and track it.

Thin: parse, check the options against the provider's table, call the submit use case, print.
A submission that made no tracked task ends with one line saying what happened and what to
check, and the exit code of its kind (4 refused, 1 unknown or not sent, 2 bad input).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tracker import db
from tracker.cli import tables
from tracker.cli.output import JsonFlag, err, friendly_errors, out
from tracker.errors import InvalidMetadata
from tracker.settings import get_settings
from tracker.tasks import submit as submit_use_case
from tracker.tasks.submit import SubmissionView
from tracker.upstream.tensorslab_create import MODELS, validate_request

__all__ = ["submissions", "submit_app"]

submit_app = typer.Typer(
    help="Create a TensorsLab task (paid: sent once, never retried) and track it.",
    no_args_is_help=True,
)

_VIDEO_MODELS = ", ".join(name for name, spec in MODELS.items() if spec.kind == "video")
_IMAGE_MODELS = ", ".join(name for name, spec in MODELS.items() if spec.kind == "image")

Prompt = Annotated[str, typer.Option(help="What to generate (at most 8,192 characters).")]
ImageURL = Annotated[
    str | None, typer.Option("--image-url", help="A source image, an http(s) URL.")
]
Webhook = Annotated[
    str | None,
    typer.Option(help="POST how the task ends to this URL (as `register --webhook`)."),
]
Metadata = Annotated[
    str | None, typer.Option(help="A JSON object stored with the task and sent in webhooks.")
]
IdempotencyKey = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="A key of yours: running the command again with it answers from the stored "
        "submission instead of creating a second task.",
    ),
]


@submit_app.command("video")
@friendly_errors
def video(
    model: Annotated[str, typer.Option(help=f"One of {_VIDEO_MODELS}.")],
    prompt: Prompt,
    duration: Annotated[int | None, typer.Option(help="Seconds (per model).")] = None,
    resolution: Annotated[str | None, typer.Option(help="e.g. 720p (per model).")] = None,
    ratio: Annotated[str | None, typer.Option(help="e.g. 16:9.")] = None,
    image_url: ImageURL = None,
    webhook: Webhook = None,
    metadata: Metadata = None,
    idempotency_key: IdempotencyKey = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a TensorsLab video task and track it until it ends."""
    request = validate_request(
        "video",
        model,
        prompt=prompt,
        duration_s=duration,
        resolution=resolution,
        ratio=ratio,
        image_url=image_url,
    )
    _submit(request, webhook, _metadata(metadata), idempotency_key, json_output)


@submit_app.command("image")
@friendly_errors
def image(
    model: Annotated[str, typer.Option(help=f"One of {_IMAGE_MODELS}.")],
    prompt: Prompt,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="As the model takes it: an aspect ratio (16:9), a level (2K, 4K) or a size "
            "(2048x2048; zimage: 1024*1024)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per task (seedream models).")
    ] = None,
    image_url: ImageURL = None,
    webhook: Webhook = None,
    metadata: Metadata = None,
    idempotency_key: IdempotencyKey = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a TensorsLab image task and track it until it ends."""
    request = validate_request(
        "image",
        model,
        prompt=prompt,
        resolution=resolution,
        image_url=image_url,
        batch_size=batch_size,
    )
    _submit(request, webhook, _metadata(metadata), idempotency_key, json_output)


def _metadata(raw: str | None) -> object:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise InvalidMetadata(f"--metadata is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidMetadata(f"--metadata must be a JSON object, got {type(value).__name__}")
    return value


def _submit(
    request: Any,
    webhook: str | None,
    metadata: object,
    idempotency_key: str | None,
    json_output: bool,
) -> None:
    view = submit_use_case.submit_configured(
        request,
        settings=get_settings(),
        session_scope=db.session_scope,
        metadata=metadata,
        webhook_url=webhook,
        idempotency_key=idempotency_key,
    )
    if view.webhook_warning:
        err.print(f"[yellow]warning:[/yellow] {escape(view.webhook_warning)}", highlight=False)
    if json_output:
        out.print_json(tables.to_json(view))
    else:
        _print_outcome(view)
    error = submit_use_case.outcome_error(view)
    if error is not None:
        raise error


def _print_outcome(view: SubmissionView) -> None:
    if view.webhook_secret is not None:
        out.print(
            f"webhook {escape(str(view.webhook_url))}: new endpoint {view.webhook_id}, signing "
            f"secret (shown once, keep it): [bold]{view.webhook_secret}[/bold]",
            highlight=False,
        )
    if view.task_id is None:
        return  # the error line says what happened
    again = " (answered from the stored Idempotency-Key)" if view.replayed else ""
    out.print(
        f"submitted {view.kind} {escape(view.model)}: submission {view.id}, task "
        f"[bold]{escape(view.task_id)}[/bold] created and tracked{again}",
        highlight=False,
    )


@friendly_errors
def submissions(
    submission_id: Annotated[
        int | None, typer.Argument(help="Show this one submission (with what was sent).")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only these: sending, created, refused, not_sent, submission_unknown."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    json_output: JsonFlag = False,
) -> None:
    """Tasks tracker created upstream (`submit`), newest first, with what came of each."""
    with db.read_scope() as session:
        if submission_id is not None:
            found = [submit_use_case.get_submission(session, submission_id)]
        else:
            found = submit_use_case.list_submissions(session, status=status, limit=limit)
    if json_output:
        out.print_json(tables.to_json(found[0] if submission_id is not None else found))
        return
    if submission_id is not None:
        view = found[0]
        for name, value in (
            ("submission", view.id),
            ("status", view.status.value),
            ("model", f"{view.kind} {view.model}"),
            ("task", view.task_id or "-"),
            ("message", view.upstream_message or "-"),
            ("sent", json.dumps(dict(view.request), ensure_ascii=False)),
            ("webhook", view.webhook_url or "-"),
            ("metadata", json.dumps(dict(view.metadata), ensure_ascii=False)),
            ("created", view.created_at.isoformat()),
        ):
            out.print(f"{name:>10}  {escape(str(value))}", highlight=False)
        return
    table = Table(header_style="bold")
    for column in ("id", "status", "model", "task id", "created"):
        table.add_column(column, no_wrap=column in ("id", "status"), overflow="fold")
    table.add_column("message", overflow="fold", ratio=1)
    for view in found:
        table.add_row(
            str(view.id),
            view.status.value,
            f"{view.kind} {view.model}",
            escape(view.task_id or "-"),
            view.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(view.upstream_message or ""),
        )
    out.print(table)
