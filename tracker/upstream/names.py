"""The providers tracker can follow, by name: pure data the rest of the code validates against."""

from __future__ import annotations

__all__ = ["DEFAULT_PROVIDER", "PROVIDERS"]

DEFAULT_PROVIDER = "tensorslab"
PROVIDERS: tuple[str, ...] = (DEFAULT_PROVIDER,)
