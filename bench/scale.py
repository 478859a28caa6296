"""Scale of the scheduler: the time of one tick's claim against big tables and a small one.

Scratch PostgreSQL databases are migrated with tracker's own migrations and bulk-loaded in
SQL (`INSERT ... SELECT FROM generate_series`, no ORM rows): the big ones with `--scale-rows`
tracked tasks each (default 1,000,000 and 10,000,000), the small one with
`--scale-baseline-rows` (100,000). In each, `--scale-active-fraction` of the rows are live (10 %)
and have a row in `scheduled_polls` (their due time and lease), and exactly `--scale-due` of
those are due (1,000), spread evenly among the live ones; the rest are terminal, with no
scheduled poll.

Claims are timed twice on each table. First as loaded: the scheduled polls lie in the order the
tasks were registered, so the due rows are spread over the whole table, one page each at the
big sizes (a bulk registration looks like this until its first round of polls). Then after one
round of polls: every live task's next due time is written again by tracker's own
`rescheduling.reschedule`, in due order, a claim's worth of rows at a time (`TRACKER_CLAIM_LIMIT`),
as workers write each batch they polled; this is the layout a running tracker keeps, where the
rows due at one tick were polled (and written) at one tick. The targets are read on the second.

Each timed claim is what beat's tick does: one transaction (begin, `claim_due_tasks` from
`tracker.tasks.polling` with the default claim limit, lease and batch size, commit). The claim
leases every due row; between timings the claimed rows are put back exactly as they were
(untimed), so every claim sees the same due rows. Claims at both sizes alternate, so both see the
same machine.
The claim's statement is captured as SQLAlchemy sends it and run under `EXPLAIN (ANALYZE,
BUFFERS)` in a transaction that is rolled back.

    python -m bench.scale [--scale-rows 1000000 10000000] [--scale-baseline-rows 100000]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, text

from bench.result import Row, ScenarioResult
from bench.stack import bench_database
from tracker import db
from tracker.db.clock import utc_now
from tracker.settings import Settings
from tracker.tasks import rescheduling
from tracker.tasks.polling import claim_due_tasks

__all__ = ["QUICK", "SCENARIO", "add_arguments", "run"]

SCENARIO = "scale of the scheduler"
INDEX = "ix_scheduled_polls_next_poll_at"
TARGET_P99_MS = 20.0  # p99 at the first big size (1,000,000 rows)
TARGET_GROWTH = 1.2  # p99 against the small table's, at the bigger sizes (10,000,000 rows)

QUICK: dict[str, Any] = {
    "scale_rows": [20_000, 40_000],
    "scale_baseline_rows": 2_000,
    "scale_due": 100,
    "scale_claims": 20,
    "scale_warmup": 3,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale (scenario 3)")
    group.add_argument(
        "--scale-rows",
        type=int,
        nargs="+",
        default=[1_000_000, 10_000_000],
        help="tracked tasks, big tables (one database each)",
    )
    group.add_argument(
        "--scale-baseline-rows", type=int, default=100_000, help="tracked tasks, small"
    )
    group.add_argument(
        "--scale-active-fraction", type=float, default=0.1, help="share of rows not terminal"
    )
    group.add_argument("--scale-due", type=int, default=1_000, help="due rows at each claim")
    group.add_argument("--scale-claims", type=int, default=200, help="timed claims per size")
    group.add_argument("--scale-warmup", type=int, default=10, help="untimed claims per size")


@dataclass(frozen=True, slots=True)
class Shape:
    rows: int
    active: int
    due: int

    @property
    def terminal(self) -> int:
        return self.rows - self.active

    @property
    def step(self) -> int:
        """Every `step`-th live row is due, so the due rows are spread among the live ones."""
        return self.active // self.due

    @property
    def label(self) -> str:
        return f"tracker, {self.rows:,} rows"


@dataclass(slots=True)
class Table:
    """One loaded database and what was measured on it."""

    shape: Shape
    url: str
    now: datetime
    load_s: float
    timings_ms: list[float] = field(default_factory=list)
    registered_ms: list[float] = field(default_factory=list)  # claims before the poll round
    write_ms: list[float] = field(default_factory=list)  # the bare UPDATE of the same rows
    statement: tuple[str, dict[str, Any]] | None = None
    plan: str = ""


# The rows: ids 1..terminal are finished tasks; the live ones follow (LOAD_SCHEDULE: their
# scheduled polls), every `step`-th of them due before `now`, the others due within the next
# 20 s after it.
LOAD = """
WITH p AS (
    SELECT CAST(:now AS timestamptz) AS now, CAST(:rows AS bigint) AS rows,
           CAST(:terminal AS bigint) AS terminal, CAST(:step AS bigint) AS step,
           CAST(:due AS bigint) AS due
)
INSERT INTO tracked_tasks (
    id, provider, task_id, status, result_urls, details, task_metadata, upstream_message,
    created_at, updated_at, completed_at, last_polled_at,
    poll_count, error_count, consecutive_errors
)
SELECT
    g, 'tensorslab', 'bench-' || g,
    CASE WHEN live THEN 'processing' WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END,
    CASE WHEN live OR g % 10 = 0 THEN '[]'::jsonb
         ELSE jsonb_build_array('https://cdn.example/videos/' || g || '.mp4') END,
    '{"resolution": "720p", "duration": 5, "fps": 24, "ratio": "16:9"}'::jsonb,
    '{}'::jsonb,
    CASE WHEN NOT live AND g % 10 = 0 THEN 'moderation' END,
    now - (rows - g) * interval '50 milliseconds',
    now - (rows - g) * interval '40 milliseconds',
    CASE WHEN NOT live THEN now - (rows - g) * interval '40 milliseconds' END,
    now - interval '10 seconds',
    20, 0, 0
