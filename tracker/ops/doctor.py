"""`tracker doctor`: every check an operator needs in the first week, one result per check.

Each check returns a `CheckResult` (ok, warn, fail or skip) with what was found and, when it is
not ok, what to do. A check that cannot run because an earlier one failed (no settings, no
database) is skipped, not failed twice. Nothing here prints, and no result ever holds a secret:
the upstream check's answer is scrubbed of the key, URLs have their passwords masked.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from tracker import db, health
from tracker.db.clock import database_now
from tracker.db.engine import describe_url
from tracker.db.models import WebhookEndpoint
from tracker.errors import TrackerError, one_line
from tracker.ops import heartbeats, overdue
from tracker.settings import Settings, get_settings
from tracker.tasks import queries
from tracker.upstream import PROVIDERS, base, make_provider

__all__ = ["FAIL", "OK", "SKIP", "WARN", "CheckResult", "run_checks"]

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MIN_FREE_BYTES = 200 * 1024 * 1024  # below this, SQLite and the embedded broker fail to write
PROBE_PREFIX = "tracker-doctor-"  # the made-up task ID asked about upstream


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    name: str
    status: str  # OK, WARN, FAIL or SKIP
    detail: str
    fix: str | None = None  # what to do, when it is not ok


def run_checks(load_settings: Callable[[], Settings] = get_settings) -> list[CheckResult]:
    """Run every check, in order; the list always names every check."""
    results: list[CheckResult] = []
    try:
        settings = load_settings()
    except TrackerError as error:
        results.append(
            CheckResult(
                name="settings",
                status=FAIL,
                detail=str(error),
                fix="fix the variables named (environment or .env); the README lists them",
            )
        )
        return results + [_skipped(name, "the settings are invalid") for name in _AFTER_SETTINGS]
    results.append(CheckResult(name="settings", status=OK, detail="valid"))
    database = _check_database(settings)
    results += database
    results.append(_check_broker(settings))
    results.append(_check_upstream(settings))
    if any(result.status == FAIL for result in database):
        reason = "the database cannot be used"
        results += [_skipped(name, reason) for name in _FROM_DATABASE]
    else:
        with db.read_scope() as session:
            results += list(_check_stored(session, settings))
    results += _check_disk(settings)
    return results


_FROM_DATABASE = ("beat", "workers", "overdue", "webhooks", "pauses")
_AFTER_SETTINGS = ("database", "migrations", "broker", "upstream", *_FROM_DATABASE, "disk")


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name=name, status=SKIP, detail=f"not checked: {why}")


def _check_database(settings: Settings) -> list[CheckResult]:
    where = describe_url(settings.database_url)
    try:
        health.check_database(settings.database_url)
    except TrackerError as error:
        return [
            CheckResult(
                name="database",
                status=FAIL,
                detail=str(error),
                fix="start the database or fix TRACKER_DATABASE_URL; "
                "a new one needs `tracker db upgrade`",
            ),
            _skipped("migrations", "the database cannot be used"),
        ]
    return [
        CheckResult(name="database", status=OK, detail=f"{where} answers"),
        _migrations(settings),
    ]


def _migrations(settings: Settings) -> CheckResult:
    from alembic.script import ScriptDirectory

    from tracker.db import migrate

    try:
        head = ScriptDirectory.from_config(migrate.alembic_config(settings.database_url))
        latest = head.get_current_head()
        current = migrate.current_revision(settings.database_url)
    except Exception as error:  # alembic and the driver raise many types; report any one line
        return CheckResult(
            name="migrations",
            status=FAIL,
            detail=f"cannot read the schema's revision: {one_line(error)}",
            fix="check the database, then run `tracker db upgrade`",
        )
    if current == latest:
        return CheckResult(name="migrations", status=OK, detail=f"at {current}, the latest")
    known = current is None or head.get_revision(current) is not None
    if not known:
        return CheckResult(
            name="migrations",
            status=FAIL,
            detail=f"the database is at {current}, which this tracker does not know "
            f"(its latest is {latest})",
            fix="run the tracker version that migrated it, or a newer one",
        )
    return CheckResult(
        name="migrations",
        status=FAIL,
        detail=f"the database is at {current or 'no revision'}; the latest is {latest}",
        fix="run `tracker db upgrade` (with the workers stopped)",
    )


def _check_broker(settings: Settings) -> CheckResult:
    try:
        health.check_broker(settings, timeout_s=3.0)
    except TrackerError as error:
        return CheckResult(
            name="broker",
            status=FAIL,
            detail=str(error),
            fix="start the broker (Redis) or fix TRACKER_BROKER_URL",
        )
    kind = "the embedded broker" if settings.uses_embedded_broker else "the broker"
    return CheckResult(name="broker", status=OK, detail=f"{kind} accepts a connection")


def _check_upstream(settings: Settings) -> CheckResult:
    """Ask every provider's endpoint (video, image) about a made-up task ID: one result, the
    worst of theirs, naming the providers it is about unless all of them share it."""
    name, where = "upstream", settings.tensorslab_base_url
    try:
        probes = {provider: make_provider(settings, provider) for provider in PROVIDERS}
    except TrackerError as error:
        return CheckResult(name=name, status=FAIL, detail=str(error), fix="set TENSORSLAB_API_KEY")
    results = {provider: _probe(settings, client) for provider, client in probes.items()}
    bad = {provider: result for provider, result in results.items() if result.status != OK}
    if not bad:
        return CheckResult(
            name=name,
            status=OK,
            detail=f"{where} answers and accepts the key (a made-up task ID got 404 from "
            f"each provider: {', '.join(results)})",
        )
    failed = [result for result in bad.values() if result.status == FAIL]
    worst = failed[0] if failed else next(iter(bad.values()))
    if len(bad) == len(results):
        return worst
    fine = [provider for provider in results if provider not in bad]
    return dataclasses.replace(
        worst,
        detail=f"{worst.detail} (provider {', '.join(bad)}; {', '.join(fine)} answers as it "
        "should)",
    )


def _probe(settings: Settings, provider: base.Provider) -> CheckResult:
    """What one provider's endpoint answers about a made-up task ID."""
    name, where = "upstream", settings.tensorslab_base_url
    try:
        answer = provider.fetch(f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    finally:
        provider.close()
    key = settings.tensorslab_api_key.get_secret_value() if settings.tensorslab_api_key else ""

    def said(problem: base.UpstreamProblem) -> str:
        text = problem.message
        return text.replace(key, "***") if key else text

    if isinstance(answer, base.TaskMissing | base.TaskReport):
        return CheckResult(
            name=name,
            status=OK,
            detail=f"{where} answers and accepts the key (a made-up task ID got 404)",
        )
    if isinstance(answer, base.Unauthorized):
        return CheckResult(
            name=name,
            status=FAIL,
            detail=f"{where} refused the key: {said(answer)}",
            fix="check TENSORSLAB_API_KEY (and TENSORSLAB_AUTH_SCHEME)",
        )
    if isinstance(answer, base.Unavailable):
        return CheckResult(
            name=name,
            status=FAIL,
            detail=f"cannot reach {where}: {said(answer)}",
            fix="check TENSORSLAB_BASE_URL, DNS and the network (proxy, firewall)",
        )
    if isinstance(answer, base.InsufficientCredits):
        return CheckResult(
            name=name,
            status=FAIL,
            detail=f"{where} accepts the key, but the account has no credits: {said(answer)}",
            fix="add credits to the TensorsLab account",
        )
    if isinstance(answer, base.Throttled):
        return CheckResult(
            name=name,
            status=WARN,
            detail=f"{where} answers but throttles this key (429): {said(answer)}",
            fix="nothing if it passes; else poll less (TRACKER_POLL_MIN_INTERVAL_S)",
        )
    return CheckResult(
        name=name,
        status=FAIL,
        detail=f"{where} answered outside the contract: {said(answer)}",
        fix="check TENSORSLAB_BASE_URL points at TensorsLab's API",
    )


def _check_stored(session: Session, settings: Settings) -> Iterator[CheckResult]:
    now = database_now(session)
    liveness = overdue.read_liveness(session, now=now, settings=settings)
    yield _check_beat(liveness)
    yield _check_workers(session, settings, liveness)
    late = overdue.find_overdue(session, now=now, settings=settings)
    if late is None:
        yield CheckResult(name="overdue", status=OK, detail="no due task is waiting too long")
    else:
        yield CheckResult(
            name="overdue",
            status=FAIL,
            detail=f"{late.count} task{'s' if late.count != 1 else ''} overdue, the oldest by "
            f"{overdue.format_seconds(late.oldest_s)}",
            fix=late.cause,
        )
    yield _check_webhooks(session)
    pauses = queries.provider_pauses(session, now=now)
    if not pauses:
        yield CheckResult(name="pauses", status=OK, detail="no provider is paused")
    else:
        shown = "; ".join(
            f"{p.provider} ({p.cause}) until {p.paused_until:%Y-%m-%d %H:%M:%S} UTC: {p.reason}"
            for p in pauses
        )
        yield CheckResult(
            name="pauses",
            status=FAIL,
            detail=f"polling is paused: {shown}",
            fix="fix the cause (credits, key, network), then `tracker resume` (or wait: a probe "
            "poll re-checks when the pause ends)",
        )


def _check_beat(liveness: overdue.Liveness) -> CheckResult:
    if liveness.beat_alive and liveness.beat_last_seen is not None:
        ago = (liveness.now - liveness.beat_last_seen).total_seconds()
        return CheckResult(
            name="beat",
            status=OK,
            detail=f"ticking (a tick recorded {overdue.format_seconds(ago)} ago)",
        )
    last = liveness.beat_last_seen
    return CheckResult(
        name="beat",
        status=FAIL,
        detail="no beat has ever ticked"
        if last is None
        else f"no beat has ticked since {overdue.format_moment(last, liveness.now)}",
        fix="start `tracker beat` (or `tracker up`, which runs one); run only one",
    )


def _batch(process: heartbeats.ProcessView) -> str:
    if process.last_batch_at is None or not process.last_batch:
        return "no batch yet"
    counts = ", ".join(f"{key} {value}" for key, value in process.last_batch.items())
    return f"last batch {process.last_batch_at:%H:%M:%S}: {counts}"


def _check_workers(session: Session, settings: Settings, liveness: overdue.Liveness) -> CheckResult:
    alive = [
        process
        for process in heartbeats.list_processes(
            session, now=liveness.now, gone_after_s=heartbeats.gone_after_s(settings)
        )
        if process.alive and process.kind != heartbeats.BEAT
    ]
    shown = "; ".join(f"{process.name} ({_batch(process)})" for process in alive)
    missing = []
    if liveness.poll_workers_alive == 0:
        missing.append("no worker polls (`tracker worker` or `--queues polls`)")
    if liveness.webhook_workers_alive == 0:
        missing.append("no worker sends webhooks (`tracker worker` or `--queues webhooks`)")
    if missing:
        return CheckResult(
            name="workers",
            status=FAIL,
            detail="; ".join(missing) + (f"; alive: {shown}" if shown else ""),
            fix="start `tracker worker` (or `tracker up`)",
        )
    return CheckResult(name="workers", status=OK, detail=f"{len(alive)} alive: {shown}")


def _check_webhooks(session: Session) -> CheckResult:
    live = WebhookEndpoint.removed_at.is_(None)
    total = session.scalar(select(func.count()).where(live)) or 0
    disabled = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.disabled_reason)
        .where(live, WebhookEndpoint.enabled.is_(False))
        .order_by(WebhookEndpoint.id)
        .limit(5)
    ).all()
    failing = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.failing_since)
        .where(live, WebhookEndpoint.enabled.is_(True), WebhookEndpoint.failing_since.is_not(None))
        .order_by(WebhookEndpoint.id)
        .limit(5)
    ).all()
    if not disabled and not failing:
        return CheckResult(
            name="webhooks", status=OK, detail=f"{total} endpoints, none failing or disabled"
        )
    parts = [f"endpoint {i} {url} disabled ({reason or 'by hand'})" for i, url, reason in disabled]
    parts += [
        f"endpoint {i} {url} failing since {since:%Y-%m-%d %H:%M} UTC" for i, url, since in failing
    ]
    return CheckResult(
        name="webhooks",
        status=FAIL if disabled else WARN,
        detail="; ".join(parts),
        fix="fix the receiver; then `tracker webhooks enable ID` for a disabled one "
        "(`tracker deliveries` shows the attempts)",
    )


def _check_disk(settings: Settings) -> list[CheckResult]:
    folders: dict[str, Path] = {}
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        folders["the SQLite database"] = Path(url.database).resolve().parent
    if settings.uses_embedded_broker:
        folders["the embedded broker"] = settings.broker_folder.resolve()
    if not folders:
        return [
            CheckResult(
                name="disk",
                status=SKIP,
                detail="the database and the broker are servers: watch their own disks",
            )
        ]
    results = []
    for what, folder in folders.items():
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        free = shutil.disk_usage(existing).free
        shown = f"{free / 1024**3:.1f} GiB free for {what} ({folder})"
        results.append(
            CheckResult(name="disk", status=OK, detail=shown)
            if free >= MIN_FREE_BYTES
            else CheckResult(
                name="disk",
                status=FAIL,
                detail=f"only {shown}",
                fix=f"free space on that disk (at least {MIN_FREE_BYTES // 1024**2} MiB)",
            )
        )
    return results
