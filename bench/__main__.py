"""`python -m bench`: run every benchmark scenario, print the table, write the report.

    python -m bench                       # full sizes; writes bench/results/latest.md and .json
    python -m bench --quick               # small sizes, under a minute; writes to a temp folder
    python -m bench --only scale webhooks --scale-rows 10000000
    python -m bench --help                # every scenario's size flags

Scenarios run in a fixed order, each a module `bench/<name>.py` with `SCENARIO`,
`add_arguments()`, `QUICK` and `run()`. A quick run never writes to `bench/results/`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from bench import report

__all__ = ["SCENARIOS", "main", "run_alone"]

SCENARIOS = ("politeness", "scale", "webhooks", "throughput", "detection")
RESULTS = Path(__file__).resolve().parent / "results"


def load_scenario(name: str) -> ModuleType:
    """Import `bench.<name>`; a missing module stops the run with its name."""
    if importlib.util.find_spec(f"bench.{name}") is None:
        raise SystemExit(
            f"python -m bench: the scenario module bench/{name}.py (bench.{name}) is missing; "
            f"run the others with --only {' '.join(s for s in SCENARIOS if s != name)}"
        )
    module = importlib.import_module(f"bench.{name}")
    for attribute in ("SCENARIO", "add_arguments", "QUICK", "run"):
        if not hasattr(module, attribute):
            raise SystemExit(f"python -m bench: bench/{name}.py has no {attribute}")
    return module


def build_parser(
    modules: dict[str, ModuleType], *, quick: bool, prog: str
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run tracker's benchmarks side by side with their baselines.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for latest.md and latest.json "
        "(default: bench/results, or a temporary folder with --quick)",
    )
    if prog == "python -m bench":
        parser.add_argument(
            "--only", nargs="+", choices=SCENARIOS, metavar="NAME", help=", ".join(SCENARIOS)
        )
    for module in modules.values():
        module.add_arguments(parser)
        if quick:
            parser.set_defaults(**module.QUICK)
    return parser


def _selected(argv: Sequence[str]) -> tuple[bool, list[str]]:
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--quick", action="store_true")
    early.add_argument("--only", nargs="+", choices=SCENARIOS, default=None)
    known, _ = early.parse_known_args(argv)
    chosen = set(known.only or SCENARIOS)
    return known.quick, [name for name in SCENARIOS if name in chosen]


def _output_folder(args: argparse.Namespace, *, write_default: bool) -> Path | None:
    if args.out is not None:
        folder = Path(args.out).resolve()
        if args.quick and folder == RESULTS:
            raise SystemExit("python -m bench: a --quick run never writes to bench/results")
        return folder
    if args.quick:
        return Path(tempfile.mkdtemp(prefix="tracker-bench-quick-"))
    return RESULTS if write_default else None


def execute(modules: dict[str, ModuleType], args: argparse.Namespace, command: str) -> report.Run:
    started_at = report.now()
    machine = report.machine()
    outcomes = []
    for name, module in modules.items():
        print(f"== {module.SCENARIO} (bench/{name}.py)", flush=True)
        started = time.perf_counter()
        try:
            result = module.run(args)
        except Exception:
            error = traceback.format_exc()
            print(error, file=sys.stderr, flush=True)
            outcomes.append(report.Outcome(name, None, time.perf_counter() - started, error))
            continue
        outcomes.append(report.Outcome(name, result, time.perf_counter() - started))
        print(f"   done in {time.perf_counter() - started:.0f} s", flush=True)
    return report.Run(
        command=command,
        quick=bool(args.quick),
        started_at=started_at,
        outcomes=tuple(outcomes),
        machine=machine,
        git=report.git_state(),
    )


def _finish(run: report.Run, folder: Path | None) -> int:
    report.console_table(run.outcomes)
    if folder is not None:
        md_path, json_path = report.write(run, folder)
        print(f"wrote {md_path} and {json_path.name}")
    failed = [outcome.name for outcome in run.outcomes if outcome.error]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quick, names = _selected(argv)
    modules = {name: load_scenario(name) for name in names}
    args = build_parser(modules, quick=quick, prog="python -m bench").parse_args(argv)
    folder = _output_folder(args, write_default=True)
    command = shlex.join(["python", "-m", "bench", *argv])
    return _finish(execute(modules, args, command), folder)


def run_alone(name: str, argv: Sequence[str] | None = None) -> None:
    """`python -m bench.<name>`: one scenario; prints its table, writes files only with --out."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quick = "--quick" in argv
    modules = {name: load_scenario(name)}
    args = build_parser(modules, quick=quick, prog=f"python -m bench.{name}").parse_args(argv)
    folder = _output_folder(args, write_default=False) if args.out else None
    command = shlex.join(["python", "-m", f"bench.{name}", *argv])
    run = execute(modules, args, command)
    for outcome in run.outcomes:
        for note in outcome.result.notes if outcome.result else ():
            print(note, end="\n\n")
    raise SystemExit(_finish(run, folder))


if __name__ == "__main__":
    raise SystemExit(main())
