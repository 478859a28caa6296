"""The benchmark report: the machine, the settings, every scenario's rows, as markdown and JSON.

`write()` produces `latest.md` (a table of every row, then each scenario's parameters and
notes) and `latest.json` (the same, for machines) in one folder; `console_table()` prints the
rows in the terminal.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.result import Row, ScenarioResult
from bench.stack import postgres_version, redis_version

__all__ = ["Outcome", "Run", "console_table", "format_value", "machine", "markdown", "write"]

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("scenario", "subject", "metric", "value", "ratio", "baseline", "target", "met")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One scenario's result, or the error that stopped it, and how long it took."""

    name: str  # the module: "scale"
    result: ScenarioResult | None
    seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    command: str
    quick: bool
    started_at: datetime
    outcomes: tuple[Outcome, ...]
    machine: dict[str, Any]
    git: dict[str, Any]


# -- the machine and the code ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres_version(),
        "redis": redis_version(),
        "load_average_at_start": [round(value, 2) for value in load] if load else None,
    }


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


# -- formatting --------------------------------------------------------------------------------


def format_value(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cells(scenario: str, row: Row) -> tuple[str, ...]:
    return (
        scenario,
        row.subject,
        row.metric,
        format_value(row.value),
        "" if row.ratio is None else f"{row.ratio:.2f}x",
        row.baseline or "",
        row.target or "",
        "" if row.met is None else ("yes" if row.met else "**no**"),
    )


def table_rows(outcomes: Sequence[Outcome]) -> list[tuple[str, ...]]:
    cells: list[tuple[str, ...]] = []
    for outcome in outcomes:
        if outcome.result is None:
            cells.append((outcome.name, "(failed)", outcome.error or "", "", "", "", "", ""))
            continue
        cells.extend(_cells(outcome.result.scenario, row) for row in outcome.result.rows)
    return cells


def markdown_table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    for cells in table_rows(outcomes):
        escaped = (cell.replace("|", "\\|").replace("\n", " ") for cell in cells)
        lines.append("| " + " | ".join(escaped) + " |")
    return "\n".join(lines)


def _parameters(parameters: dict[str, Any]) -> list[str]:
    lines = []
    for name, value in parameters.items():
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        lines.append(f"- {name}: `{shown}`")
    return lines


def markdown(run: Run) -> str:
    mode = "quick mode (small sizes: not figures to quote)" if run.quick else "full sizes"
    git = run.git
    commit = git["commit"][:12] + (" + uncommitted changes" if git["uncommitted_changes"] else "")
    m = run.machine
    parts = [
        "# Benchmark results",
        "",
        f"`{run.command}`, {run.started_at:%Y-%m-%d %H:%M} UTC, {mode}, commit `{commit}`.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores (shared by tracker, the services and the "
        "load generators)",
        f"- RAM: {m['ram_gib']} GiB",
        f"- OS: {m['os']}",
        f"- Python {m['python']}, PostgreSQL {m['postgresql']}, Redis {m['redis']}",
        f"- load average at start: {m['load_average_at_start']}",
        "",
        "## Results",
        "",
        "Ratios compare figures measured side by side in this run.",
        "",
        markdown_table(run.outcomes),
        "",
    ]
    for outcome in run.outcomes:
        title = outcome.result.scenario if outcome.result else outcome.name
        parts += [f"## {title} (`bench/{outcome.name}.py`, {outcome.seconds:.0f} s)", ""]
        if outcome.result is None:
            parts += ["It failed:", "", f"```\n{outcome.error}\n```", ""]
            continue
        parts += ["Parameters:", "", *_parameters(outcome.result.parameters), ""]
        for note in outcome.result.notes:
            parts += [note, ""]
    return "\n".join(parts)


def to_json(run: Run) -> dict[str, Any]:
    return {
        "command": run.command,
        "quick": run.quick,
        "date": run.started_at.isoformat(),
        "git": run.git,
        "machine": run.machine,
        "scenarios": [
            {
                "module": outcome.name,
                "seconds": round(outcome.seconds, 1),
                "error": outcome.error,
                **(outcome.result.to_json() if outcome.result else {}),
            }
            for outcome in run.outcomes
        ],
    }


def write(run: Run, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md_path, json_path = folder / "latest.md", folder / "latest.json"
    md_path.write_text(markdown(run))
    json_path.write_text(json.dumps(to_json(run), indent=2, default=str) + "\n")
    return md_path, json_path


def console_table(outcomes: Sequence[Outcome]) -> None:
    """Print the rows with rich (plain markdown when rich is missing)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency of tracker
        print(markdown_table(outcomes))
        return
    table = Table(show_lines=False)
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
    for cells in table_rows(outcomes):
        table.add_row(*(cell.replace("**", "") for cell in cells))
    Console(width=200).print(table)


def now() -> datetime:
    return datetime.now(UTC)
