"""`tracker secrets ...`: the key that encrypts webhook secrets at rest.

Rotating it: put a new key first in TRACKER_SECRET_KEY and keep the old one after it
(`NEW,OLD`), run `tracker secrets rotate-key` (every stored secret is encrypted with NEW), then
drop OLD from TRACKER_SECRET_KEY everywhere. The command never prints a key or a secret except
`generate-key`'s new key.
"""

from __future__ import annotations

from typing import Annotated

import typer
from cryptography.fernet import Fernet
from rich.markup import escape

from tracker import db
from tracker.cli.output import JsonFlag, friendly_errors, out
from tracker.cli.tables import to_json
from tracker.webhooks.rekey import encrypt_secrets
from tracker.webhooks.vault import get_vault

__all__ = ["secrets_app"]

secrets_app = typer.Typer(
    help="The key that encrypts webhook secrets at rest (TRACKER_SECRET_KEY).",
    no_args_is_help=True,
)


@secrets_app.command("generate-key")
def generate_key() -> None:
    """Print a new key for TRACKER_SECRET_KEY (nothing is stored)."""
    out.print(Fernet.generate_key().decode("ascii"), highlight=False)


@secrets_app.command("rotate-key")
@friendly_errors
def rotate_key(
    plain_only: Annotated[
        bool, typer.Option("--plain-only", help="Only encrypt secrets stored in plain text.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Encrypt every stored webhook secret again with the first key of TRACKER_SECRET_KEY.

    Any key of the list decrypts; a secret none of them opens stops it, naming the endpoint,
    and nothing is changed.
    """
    vault = get_vault(create=True)
    with db.session_scope() as session:
        done = encrypt_secrets(session, vault, plain_only=plain_only)
    if json_output:
        out.print_json(to_json({"endpoints": done.endpoints, "secrets": done.secrets}))
        return
    out.print(
        f"encrypted {done.secrets} webhook secrets of {done.endpoints} endpoints with the "
        f"first key of {escape(vault.source)}",
        highlight=False,
    )
