"""How the dashboard writes times, durations and links: Jinja filters and globals, pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit

from jinja2 import Environment

from tracker.upstream.names import DEFAULT_PROVIDER

__all__ = [
    "delivery_url",
    "duration",
    "install",
    "is_web_url",
    "media_kind",
    "moment",
    "relative",
    "task_url",
]

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".m4v", ".ogv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif")


def moment(value: datetime | None) -> str:
    """`2026-12-06 17:45:03 UTC`; an empty string for None."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """`0.84 s`, `42 s`, `3 min 05 s`, `2 h 07 min`, `3 d 04 h`."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """`12 s ago`, `in 3 min 05 s`, against `now` (this moment by default)."""
    if value is None:
        return ""
    now = now or datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (now - value).total_seconds()
    if abs(seconds) < 1:
        return "now"
    return f"{duration(seconds)} ago" if seconds > 0 else f"in {duration(-seconds)}"


def task_url(task_id: str, provider: str = DEFAULT_PROVIDER) -> str:
    url = f"/tasks/{quote(task_id, safe='')}"
    return url if provider == DEFAULT_PROVIDER else f"{url}?{urlencode({'provider': provider})}"


def delivery_url(delivery_id: int) -> str:
    return f"/deliveries/{delivery_id}"


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # upstream's text, not always a URL: `https://[::1/a.mp4`
        return None


def media_kind(url: str, provider: str) -> str:
    """`video`, `image` or `link`: how a result URL is shown (by its suffix, else its provider).
    Only an https URL becomes a player or an image, as the pages' CSP allows no other media."""
    parts = _split(url)
    if parts is None or parts.scheme != "https":
        return "link"
    path = parts.path.lower()
    if path.endswith(VIDEO_SUFFIXES):
        return "video"
    if path.endswith(IMAGE_SUFFIXES):
        return "image"
    return "image" if provider.endswith("image") else "video"


def is_web_url(url: str) -> bool:
    """Whether `url` may be a link: http(s) only (upstream's text is not trusted further)."""
    parts = _split(url)
    return parts is not None and parts.scheme in ("http", "https")


def query_with(params: dict[str, Any], **changes: Any) -> str:
    """`?a=1&b=2`: `params` with `changes`, empty values left out."""
    merged = {**params, **changes}
    kept = {k: v for k, v in merged.items() if v not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""


def install(environment: Environment) -> None:
    environment.filters.update(moment=moment, duration=duration, relative=relative)
    environment.globals.update(
        task_url=task_url,
        delivery_url=delivery_url,
        media_kind=media_kind,
        query_with=query_with,
        is_web_url=is_web_url,
    )
