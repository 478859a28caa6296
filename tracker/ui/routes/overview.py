"""The overview: charts of tasks by status, time to result, polls per task, the detection
window and deliveries by hour; provider pauses (with resume) and process heartbeats.

Thin: the figures come from `tasks.stats`, `webhooks.delivery_stats`, `tasks.queries` and
`ops.heartbeats` / `ops.overdue`; the charts are drawn by `tracker.ui.charts`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from tracker.api.deps import DatabaseDep, SettingsDep
from tracker.db.clock import database_now
from tracker.db.engine import Database
from tracker.errors import InvalidInput
from tracker.ops import heartbeats, overdue
from tracker.states import DeliveryStatus, TaskStatus
from tracker.tasks import pauses, queries
from tracker.tasks.stats import Bucket, Distribution, compute_stats, time_to_result_histogram
from tracker.ui.charts import Bar, Column, bar_chart, column_chart
from tracker.ui.formatting import duration
from tracker.ui.pages import PageRoute, form_of, redirect, render, signed_in
from tracker.ui.session import Session
from tracker.upstream.names import PROVIDERS
from tracker.webhooks.delivery_stats import outcomes_by_hour

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
# Stacked bottom up: what arrived, what is still being tried, what gave up.
DELIVERY_TONES = (DeliveryStatus.DELIVERED, DeliveryStatus.PENDING, DeliveryStatus.FAILED)


def _distribution_chart(
    figures: Distribution | None, *, label: str, show: Callable[[float], str]
) -> Markup | None:
    if figures is None:
        return None
    bars = [
        Bar("median", figures.p50, "p50"),
        Bar("mean", figures.mean, "mean"),
        Bar("95th pct", figures.p95, "p95"),
        Bar("99th pct", figures.p99, "p99"),
        Bar("max", figures.max, "max"),
    ]
    return bar_chart(bars, label=f"{label} over {figures.count} tasks", show=show)


def _short(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def _span(bucket: Bucket) -> str:
    """`<10s`, `1m-2m`, `>=1h`: a histogram column's label."""
    if bucket.upper_s is None:
        return f"\u2265{_short(bucket.lower_s)}"
    if bucket.lower_s == 0:
        return f"<{_short(bucket.upper_s)}"
    return f"{_short(bucket.lower_s)}\u2013{_short(bucket.upper_s)}"


@router.get("/")
def overview_page(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    _: Session = Depends(signed_in),
) -> Response:
    with database.read() as session:
        now = database_now(session)
        stats = compute_stats(session, now=now)
        histogram = time_to_result_histogram(session)
        hours = outcomes_by_hour(session, now=now)
        paused = queries.provider_pauses(session, now=now)
        processes = heartbeats.list_processes(
            session, now=now, gone_after_s=heartbeats.gone_after_s(settings)
        )
        overdue_note = overdue.list_note(session, now=now, settings=settings)
    status_bars = [Bar(s.value, stats.counts.get(s, 0), s.value) for s in TaskStatus]
    columns = [
        Column(hour.hour.strftime("%H:00"), [(s.value, hour.counts[s]) for s in DELIVERY_TONES])
        for hour in hours
    ]
    delivered_day = {s: sum(h.counts[s] for h in hours) for s in DELIVERY_TONES}
    return render(
        request,
        "overview.html",
        {
            "title": "Overview",
            "stats": stats,
            "status_chart": bar_chart(status_bars, label="Tasks by status"),
            "time_histogram": column_chart(
                [Column(_span(bucket), [("p50", bucket.count)]) for bucket in histogram],
                label="Tasks by time from registration to result",
                label_every=1,
                height=140,
                unit="tasks",
            )
            if stats.finished
            else None,
            "time_chart": _distribution_chart(
                stats.time_to_result_s, label="Registration to result", show=duration
            ),
            "polls_chart": _distribution_chart(
                stats.polls_per_task, label="Polls per task", show=lambda v: f"{v:.1f}"
            ),
            "window_chart": _distribution_chart(
                stats.detection_window_s, label="Detection window", show=duration
            ),
            "deliveries_chart": column_chart(
                columns, label="Deliveries written each hour of the last day, by status"
            ),
            "delivered_day": delivered_day,
            "pauses": paused,
            "processes": processes,
            "successors": heartbeats.successors(processes),
            "overdue_note": overdue_note,
            "db_now": now,
        },
    )


@router.post("/actions/resume")
async def resume_provider(request: Request) -> Response:
    form = await form_of(request)
    provider = form.get("provider")
    if provider not in PROVIDERS:
        raise InvalidInput(f"provider: {str(provider)[:40]!r} is not one of {', '.join(PROVIDERS)}")
    database: Database = request.app.state.database

    def run() -> pauses.Resumed:
        with database.write() as session:
            return pauses.resume(session, provider, now=database_now(session))

    resumed = await run_in_threadpool(run)
    notice = (
        f"polling of {provider} resumes at the next tick; {resumed.tasks_due} held-back "
        f"task{'' if resumed.tasks_due == 1 else 's'} due now"
    )
    return redirect(request, "/", notice=notice)
