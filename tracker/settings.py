"""Configuration from the environment (and an optional `.env` file), validated loudly.

Every setting is documented in the README's Settings table with its default. A field's variable
is ``TRACKER_`` and its name in capitals (``queue`` is TRACKER_QUEUE), except the TENSORSLAB_*
ones, which describe the upstream. A value that cannot be used, or a variable that looks like a
misspelled setting, makes `get_settings()` raise `SettingsError` with one line naming every
variable at fault. Nothing here opens a connection or creates a folder, and nothing of the
domain is imported: `get_settings()` builds the object on first use, so importing is free.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from cryptography.fernet import Fernet
from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tracker.errors import ConfigError

__all__ = ["Settings", "SettingsError", "env_name", "get_settings", "parse_networks"]

PREFIX = "TRACKER_"
UPSTREAM_PREFIX = "TENSORSLAB_"
# Variables the test suite reads for itself (TRACKER_TEST_POSTGRES_URL...): never settings.
TEST_PREFIX = "TRACKER_TEST_"
# Variables docker-compose.yml reads for itself, from the shell or from the same .env file.
COMPOSE_VARIABLES = frozenset(
    {
        "TRACKER_API_PUBLISH",
        "TRACKER_IMAGE",
        "TRACKER_PROMETHEUS_PUBLISH",
        "TRACKER_WORKER_CONCURRENCY",
    }
)
# How close another variable's name must be to a setting's to be taken for a misspelling of it:
# TRAKCER_API_PORT is (0.94), ordinary names are not (DATABASE_URL 0.75, POSTGRES_PASSWORD 0.32).
MISSPELLING_CUTOFF = 0.85
SUGGESTION_CUTOFF = 0.7  # for a TRACKER_ name that is no setting: below, no guess is better

MAX_RETRIES = 50
MAX_RETRY_WAIT_S = 7 * 86400

Seconds = Annotated[float, Field(gt=0, le=30 * 24 * 3600)]
Network = IPv4Network | IPv6Network


class SettingsError(ConfigError):
    """The environment holds a setting that cannot be used; the message says which and why."""


class Settings(BaseSettings):
    """All of tracker's settings; see the module docstring for the variables' names."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        # Unknown names are judged by `_refuse_misspelled_names`, which knows .env holds others.
        extra="ignore",
        case_sensitive=False,
        validate_by_name=True,  # Settings(tensorslab_base_url=...) as well as the variable
        hide_input_in_errors=True,  # str(ValidationError) would show TENSORSLAB_API_KEY
    )

    data_dir: Path = Path(".tracker")
    database_url: str = ""  # empty: a SQLite file in data_dir
    broker_url: str = "filesystem://"
    queue: str = Field(default="tracker", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    # Fernet keys for webhook secrets at rest, comma-separated: the first encrypts, all decrypt.
    secret_key: SecretStr | None = None

    tensorslab_api_key: SecretStr | None = Field(
        default=None, validation_alias="TENSORSLAB_API_KEY"
    )
    tensorslab_base_url: str = Field(
        default="https://api.tensorslab.com", validation_alias="TENSORSLAB_BASE_URL"
    )
    tensorslab_auth_scheme: str = Field(default="Bearer", validation_alias="TENSORSLAB_AUTH_SCHEME")
    tensorslab_connect_timeout_s: Seconds = Field(
        default=5.0, validation_alias="TENSORSLAB_CONNECT_TIMEOUT_S"
    )
    tensorslab_read_timeout_s: Seconds = Field(
        default=30.0, validation_alias="TENSORSLAB_READ_TIMEOUT_S"
    )
    # The cap on requests per second to one API key, all processes together (polls and
    # creates); unset: no cap. The burst is how many may go at once; unset: one second's worth.
    tensorslab_max_requests_per_s: float | None = Field(
        default=None, validation_alias="TENSORSLAB_MAX_REQUESTS_PER_S"
    )
    tensorslab_burst: int | None = Field(default=None, validation_alias="TENSORSLAB_BURST")

    tick_interval_s: Seconds = 1.0
    # How often each process (beat, a worker) refreshes its heartbeat row, at most; one not seen
    # for 3 intervals (or 10 ticks, if longer) is gone (tracker.ops.heartbeats).
    heartbeat_interval_s: Seconds = Field(default=5.0, le=3600)
    poll_first_delay_s: float = Field(default=5.0, ge=0, le=30 * 24 * 3600)  # 0: right away
    poll_min_interval_s: Seconds = 5.0
    poll_max_interval_s: Seconds = 20.0
    poll_quiet_until_s: float = Field(default=90.0, ge=0, le=86400)
    # adaptive: after the first poll, wait until the age before which no task of the same
    # bucket (provider, model, resolution, duration) has finished (tracker/tasks/adaptive.py);
    # fixed: the TRACKER_POLL_* schedule alone, whatever was learned.
    poll_schedule: Literal["adaptive", "fixed"] = "adaptive"
    # The schedule of image tasks (provider tensorslab-image), which take seconds to a minute;
    # the TRACKER_POLL_* values above are the video tasks' (provider tensorslab).
    image_poll_first_delay_s: float = Field(default=2.0, ge=0, le=30 * 24 * 3600)
    image_poll_min_interval_s: Seconds = 2.0
    image_poll_max_interval_s: Seconds = 5.0
    image_poll_quiet_until_s: float = Field(default=0.0, ge=0, le=86400)
    error_max_backoff_s: Seconds = 300.0
    no_credits_pause_s: Seconds = 600.0
    auth_pause_s: Seconds = 300.0
    unreachable_after_s: Seconds = 180.0
    unreachable_pause_s: Seconds = 120.0
    retention_days: int = Field(default=90, ge=0, le=36500)
    not_found_grace_s: Seconds = 300.0
    max_tracking_age_s: Seconds = 86400.0
    poll_lease_s: Seconds = 120.0
    poll_batch_size: int = Field(default=50, ge=1, le=1000)
    poll_concurrency: int = Field(default=8, ge=1, le=64)
    claim_limit: int = Field(default=2000, ge=1, le=100_000)

    # The waits before attempts 2, 3, ... Both tuples below read a comma-separated variable
    # (NoDecode: not JSON); their defaults are written as the variable would be, the way the
    # README and docker-compose.yml show them, and parsed like it.
    webhook_retry_schedule_s: Annotated[tuple[float, ...], NoDecode] = Field(
        default="5,300,1800,7200,18000,36000,36000", validate_default=True
    )
    webhook_timeout_s: Seconds = Field(default=15.0, le=300)
    webhook_allowed_networks: Annotated[tuple[Network, ...], NoDecode] = Field(
        default="", validate_default=True
    )
    webhook_disable_after_s: Seconds = 5 * 86400.0
    webhook_lease_s: Seconds = 120.0
    webhook_batch_size: int = Field(default=20, ge=1, le=1000)
    webhook_concurrency: int = Field(default=8, ge=1, le=64)
    # Attempts in flight (leased, lease not ended) per endpoint: a slow endpoint slows itself.
    # 16 fits in one batch (20), so a slow endpoint holds at most one webhook process; at 4, one
    # busy endpoint could not keep up with 10,000 tasks ending within 150 s (bench/detection.py:
    # poll-to-webhook p99 35 s, against 0.9 s at 16).
    webhook_endpoint_concurrency: int = Field(default=16, ge=1, le=1000)
    # Processes of a worker that consumes only deliveries (`tracker up` starts one).
    webhook_workers: int = Field(default=2, ge=1, le=64)

    shutdown_grace_s: float = Field(default=8.0, ge=1, le=300)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=100 * 1_048_576)
    api_max_batch: int = Field(default=1000, ge=1, le=10_000)
    # The whole request (headers and body) must arrive within this long of the connection
    # opening, or of the previous response on a kept-alive connection: 408, then closed.
    api_request_timeout_s: float = Field(default=10.0, ge=1, le=300)

    # Where each worker serves its own counters (`/metrics`); unset: no port, and the counters
    # reach the API's /metrics only through a shared TRACKER_DATA_DIR. `tracker up` serves its
    # poll worker's on this port and its webhook worker's on the next one.
    worker_metrics_port: int | None = None
    worker_metrics_host: str = Field(default="127.0.0.1", min_length=1)

    # -- names ------------------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _refuse_misspelled_names(cls, data: Any) -> Any:
        """A variable that looks like a setting but is none would be silently ignored: refuse."""
        problems: dict[str, str] = {}  # by upper-case name, so each is told once
        for name, where in _variables_around(cls):
            problem = _misspelling(name, where)
            if problem is not None:
                problems.setdefault(name.upper(), problem)
        # Keys given to Settings(...) or model_validate(...): field names, aliases, variables.
        for key in data if isinstance(data, dict) else ():
            if isinstance(key, str) and key not in cls.model_fields:
                problem = _misspelling(key, "")
                if problem is not None:
                    problems.setdefault(key.upper(), problem)
        if problems:
            raise ValueError("; ".join(problems.values()))
        return data

    @model_validator(mode="before")
    @classmethod
    def _accept_variable_names(cls, data: Any) -> Any:
        """Settings(TRACKER_QUEUE="x") and model_validate({"TRACKER_QUEUE": "x"}) mean what
        the variable means (pydantic alone knows only field names and aliases)."""
        if not isinstance(data, dict):
            return data
        accepted: dict[Any, Any] = {}
        for key, value in data.items():
            field = _FIELD_BY_VARIABLE.get(key.upper()) if isinstance(key, str) else None
            if field is None:
                accepted[key] = value
                continue
            target = _input_key(field)
            if target == key or target not in data:  # the field's own key, if given too, wins
                accepted[target] = value
        return accepted

    # -- values -----------------------------------------------------------------------------------

    @field_validator("data_dir")
    @classmethod
    def _check_data_dir(cls, value: Path) -> Path:
        # Only checked: the folder is made by whoever writes in it (database engine, broker).
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, not a folder")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            if "data_dir" not in info.data:  # invalid, and already reported
                return value
            value = f"sqlite:///{info.data['data_dir'] / 'tracker.db'}"
        scheme, separator, rest = value.partition("://")
        if separator and scheme.lower() in ("postgres", "postgresql"):
            # psycopg 3 is the driver we ship; plain URLs would ask SQLAlchemy for psycopg2.
            value = f"postgresql+psycopg://{rest}"
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "TRACKER_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL, "
                f"got scheme {value.split(':', 1)[0]!r}"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        if not value.startswith(("filesystem://", "redis://", "rediss://", "memory://")):
            raise ValueError(
                "TRACKER_BROKER_URL must be filesystem:// (embedded), redis:// or rediss://, "
                f"got {_without_password(value)!r}"
            )
        return value

    @field_validator("tensorslab_api_key")
    @classmethod
    def _blank_api_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # Blank is "not set": polling then refuses to start (MissingAPIKey).
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        keys = _split_keys(value.get_secret_value())
        for position, key in enumerate(keys, start=1):
            try:
                Fernet(key)
            except ValueError:
                which = f"key {position} of {len(keys)}" if len(keys) > 1 else "the key"
                # Never the value itself: it is a secret, and may be one typo from the real key.
                raise ValueError(
                    f"TRACKER_SECRET_KEY: {which} is not a Fernet key (32 bytes in url-safe "
                    "base64, 44 characters; make one with `tracker secrets generate-key`)"
                ) from None
        return value

    @field_validator("poll_schedule", mode="before")
    @classmethod
    def _check_poll_schedule(cls, value: Any) -> Any:
        choice = value.strip().lower() if isinstance(value, str) else value
        if choice not in ("adaptive", "fixed"):
            raise ValueError(
                f"TRACKER_POLL_SCHEDULE must be adaptive or fixed, got {str(value)[:40]!r}"
            )
        return choice

    @field_validator("tensorslab_max_requests_per_s", "tensorslab_burst", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("worker_metrics_port", mode="before")
    @classmethod
    def _check_metrics_port(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # blank is unset, as docker-compose passes an unset variable
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
            raise ValueError(
                "TRACKER_WORKER_METRICS_PORT must be a port from 1 to 65535, got "
                f"{text[:20]!r}; leave it unset for no metrics port"
            )
        return int(text)

    @field_validator("tensorslab_max_requests_per_s")
    @classmethod
    def _check_rate(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 100_000:
            raise ValueError(
                "TENSORSLAB_MAX_REQUESTS_PER_S must be more than 0 (requests per second, e.g. "
                f"5 or 0.5) and at most 100000, got {value:g}; leave it unset for no cap"
            )
        return value

    @field_validator("tensorslab_burst")
    @classmethod
    def _check_burst(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 100_000:
            raise ValueError(
                f"TENSORSLAB_BURST must be a whole number from 1 to 100000, got {value}"
            )
        return value

    @field_validator("tensorslab_auth_scheme")
    @classmethod
    def _check_auth_scheme(cls, value: str) -> str:
        scheme = value.strip()
        if any(ch.isspace() for ch in scheme):
            raise ValueError("TENSORSLAB_AUTH_SCHEME must be one word (e.g. Bearer) or empty")
        return scheme

    @field_validator("tensorslab_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"TENSORSLAB_BASE_URL must start with http:// or https://, got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("webhook_retry_schedule_s", mode="before")
    @classmethod
    def _parse_retry_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            shown, parts = value, [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list | tuple):
            shown, parts = ",".join(str(part) for part in value), list(value)
        else:
            return value  # pydantic says what is wrong with it
        try:
            delays = tuple(float(part) for part in parts)
        except (TypeError, ValueError):
            raise ValueError(
                "TRACKER_WEBHOOK_RETRY_SCHEDULE_S must be comma-separated seconds, e.g. "
                f"5,300,1800; got {shown!r}"
            ) from None
        if any(not 0 < delay <= MAX_RETRY_WAIT_S for delay in delays) or len(delays) > MAX_RETRIES:
            raise ValueError(
                "TRACKER_WEBHOOK_RETRY_SCHEDULE_S: each wait must be between 0 and "
                f"{MAX_RETRY_WAIT_S} s, at most {MAX_RETRIES} of them; got {shown!r}"
            )
        return delays

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _parse_allowed_networks(cls, value: Any) -> Any:
        """Comma-separated networks or addresses ("127.0.0.0/8, ::1"); "" allows none."""
        if isinstance(value, str):
            entries = value.split(",")
        elif isinstance(value, list | tuple):
            entries = [str(entry) for entry in value]
        else:
            return value
        return parse_networks(entries)

    # -- between values ---------------------------------------------------------------------------

    @model_validator(mode="after")
    def _check_intervals(self) -> Self:
        if self.poll_min_interval_s > self.poll_max_interval_s:
            raise ValueError(
                "TRACKER_POLL_MIN_INTERVAL_S "
                f"({self.poll_min_interval_s:g}) is larger than TRACKER_POLL_MAX_INTERVAL_S "
                f"({self.poll_max_interval_s:g})"
            )
        if self.image_poll_min_interval_s > self.image_poll_max_interval_s:
            raise ValueError(
                "TRACKER_IMAGE_POLL_MIN_INTERVAL_S "
                f"({self.image_poll_min_interval_s:g}) is larger than "
                f"TRACKER_IMAGE_POLL_MAX_INTERVAL_S ({self.image_poll_max_interval_s:g})"
            )
        return self

    @model_validator(mode="after")
    def _check_poll_lease(self) -> Self:
        one_poll_s = self.poll_attempt_deadline_s  # the whole attempt, whatever upstream does
        if self.poll_lease_s < one_poll_s * 2:
            raise ValueError(
                f"TRACKER_POLL_LEASE_S ({self.poll_lease_s:g}) must be at least "
                f"{one_poll_s * 2:g} s: twice the deadline of one poll ("
                "TENSORSLAB_CONNECT_TIMEOUT_S + TENSORSLAB_READ_TIMEOUT_S = "
                f"{one_poll_s:g}, connect to last byte), so a slow poll cannot outlive its lease"
            )
        return self

    @model_validator(mode="after")
    def _check_webhook_lease(self) -> Self:
        one_send_s = self.webhook_timeout_s  # the deadline of a whole attempt, connect included
        if self.webhook_lease_s < one_send_s * 2:
            raise ValueError(
                f"TRACKER_WEBHOOK_LEASE_S ({self.webhook_lease_s:g}) must be at least "
                f"{one_send_s * 2:g} s: twice the longest send (TRACKER_WEBHOOK_TIMEOUT_S = "
                f"{self.webhook_timeout_s:g}, the deadline of one attempt, connect to last byte)"
            )
        return self

    # -- derived ----------------------------------------------------------------------------------

    @property
    def poll_attempt_deadline_s(self) -> float:
        """The bound on one whole upstream request (connect, send, answer, body)."""
        return self.tensorslab_connect_timeout_s + self.tensorslab_read_timeout_s

    @property
    def rate_limit_burst(self) -> int:
        """Requests that may start at once under TENSORSLAB_MAX_REQUESTS_PER_S."""
        if self.tensorslab_burst is not None:
            return self.tensorslab_burst
        return max(1, math.ceil(self.tensorslab_max_requests_per_s or 1))

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """TRACKER_SECRET_KEY's keys, first (the one that encrypts) first; () when unset."""
        return () if self.secret_key is None else _split_keys(self.secret_key.get_secret_value())

    @property
    def broker_folder(self) -> Path:
        """Where the embedded filesystem broker keeps its messages."""
        return self.data_dir / "broker"

    @property
    def poll_queue(self) -> str:
        """The broker queue of ticks and poll batches."""
        return self.queue

    @property
    def webhook_queue(self) -> str:
        """The broker queue of webhook deliveries, consumed by a pool of its own."""
        return f"{self.queue}.webhooks"

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")


def parse_networks(entries: str | list[str]) -> tuple[Network, ...]:
    """TRACKER_WEBHOOK_ALLOWED_NETWORKS: networks or addresses ("127.0.0.0/8, ::1"), deduplicated.

    Raises ValueError naming the bad entry (with the network meant when host bits are set).
    """
    networks: list[Network] = []
    for raw in entries.split(",") if isinstance(entries, str) else entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            network = ip_network(entry, strict=True)
        except ValueError as error:
            hint = ""
            if "host bits set" in str(error):
                hint = f"; did you mean {ip_network(entry, strict=False)}?"
            raise ValueError(
                f"TRACKER_WEBHOOK_ALLOWED_NETWORKS: {entry!r} is not an IP network or "
                f"address (expected e.g. 127.0.0.0/8 or ::1): {error}{hint}"
            ) from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)


def _split_keys(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def env_name(field: str) -> str:
    """The environment variable of a `Settings` field, e.g. ``queue`` -> ``TRACKER_QUEUE``."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else PREFIX + field.upper()


def _input_key(field: str) -> str:
    """The key pydantic validates a field's value under: its alias, or else its name."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else field


_FIELD_BY_VARIABLE = {env_name(field): field for field in Settings.model_fields}
# What an error's location may be (a field name or an alias), and the variable to show for it.
_VARIABLE_BY_KEY = {
    **{field: env_name(field) for field in Settings.model_fields},
    **{_input_key(field): env_name(field) for field in Settings.model_fields},
}


def _variables_around(settings_cls: type[BaseSettings]) -> Iterator[tuple[str, str]]:
    """(name, where) of every variable in the environment ("") and in the .env files."""
    for name in os.environ:
        yield name, ""
    env_files = settings_cls.model_config.get("env_file")
    if env_files is None:
        return
    for env_file in [env_files] if isinstance(env_files, str | os.PathLike) else env_files:
        path = Path(env_file).expanduser()
        if path.is_file():
            for name in dotenv_values(path, encoding="utf-8"):
                yield name, f" in {env_file}"


def _misspelling(name: str, where: str) -> str | None:
    """Why the variable `name` (found `where`, e.g. " in .env") is refused; None if it is not.

    A name that starts like a setting's must be one; any other name is refused only when it is
    very close to a setting's: .env files also hold other tools' variables (POSTGRES_PASSWORD).
    """
    upper = name.upper()
    if upper in _FIELD_BY_VARIABLE or upper in COMPOSE_VARIABLES or upper.startswith(TEST_PREFIX):
        return None
    if upper.startswith((PREFIX, UPSTREAM_PREFIX)):
        close = difflib.get_close_matches(upper, _FIELD_BY_VARIABLE, n=1, cutoff=SUGGESTION_CUTOFF)
    else:
        close = difflib.get_close_matches(upper, _FIELD_BY_VARIABLE, n=1, cutoff=MISSPELLING_CUTOFF)
        if not close:
            return None
    hint = f"; did you mean {close[0]}?" if close else " (the README lists them)"
    return f"{name}{where} is not a tracker setting{hint}"


def _without_password(url: str) -> str:
    """`url` with its password, if any, replaced by ***: error messages never show one."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _describe(error: ValidationError) -> str:
    """One line: ``invalid settings: NAME: problem; NAME2: problem``, with variables' names."""
    problems = []
    # Only the messages: an error's input may be a secret (TENSORSLAB_API_KEY).
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        message = problem["msg"].removeprefix("Value error, ")
        if problem["loc"]:
            key = str(problem["loc"][0])
            name = _VARIABLE_BY_KEY.get(key, key.upper())
            if not message.startswith(name):
                message = f"{name}: {message}"
        problems.append(message)
    return "invalid settings: " + "; ".join(problems)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once. Raises `SettingsError` with a readable message."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
