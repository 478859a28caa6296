"""The package's shape: no import cycle, arrows that point down, and a small public surface.

Edges (cli, api, ui, worker, client) may use the use cases (tasks, webhooks), which may use the pure
rules and the seams (states, errors, settings, db, upstream); never the other way round.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import tracker

PACKAGE = Path(tracker.__file__).parent

# Which top-level parts of tracker each part may import at module level.
EDGES = {"cli", "api", "ui", "worker", "client", "__main__"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "states": set(),
    "retry_after": set(),
    "http_deadline": set(),
    "settings": {"errors"},
    "db": {"errors", "states", "settings"},
    "upstream": {"errors", "states", "settings", "retry_after", "http_deadline"},
    "webhooks": {"errors", "states", "settings", "db", "upstream", "retry_after", "http_deadline"},
    "tasks": {"errors", "states", "settings", "db", "upstream", "webhooks"},
    "tokens": {"errors", "db"},
    "metrics": {"errors", "states", "settings", "db", "upstream", "tasks"},
    "health": {"errors", "settings", "db", "upstream"},
    "ops": {"errors", "states", "settings", "db", "upstream", "tasks", "webhooks", "health"},
    "testing": {"errors", "states", "settings", "db", "webhooks"},
    "simulator": {"testing"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, known: dict[str, Path], *, lazy: bool) -> Iterator[str]:
    """tracker modules `path` imports: at module level, and inside functions too if `lazy`.

    Imports under `if TYPE_CHECKING:` never run and are left out.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not lazy:
            continue
        for statement in ast.walk(node):
            if isinstance(statement, ast.Import):
                for alias in statement.names:
                    if alias.name.startswith("tracker"):
                        yield alias.name
            elif isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith(
                "tracker"
            ):
                base = statement.module or ""
                for alias in statement.names:
                    candidate = f"{base}.{alias.name}"
                    yield candidate if candidate in known else base


def _graph(*, lazy: bool = False) -> dict[str, set[str]]:
    known = _modules()
    return {
        name: {target for target in _imports(path, known, lazy=lazy) if target != name}
        for name, path in known.items()
    }


def test_there_is_no_import_cycle_even_through_imports_inside_functions() -> None:
    graph = _graph(lazy=True)
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ importing its own submodules is not a cycle between modules.
    real = [cycle for cycle in cycles if len({part.split(".")[1] for part in cycle}) > 1]
    assert real == [], "\n".join(" -> ".join(cycle) for cycle in real)


def test_arrows_point_down_from_the_edges_to_the_rules() -> None:
    wrong = []
    for module, targets in _graph().items():
        part = module.split(".")[1] if "." in module else "__init__"
        if part in EDGES or part == "__init__":
            continue
        for target in targets:
            other = target.split(".")[1] if "." in target else "__init__"
            if other != part and other not in ALLOWED[part]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_public_surface_is_small_and_explicit() -> None:
    assert tracker.__all__ == ["Tracker", "__version__"]
    from tracker import Tracker
    from tracker.client import Tracker as ClientTracker
    from tracker.simulator import Simulator
    from tracker.testing.simulator import Simulator as TestingSimulator

    assert Tracker is ClientTracker and Simulator is TestingSimulator