FROM p, LATERAL (
    SELECT g, g > p.terminal AS live FROM generate_series(CAST(1 AS bigint), p.rows) AS g
) AS numbers
"""

LOAD_SCHEDULE = """
WITH p AS (
    SELECT CAST(:now AS timestamptz) AS now, CAST(:terminal AS bigint) AS terminal,
           CAST(:step AS bigint) AS step, CAST(:due AS bigint) AS due
)
INSERT INTO scheduled_polls (task_pk, provider, next_poll_at)
SELECT
    id, provider,
    CASE WHEN (id - terminal) % step = 0 AND id - terminal <= step * due
             THEN now - (id % 1000) * interval '1 millisecond'
         ELSE now + (1 + (id * 7919) % 20000) * interval '1 millisecond' END
FROM p, tracked_tasks WHERE id > p.terminal
"""

# Puts claimed rows back as the load left them (a due row's time depends on its id only).
RESET = """
UPDATE scheduled_polls
SET next_poll_at = CAST(:now AS timestamptz) - (task_pk % 1000) * interval '1 millisecond',
    lease_token = NULL, lease_expires_at = NULL
WHERE task_pk = ANY(:ids)
"""


def load(shape: Shape, url: str) -> Table:
    now = utc_now()
    started = time.perf_counter()
    engine = db.get_engine(url)
    parameters = {
        "now": now,
        "rows": shape.rows,
        "terminal": shape.terminal,
        "step": shape.step,
        "due": shape.due,
    }
    with engine.begin() as connection:
        connection.execute(text(LOAD), parameters)
        connection.execute(text(LOAD_SCHEDULE), parameters)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE tracked_tasks"))
        connection.execute(text("VACUUM ANALYZE scheduled_polls"))
    due = _count_due(engine, now)
    if due != shape.due:
        raise RuntimeError(f"loaded {due} due rows, wanted {shape.due}")
    return Table(shape, url, now, time.perf_counter() - started)


def poll_round(table: Table, settings: Settings) -> float:
    """Every live task's next due time written again by tracker's reschedule, as workers write
    the batches they polled: in due order, `claim_limit` rows per transaction, each leased
    first (the reschedule writes held rows only). Due times are unchanged. Returns seconds."""
    started = time.perf_counter()
    engine = db.get_engine(table.url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT task_pk, provider, next_poll_at FROM scheduled_polls "
                "ORDER BY next_poll_at, task_pk"
            )
        ).all()
    for start in range(0, len(rows), settings.claim_limit):
        chunk = rows[start : start + settings.claim_limit]
        token = uuid.uuid4().hex
        with db.session_scope(table.url) as session:
            session.execute(
                text("UPDATE scheduled_polls SET lease_token = :token WHERE task_pk = ANY(:ids)"),
                {"token": token, "ids": [row.task_pk for row in chunk]},
            )
            rescheduling.reschedule(
                session,
                token,
                [rescheduling.NextPoll(r.task_pk, r.provider, r.next_poll_at) for r in chunk],
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE scheduled_polls"))
    if _count_due(engine, table.now) != table.shape.due:
        raise RuntimeError("the poll round changed which rows are due")
    return time.perf_counter() - started


def _count_due(engine: Engine, now: datetime) -> int:
    with engine.connect() as connection:
        count = connection.execute(
            text("SELECT count(*) FROM scheduled_polls WHERE next_poll_at <= :now"), {"now": now}
        ).scalar_one()
    return int(count)


def claim_once(table: Table, settings: Settings) -> tuple[float, list[int]]:
    """One tick's claim, timed from begin to commit; returns (ms, the leased ids)."""
    started = time.perf_counter()
    with db.session_scope(table.url) as session:
        claims = claim_due_tasks(
            session,
            now=table.now,
            limit=settings.claim_limit,
            lease_s=settings.poll_lease_s,
            batch_size=settings.poll_batch_size,
        )
    elapsed_ms = (time.perf_counter() - started) * 1000
    ids = [pk for claim in claims for pk in claim.row_ids]
    if len(ids) != table.shape.due:
        raise RuntimeError(f"a claim took {len(ids)} rows, {table.shape.due} were due")
    return elapsed_ms, ids


