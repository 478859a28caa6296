"""`tracker.simulator` is `tracker.testing.simulator`, kept under its first name for callers."""

from tracker.testing.simulator import (
    Faults,
    ScriptError,
    Simulator,
    Status,
    Step,
    TaskScript,
    serve,
)

__all__ = ["Faults", "ScriptError", "Simulator", "Status", "Step", "TaskScript", "serve"]
