"""The one tree of errors tracker raises on purpose; the CLI and the HTTP API turn each branch
into a clear message, an exit code and a status code.

    TrackerError                 root of everything below                 CLI exit  HTTP
      InvalidInput               the caller gave something tracker refuses    2      422
        InvalidTaskId            an empty, too long, or whitespace task ID
        InvalidMetadata          registration metadata that is not a JSON object
        InvalidWebhookURL        not http(s), has credentials, or aims at a refused network
        InvalidWebhookHeader     a custom header that is malformed or would replace tracker's
      NotFound                   nothing stored under that name              3      404
        UnknownTask              no tracked task with that ID
        UnknownEndpoint          no webhook endpoint with that ID
        UnknownDelivery          no webhook delivery with that number or message ID
        UnknownToken             no API token with that ID
        UnknownSubmission        no submission with that ID
      Conflict                   well-formed, but the current state forbids it   4      409
        TaskAlreadyEnded         untracking a task that completed, failed, expired...
        DeliveryPending          redelivering a delivery that is still pending
          DeliveryHeld           pending, but held for a disabled endpoint
        AlreadyDelivered         `redeliver --now` of a delivery that was delivered
        EndpointDisabled         testing an endpoint that is disabled
        EndpointURLTaken         moving a webhook to a URL another endpoint has
        SubmissionRefused        upstream refused to create the task (code 9000/9999, HTTP 4xx)
        IdempotencyKeyReused     an Idempotency-Key sent again with another request
        TaskStillTracked         forgetting a task that is still tracked (untrack it first)
        ProviderNotPaused        resuming a provider whose polling is not paused
      Unavailable                a service tracker needs does not answer     1      503
        DatabaseUnavailable      unreachable, locked, read-only, full, or without the schema
        BrokerUnavailable        the Celery broker does not accept a connection
        PortUnavailable          the API's address is taken
        SubmissionUnknown        a create was sent and no answer came: a task may exist
        SubmissionNotSent        a create could not even connect: nothing was sent
        RateLimited              no rate limit token in time (TENSORSLAB_MAX_REQUESTS_PER_S)
      ConfigError                the settings cannot be used                 1      500
        SettingsError            a variable is invalid or misspelled (tracker.settings)
        MissingAPIKey            polling was asked for without TENSORSLAB_API_KEY
        UnreadableSecret         a stored webhook secret no configured key decrypts

Every message is one line written for the person who caused it, and never holds a secret.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDelivered",
    "BrokerUnavailable",
    "ConfigError",
    "Conflict",
    "DatabaseUnavailable",
    "DeliveryHeld",
    "DeliveryPending",
    "EndpointDisabled",
    "EndpointURLTaken",
    "IdempotencyKeyReused",
    "InvalidInput",
    "InvalidMetadata",
    "InvalidTaskId",
    "InvalidWebhookHeader",
    "InvalidWebhookURL",
    "MissingAPIKey",
    "NotFound",
    "PortUnavailable",
    "ProviderNotPaused",
    "RateLimited",
    "SubmissionNotSent",
    "SubmissionRefused",
    "SubmissionUnknown",
    "TaskAlreadyEnded",
    "TaskStillTracked",
    "TrackerError",
    "Unavailable",
    "UnknownDelivery",
    "UnknownEndpoint",
    "UnknownSubmission",
    "UnknownTask",
    "UnknownToken",
    "UnreadableSecret",
    "one_line",
]


def one_line(error: BaseException, *, limit: int = 300) -> str:
    """`error`'s text folded onto one line and cut to `limit` (its type's name when empty): how
    a library's error (a driver, kombu, urllib3) is quoted inside one of ours."""
    return " ".join(str(error).split())[:limit] or type(error).__name__


class TrackerError(Exception):
    """Root of tracker's own errors."""


class InvalidInput(TrackerError):
    """The caller gave something tracker refuses; the message says what and why."""


class InvalidTaskId(InvalidInput):
    pass


class InvalidMetadata(InvalidInput):
    pass


class InvalidWebhookURL(InvalidInput):
    pass


class InvalidWebhookHeader(InvalidInput):
    pass


class NotFound(TrackerError):
    """Nothing is stored under the name the caller gave."""


class UnknownTask(NotFound):
    def __init__(self, task_id: str, provider: str, *, tracked_as: tuple[str, ...] = ()) -> None:
        """`tracked_as`: the other providers that do track a task with this ID (a hint)."""
        hint = (
            f" (a {' and a '.join(tracked_as)} task has this ID: name its provider)"
            if tracked_as
            else ""
        )
        super().__init__(f"no tracked {provider} task with ID {task_id!r}{hint}")
        self.task_id = task_id
        self.provider = provider


class UnknownEndpoint(NotFound):
    pass


class UnknownDelivery(NotFound):
    pass


class UnknownToken(NotFound):
    pass


class UnknownSubmission(NotFound):
    pass


class Conflict(TrackerError):
    """Well-formed, but what is stored now forbids it."""


class TaskAlreadyEnded(Conflict):
    pass


class DeliveryPending(Conflict):
    pass


class DeliveryHeld(DeliveryPending):
    pass


class AlreadyDelivered(Conflict):
    pass


class EndpointDisabled(Conflict):
    pass


class EndpointURLTaken(Conflict):
    pass


class SubmissionRefused(Conflict):
    """Upstream answered a create and made nothing; the submission is stored as refused."""


class IdempotencyKeyReused(Conflict):
    pass


class TaskStillTracked(Conflict):
    pass


class ProviderNotPaused(Conflict):
    pass


class Unavailable(TrackerError):
    """A service tracker needs does not answer (or not usefully); trying again may work."""


class DatabaseUnavailable(Unavailable):
    pass


class BrokerUnavailable(Unavailable):
    pass


class PortUnavailable(Unavailable):
    pass


class SubmissionUnknown(Unavailable):
    """A create was sent and no usable answer came back: upstream may have made the task.
    Never retried by tracker; the submission is stored as `submission_unknown`."""


class SubmissionNotSent(Unavailable):
    """A create could not connect: nothing reached upstream (stored as `not_sent`)."""


class RateLimited(Unavailable):
    pass


class ConfigError(TrackerError):
    """The settings cannot be used; the message names the setting and what to do."""


class MissingAPIKey(ConfigError):
    pass


class UnreadableSecret(ConfigError):
    """A webhook endpoint's stored secret cannot be decrypted: nothing is signed without it."""

    def __init__(self, endpoint_id: int, why: str) -> None:
        super().__init__(
            f"the signing secret of webhook endpoint {endpoint_id} cannot be decrypted: {why} "
            "(TRACKER_SECRET_KEY must list the key it was encrypted with)"
        )
        self.endpoint_id = endpoint_id