# The write alone: the claim's SET (the lease; the due time stays) on the same rows, found by
# primary key.
BARE_WRITE = """
UPDATE scheduled_polls
SET lease_token = :token, lease_expires_at = CAST(:until AS timestamptz)
WHERE task_pk = ANY(:ids)
"""


def bare_write(table: Table, ids: list[int], settings: Settings) -> float:
    """The claimed rows written again without the search, timed from begin to commit (ms)."""
    until = table.now + timedelta(seconds=settings.poll_lease_s)
    started = time.perf_counter()
    with db.get_engine(table.url).begin() as connection:
        connection.execute(text(BARE_WRITE), {"until": until, "token": "x" * 32, "ids": ids})
    return (time.perf_counter() - started) * 1000


def reset(table: Table, ids: list[int]) -> None:
    with db.get_engine(table.url).begin() as connection:
        connection.execute(text(RESET), {"now": table.now, "ids": ids})


@contextmanager
def capture_claim_statement(table: Table) -> Iterator[None]:
    """Record the claim's UPDATE exactly as SQLAlchemy hands it to the driver."""
    engine = db.get_engine(table.url)

    def before(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE SCHEDULED_POLLS") and (
            "SKIP LOCKED" in statement.upper()
        ):
            table.statement = (statement, dict(parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)


def explain(table: Table) -> str:
    """`EXPLAIN (ANALYZE, BUFFERS)` of the captured claim, rolled back: nothing is leased."""
    if table.statement is None:
        raise RuntimeError("no claim statement was captured")
    statement, parameters = table.statement
    with db.get_engine(table.url).connect() as connection:
        transaction = connection.begin()
        try:
            lines = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
            ).scalars()
            return "\n".join(str(line) for line in lines)
        finally:
            transaction.rollback()


def measure(
    tables: list[Table], *, claims: int, warmup: int, settings: Settings, registered: bool = False
) -> None:
    """Alternate claims between the tables; time `claims` of each after `warmup` untimed.

    After each claim, the same rows are also written by a bare UPDATE by id (timed apart):
    the part of a claim's time that is the write itself, whatever finds the rows. With
    `registered`, the claims go to `registered_ms` and no bare write is timed.
    """
    for round_number in range(warmup + claims):
        for table in tables:
            elapsed_ms, ids = claim_once(table, settings)
            reset(table, ids)
            timed = round_number >= warmup
            if registered:
                if timed:
                    table.registered_ms.append(elapsed_ms)
                continue
            write_ms = bare_write(table, ids, settings)
            reset(table, ids)
            if timed:
                table.timings_ms.append(elapsed_ms)
                table.write_ms.append(write_ms)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 200 timings is the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def target_of(table: Table, ratio99: float, *, first: bool) -> tuple[str, bool]:
    """A big table's p99 target and whether it is met: at most TARGET_P99_MS at the first big
    size, at most TARGET_GROWTH times the small table's p99 at the bigger ones."""
    if first:
        return f"<= {TARGET_P99_MS:g} ms", _p99(table.timings_ms) <= TARGET_P99_MS
    return f"<= {TARGET_GROWTH:g}x the small table", ratio99 <= TARGET_GROWTH


