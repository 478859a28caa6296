"""tracker: follows TensorsLab video tasks until they finish, keeps every transition in SQL.

The command line is `tracker` (see `tracker --help`); Python callers use `tracker.Tracker`
(see `tracker.client`); the modules are described in the README.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracker.client import Tracker

__all__ = ["Tracker", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so `import tracker.settings` (and every CLI start) doesn't pay for the use cases.
    if name == "Tracker":
        from tracker.client import Tracker

        return Tracker
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")
