"""The embedded broker: kombu's filesystem transport, with messages that appear whole.

kombu's own `_put` creates the message file and then writes it, while a reader may move and
read it in between and find it empty (kombu issue #1551): the worker dies on a JSONDecodeError.
Here each message is written under a name readers ignore and renamed into place, which is atomic
on one filesystem. `celeryconfig.py` maps `filesystem://` to this transport.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem

__all__ = ["ALIAS", "Channel", "Transport", "register"]

ALIAS = "trackerfs"


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]  # same as filesystem.Channel
        folder = Path(self.data_folder_out)
        final = folder / f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        partial = folder / f".partial-{uuid.uuid4().hex}"  # readers skip names like this
        try:
            partial.write_bytes(json.dumps(payload).encode("utf-8"))
            partial.replace(final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {str(final)!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    """Make `trackerfs://` name this transport."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