def rows_for(bigs: list[Table], small: Table) -> list[Row]:
    rows = [
        Row(subject=small.shape.label, metric="claim p50 (ms)", value=_median(small.timings_ms)),
        Row(subject=small.shape.label, metric="claim p99 (ms)", value=_p99(small.timings_ms)),
    ]
    for index, big in enumerate(sorted(bigs, key=lambda table: table.shape.rows)):
        ratio50 = _median(big.timings_ms) / _median(small.timings_ms)
        ratio99 = _p99(big.timings_ms) / _p99(small.timings_ms)
        target, met = target_of(big, ratio99, first=index == 0)
        rows += [
            Row(
                subject=big.shape.label,
                metric="claim p50 (ms)",
                value=_median(big.timings_ms),
                ratio=ratio50,
                baseline=small.shape.label,
            ),
            Row(
                subject=big.shape.label,
                metric="claim p99 (ms)",
                value=_p99(big.timings_ms),
                ratio=ratio99,
                baseline=small.shape.label,
                target=target,
                met=met,
            ),
        ]
    rows += [
        Row(
            subject=f"{t.shape.label}, as registered (before a round of polls)",
            metric=f"claim p{name} (ms)",
            value=figure(t.registered_ms),
            ratio=None if t is small else figure(t.registered_ms) / figure(small.registered_ms),
            baseline=None if t is small else f"{small.shape.label}, as registered",
        )
        for t in (small, *sorted(bigs, key=lambda table: table.shape.rows))
        for name, figure in (("50", _median), ("99", _p99))
    ]
    rows += [
        Row(
            subject=f"bare UPDATE of the claimed rows by id, {t.shape.rows:,} rows",
            metric=f"write p{name} (ms)",
            value=figure(t.write_ms),
            ratio=figure(t.write_ms) / figure(t.timings_ms),
            baseline=f"{t.shape.label}, claim p{name}",
        )
        for t in (small, *bigs)
        for name, figure in (("50", _median), ("99", _p99))
    ]
    rows += [
        Row(
            subject=big.shape.label,
            metric=f"EXPLAIN uses {INDEX} (1 = yes)",
            value=1.0 if _uses_index(big.plan) else 0.0,
            target="an index scan, no sequential scan",
            met=_uses_index(big.plan),
        )
        for big in bigs
    ]
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _p99(values: list[float]) -> float:
    return percentile(values, 0.99)


def shape_of(rows: int, args: argparse.Namespace) -> Shape:
    active = max(args.scale_due, round(rows * args.scale_active_fraction))
    if active > rows:
        raise ValueError(f"--scale-due {args.scale_due} is more than the {rows} rows")
    return Shape(rows=rows, active=active, due=args.scale_due)


def run(args: argparse.Namespace) -> ScenarioResult:
    settings = Settings(database_url="sqlite://")  # tracker's defaults, not the environment
    small_shape = shape_of(args.scale_baseline_rows, args)
    with ExitStack() as stack:
        small = load(
            small_shape, stack.enter_context(bench_database("postgres", "bench_scale_small"))
        )
        bigs = [
            load(
                shape_of(rows, args),
                stack.enter_context(bench_database("postgres", f"bench_scale_{rows}")),
            )
            for rows in args.scale_rows
        ]
        tables = [*bigs, small]
        measure(
            tables,
            claims=args.scale_claims,
            warmup=args.scale_warmup,
            settings=settings,
            registered=True,
        )
        round_s = {table.shape.rows: poll_round(table, settings) for table in tables}
        for table in tables:
            stack.enter_context(capture_claim_statement(table))
        measure(tables, claims=args.scale_claims, warmup=args.scale_warmup, settings=settings)
        for table in tables:
            table.plan = explain(table)
        server = server_settings(small.url)
    largest = max(bigs, key=lambda table: table.shape.rows)
    statement = largest.statement[0] if largest.statement else ""
    return ScenarioResult(
        scenario=SCENARIO,
        rows=tuple(rows_for(bigs, small)),
        parameters={
            "small table": _describe(small),
            **{f"big table, {big.shape.rows:,} rows": _describe(big) for big in bigs},
            "timed claims per size": args.scale_claims,
            "untimed warm-up claims per size": args.scale_warmup,
            "TRACKER_CLAIM_LIMIT": settings.claim_limit,
            "TRACKER_POLL_LEASE_S": settings.poll_lease_s,
            "TRACKER_POLL_BATCH_SIZE": settings.poll_batch_size,
            "timed": "one transaction: begin, claim_due_tasks(), commit (as beat's tick)",
            "round of polls (rescheduling.reschedule of every live row, VACUUM ANALYZE) (s)": {
                f"{rows:,} rows": round(seconds, 1) for rows, seconds in round_s.items()
            },
            "PostgreSQL settings": server,
        },
        notes=(
            "Each claim leases every due row; the rows are put back between claims (untimed). "
            "Claims alternate between the tables. The figures are after a round of polls "
            "(the module docstring) unless the subject says `as registered`.",
            f"The claim's SQL, as SQLAlchemy sends it:\n\n```sql\n{statement}\n```",
            f"EXPLAIN (ANALYZE, BUFFERS) at {largest.shape.rows:,} rows (rolled back):\n\n"
            f"```\n{largest.plan}\n```",
            _write_share(largest),
            _layout_note(largest, small),
            "The plans at "
            + ", ".join(f"{t.shape.rows:,}" for t in tables if t is not largest)
            + " rows "
            + (
                "use the same index."
                if all(_uses_index(t.plan) for t in tables)
                else "do NOT all use the index."
            ),
        ),
    )


