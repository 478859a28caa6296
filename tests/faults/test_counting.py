"""The campaign's own arithmetic: a transition history that repeats, loops or leaves the
script is counted, one that follows it (skipping statuses no poll saw) is not."""

from __future__ import annotations

import pytest

from tests.faults.campaign import bad_transitions

pytestmark = pytest.mark.faults

PATH = ["pending", "processing", "uploading", "completed"]


@pytest.mark.parametrize(
    ("history", "bad"),
    [
        (
            [
                ("registered", "pending"),
                ("pending", "processing"),
                ("processing", "uploading"),
                ("uploading", "completed"),
            ],
            0,
        ),
        ([("registered", "processing"), ("processing", "completed")], 0),  # statuses skipped
        ([("registered", "pending"), ("registered", "pending")], 1),  # the same change twice
        ([("registered", "pending"), ("pending", "pending")], 1),  # to itself
        ([("registered", "processing"), ("processing", "pending")], 1),  # backwards
        ([("registered", "pending"), ("processing", "completed")], 1),  # from a stale status
        ([("registered", "failed")], 1),  # not in the script
    ],
)
def test_bad_transitions(history: list[tuple[str, str]], bad: int) -> None:
    assert bad_transitions(history, PATH) == bad
