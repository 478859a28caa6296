"""Configuration from the environment (and an optional `.env` file), validated loudly.

Every setting is documented in the README with its default. Nothing here opens a connection:
`get_settings()` builds the object on first use, so importing the package is free.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from tracker.webhooks.guard import AddressPolicy

__all__ = ["Settings", "SettingsError", "get_settings"]


class SettingsError(Exception):
    """The environment holds a setting that cannot be used; the message says which and why."""


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


Seconds = Annotated[float, Field(gt=0, le=30 * 24 * 3600)]


class Settings(BaseSettings):
    """All of tracker's settings. Field names drop the prefix; the environment names keep it."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    data_dir: Path = Field(default=Path(".tracker"), validation_alias=_env("TRACKER_DATA_DIR"))
    database_url: str = Field(default="", validation_alias=_env("TRACKER_DATABASE_URL"))
    broker_url: str = Field(default="filesystem://", validation_alias=_env("TRACKER_BROKER_URL"))

    queue_name: str = Field(
        default="tracker",
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        validation_alias=_env("TRACKER_QUEUE"),
    )

    tensorslab_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("TENSORSLAB_API_KEY")
    )
    tensorslab_base_url: str = Field(
        default="https://api.tensorslab.com", validation_alias=_env("TENSORSLAB_BASE_URL")
    )
    tensorslab_auth_scheme: str = Field(
        default="Bearer", validation_alias=_env("TENSORSLAB_AUTH_SCHEME")
    )
    tensorslab_connect_timeout_s: Seconds = Field(
        default=5.0, validation_alias=_env("TENSORSLAB_CONNECT_TIMEOUT_S")
    )
    tensorslab_read_timeout_s: Seconds = Field(
        default=30.0, validation_alias=_env("TENSORSLAB_READ_TIMEOUT_S")
    )

    tick_interval_s: Seconds = Field(default=1.0, validation_alias=_env("TRACKER_TICK_INTERVAL_S"))
    poll_first_delay_s: Seconds = Field(
        default=5.0, validation_alias=_env("TRACKER_POLL_FIRST_DELAY_S")
    )
    poll_min_interval_s: Seconds = Field(
        default=5.0, validation_alias=_env("TRACKER_POLL_MIN_INTERVAL_S")
    )
    poll_max_interval_s: Seconds = Field(
        default=20.0, validation_alias=_env("TRACKER_POLL_MAX_INTERVAL_S")
    )
    poll_quiet_until_s: float = Field(
        default=90.0, ge=0, le=86400, validation_alias=_env("TRACKER_POLL_QUIET_UNTIL_S")
    )
    error_max_backoff_s: Seconds = Field(
        default=300.0, validation_alias=_env("TRACKER_ERROR_MAX_BACKOFF_S")
    )
    no_credits_pause_s: Seconds = Field(
        default=600.0, validation_alias=_env("TRACKER_NO_CREDITS_PAUSE_S")
    )
    not_found_grace_s: Seconds = Field(
        default=300.0, validation_alias=_env("TRACKER_NOT_FOUND_GRACE_S")
    )
    max_tracking_age_s: Seconds = Field(
        default=86400.0, validation_alias=_env("TRACKER_MAX_TRACKING_AGE_S")
    )
    poll_lease_s: Seconds = Field(default=120.0, validation_alias=_env("TRACKER_POLL_LEASE_S"))
    poll_batch_size: int = Field(
        default=50, ge=1, le=1000, validation_alias=_env("TRACKER_POLL_BATCH_SIZE")
    )
    poll_concurrency: int = Field(
        default=8, ge=1, le=64, validation_alias=_env("TRACKER_POLL_CONCURRENCY")
    )
    claim_limit: int = Field(
        default=2000, ge=1, le=100_000, validation_alias=_env("TRACKER_CLAIM_LIMIT")
    )

    webhook_retry_schedule_s: str = Field(
        default="5,300,1800,7200,18000,36000,36000",
        validation_alias=_env("TRACKER_WEBHOOK_RETRY_SCHEDULE_S"),
    )
    webhook_timeout_s: Seconds = Field(
        default=15.0, le=300, validation_alias=_env("TRACKER_WEBHOOK_TIMEOUT_S")
    )
    webhook_allowed_networks: str = Field(
        default="", validation_alias=_env("TRACKER_WEBHOOK_ALLOWED_NETWORKS")
    )
    webhook_disable_after_s: Seconds = Field(
        default=5 * 86400.0, validation_alias=_env("TRACKER_WEBHOOK_DISABLE_AFTER_S")
    )
    webhook_lease_s: Seconds = Field(
        default=120.0, validation_alias=_env("TRACKER_WEBHOOK_LEASE_S")
    )
    webhook_batch_size: int = Field(
        default=20, ge=1, le=1000, validation_alias=_env("TRACKER_WEBHOOK_BATCH_SIZE")
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=64, validation_alias=_env("TRACKER_WEBHOOK_CONCURRENCY")
    )

    shutdown_grace_s: float = Field(
        default=8.0, ge=1, le=300, validation_alias=_env("TRACKER_SHUTDOWN_GRACE_S")
    )

    api_host: str = Field(default="127.0.0.1", validation_alias=_env("TRACKER_API_HOST"))
    api_port: int = Field(default=8000, ge=1, le=65535, validation_alias=_env("TRACKER_API_PORT"))
    api_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=100 * 1_048_576,
        validation_alias=_env("TRACKER_API_MAX_BODY_BYTES"),
    )
    api_max_batch: int = Field(
        default=1000, ge=1, le=10_000, validation_alias=_env("TRACKER_API_MAX_BATCH")
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.poll_min_interval_s > self.poll_max_interval_s:
            raise ValueError(
                "TRACKER_POLL_MIN_INTERVAL_S "
                f"({self.poll_min_interval_s:g}) is larger than TRACKER_POLL_MAX_INTERVAL_S "
                f"({self.poll_max_interval_s:g})"
            )
        one_poll_s = self.tensorslab_connect_timeout_s + self.tensorslab_read_timeout_s
        if self.poll_lease_s < one_poll_s * 2:
            raise ValueError(
                f"TRACKER_POLL_LEASE_S ({self.poll_lease_s:g}) must be at least "
                f"{one_poll_s * 2:g} s: twice TENSORSLAB_CONNECT_TIMEOUT_S + "
                "TENSORSLAB_READ_TIMEOUT_S, so a slow poll cannot outlive its lease"
            )
        key = self.tensorslab_api_key
        if key is not None and not key.get_secret_value().strip():
            self.tensorslab_api_key = None  # blank is "not set": polling refuses to start
        scheme = self.tensorslab_auth_scheme.strip()
        if any(ch.isspace() for ch in scheme):
            raise ValueError("TENSORSLAB_AUTH_SCHEME must be one word (e.g. Bearer) or empty")
        self.tensorslab_auth_scheme = scheme
        if not self.tensorslab_base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"TENSORSLAB_BASE_URL must start with http:// or https://, "
                f"got {self.tensorslab_base_url!r}"
            )
        self.tensorslab_base_url = self.tensorslab_base_url.rstrip("/")
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'tracker.db'}"
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "TRACKER_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL, "
                f"got scheme {self.database_url.split(':', 1)[0]!r}"
            )
        if self.database_url.startswith("postgresql://") or self.database_url.startswith(
            "postgres://"
        ):
            # psycopg 3 is the driver we ship; plain URLs would ask SQLAlchemy for psycopg2.
            self.database_url = "postgresql+psycopg://" + self.database_url.split("://", 1)[1]
        if not self.broker_url.startswith(("filesystem://", "redis://", "rediss://", "memory://")):
            raise ValueError(
                "TRACKER_BROKER_URL must be filesystem:// (embedded), redis:// or rediss://, "
                f"got {self.broker_url!r}"
            )
        _ = self.retry_schedule_s  # parse now, so a bad value fails loudly at start
        _ = self.webhook_policy
        one_send_s = self.webhook_timeout_s + min(5.0, self.webhook_timeout_s)  # connect + read
        if self.webhook_lease_s < one_send_s * 2:
            raise ValueError(
                f"TRACKER_WEBHOOK_LEASE_S ({self.webhook_lease_s:g}) must be at least "
                f"{one_send_s * 2:g} s: twice the longest send (connect up to 5 s, plus "
                f"TRACKER_WEBHOOK_TIMEOUT_S = {self.webhook_timeout_s:g})"
            )
        return self

    @property
    def retry_schedule_s(self) -> tuple[float, ...]:
        """TRACKER_WEBHOOK_RETRY_SCHEDULE_S as seconds: the waits before attempts 2, 3, ..."""
        parts = [part.strip() for part in self.webhook_retry_schedule_s.split(",") if part.strip()]
        try:
            delays = tuple(float(part) for part in parts)
        except ValueError:
            raise ValueError(
                "TRACKER_WEBHOOK_RETRY_SCHEDULE_S must be comma-separated seconds, e.g. "
                f"5,300,1800; got {self.webhook_retry_schedule_s!r}"
            ) from None
        if any(not 0 < delay <= 7 * 86400 for delay in delays) or len(delays) > 50:
            raise ValueError(
                "TRACKER_WEBHOOK_RETRY_SCHEDULE_S: each wait must be between 0 and 604800 s, "
                f"at most 50 of them; got {self.webhook_retry_schedule_s!r}"
            )
        return delays

    @property
    def broker_folder(self) -> Path:
        """Where the embedded filesystem broker keeps its messages."""
        return self.data_dir / "broker"

    @property
    def webhook_policy(self) -> AddressPolicy:
        """Where webhooks may go: the SSRF guard, opened by TRACKER_WEBHOOK_ALLOWED_NETWORKS."""
        from tracker.webhooks.guard import AddressPolicy

        return AddressPolicy.from_setting(self.webhook_allowed_networks)

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in problem["loc"]).upper()
        lines.append(f"{where}: {message}" if where else message)
    return "invalid settings: " + "; ".join(lines)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once. Raises `SettingsError` with a readable message."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