def _write_share(table: Table) -> str:
    share = statistics.median(table.write_ms) / statistics.median(table.timings_ms)
    executed = re.search(r"Execution Time: ([\d.]+) ms", table.plan)
    inside = (
        f"The claim's statement itself ran in {float(executed.group(1)):.1f} ms in the plan "
        f"above, of a {_median(table.timings_ms):.1f} ms median claim: the rest is the "
        "transaction's round trips (begin, `SET LOCAL`, the pauses' query, the statement, "
        "commit) and SQLAlchemy. "
        if executed
        else ""
    )
    return (
        f"Where a claim's time goes, at {table.shape.rows:,} rows: {inside}Writing the "
        f"{table.shape.due:,} leases alone (a bare UPDATE by primary key, same SET, in its own "
        f"transaction) takes {share:.0%} of the claim's median; finding and locking the rows: "
        f"{_scanned(table)} for {table.shape.due:,} due rows. A claim reads and writes "
        "only `scheduled_polls`: one small row per live task (task, provider, due time, lease) "
        "with two indexes (its primary key and its due time), none for terminal tasks, so "
        "neither the number of finished tasks nor the width of `tracked_tasks` rows enters it."
    )


def _layout_note(big: Table, small: Table) -> str:
    def ratios(values: Callable[[Table], list[float]]) -> str:
        parts = []
        for name, figure in (("50", _median), ("99", _p99)):
            value = figure(values(big))
            parts.append(f"p{name} {value:.1f} ms, {value / figure(values(small)):.2f}x")
        return ", ".join(parts)

    return (
        f"Why the live tasks no longer count: at {big.shape.rows:,} rows "
        f"({big.shape.active:,} live), the claims as registered ({ratios(_registered)} the small "
        f"table's) find {big.shape.due:,} due rows on as many pages (every {big.shape.step:,}th "
        "live row), where the small table's share a few dozen. After a round of polls "
        f"({ratios(_after_round)}) the rows due together lie together: a batch's next due times "
        "are written by delete and insert, in due order (`tracker/tasks/rescheduling.py`). The "
        "claim itself writes the lease alone, in place (a HOT update: no index entry, "
        "`fillfactor = 50` leaves the room) and finds the chosen rows again by `ctid` (the Tid "
        "Scan above), not through a primary key that has an entry per live task."
    )


def _registered(table: Table) -> list[float]:
    return table.registered_ms


def _after_round(table: Table) -> list[float]:
    return table.timings_ms


def _scanned(table: Table) -> str:
    """How many index entries the plan's scan of the due index read (dead ones included)."""
    for line in table.plan.splitlines():
        if INDEX in line:
            found = re.search(r"actual time=\S+ rows=(\d+)", line)
            if found:
                return f"{int(found.group(1)):,} index entries read"
    return "the index entries read"


def server_settings(url: str) -> dict[str, str]:
    names = ("autovacuum", "shared_buffers", "synchronous_commit", "work_mem")
    with db.get_engine(url).connect() as connection:
        return {name: str(connection.exec_driver_sql(f"SHOW {name}").scalar()) for name in names}


def _uses_index(plan: str) -> bool:
    return INDEX in plan and "Seq Scan on scheduled_polls" not in plan


def _describe(table: Table) -> dict[str, Any]:
    return {
        "rows": table.shape.rows,
        "live": table.shape.active,
        "due at each claim": table.shape.due,
        "terminal": table.shape.terminal,
        "load + VACUUM ANALYZE (s)": round(table.load_s, 1),
    }


def main() -> None:
    from bench.__main__ import run_alone

    run_alone("scale")


if __name__ == "__main__":
    main()
