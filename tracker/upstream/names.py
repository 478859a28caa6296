"""The providers tracker can follow, by name: pure data the rest of the code validates against.

`tensorslab` is TensorsLab's video tasks (the first provider; the name is stored in databases,
so it stays), `tensorslab-image` its image tasks. A task is identified by (provider, task ID).
"""

from __future__ import annotations

__all__ = ["DEFAULT_PROVIDER", "IMAGE_PROVIDER", "PROVIDERS", "VIDEO_PROVIDER"]

VIDEO_PROVIDER = "tensorslab"
IMAGE_PROVIDER = "tensorslab-image"
DEFAULT_PROVIDER = VIDEO_PROVIDER
PROVIDERS: tuple[str, ...] = (VIDEO_PROVIDER, IMAGE_PROVIDER)
