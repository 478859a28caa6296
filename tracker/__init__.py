"""tracker: follows TensorsLab video tasks until they finish, keeps every transition in SQL.

The command line is `tracker` (see `tracker --help`); the modules are described in the README.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
