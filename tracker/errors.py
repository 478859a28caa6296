"""The errors tracker raises on purpose; the CLI and the HTTP API turn them into clear messages.

TrackerError
  InvalidInput          the caller gave something tracker refuses (the message says what)
    InvalidTaskId       an empty, too long, or whitespace/control-character task ID
    InvalidMetadata     registration metadata that is not a JSON object
    Conflict            well-formed, but the current state forbids it (e.g. redeliver a pending)
  UnknownTask           no tracked task with that ID
  Unavailable           a service tracker needs does not answer
    DatabaseUnavailable
    BrokerUnavailable
  MissingAPIKey         polling was asked for without TENSORSLAB_API_KEY
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "Conflict",
    "DatabaseUnavailable",
    "InvalidInput",
    "InvalidMetadata",
    "InvalidTaskId",
    "MissingAPIKey",
    "TrackerError",
    "Unavailable",
    "UnknownTask",
]


class TrackerError(Exception):
    """Root of tracker's own errors."""


class InvalidInput(TrackerError):
    pass


class InvalidTaskId(InvalidInput):
    pass


class InvalidMetadata(InvalidInput):
    pass


class Conflict(InvalidInput):
    pass


class UnknownTask(TrackerError):
    def __init__(self, task_id: str, provider: str) -> None:
        super().__init__(f"no tracked {provider} task with ID {task_id!r}")
        self.task_id = task_id
        self.provider = provider


class Unavailable(TrackerError):
    pass


class DatabaseUnavailable(Unavailable):
    pass


class BrokerUnavailable(Unavailable):
    pass


class MissingAPIKey(TrackerError):
    pass
