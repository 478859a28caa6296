"""Task statuses: how upstream codes map to them and which moves between them are allowed."""

from __future__ import annotations

import itertools

import pytest

from tracker.states import TERMINAL_STATUSES, TaskStatus, can_transition, status_from_upstream_code

S = TaskStatus
LIVE = (S.REGISTERED, S.PENDING, S.PROCESSING, S.UPLOADING)
TERMINAL = (S.COMPLETED, S.FAILED, S.NOT_FOUND, S.EXPIRED, S.CANCELLED)


# -- upstream codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param(1, S.PENDING, id="1-pending"),
        pytest.param(2, S.PROCESSING, id="2-processing"),
        pytest.param(3, S.COMPLETED, id="3-completed"),
        pytest.param(4, S.FAILED, id="4-failed"),
        pytest.param(5, S.UPLOADING, id="5-uploading"),
    ],
)
def test_each_documented_upstream_code_maps_to_its_status(code: int, expected: TaskStatus) -> None:
    assert status_from_upstream_code(code) is expected


@pytest.mark.parametrize("code", [0, 6, 7, -1, 1000], ids=lambda c: f"code-{c}")
def test_an_undocumented_upstream_code_is_refused(code: int) -> None:
    with pytest.raises(ValueError, match=str(code)):
        status_from_upstream_code(code)


def test_the_status_values_are_the_stored_strings() -> None:
    assert [s.value for s in TaskStatus] == [
        "registered",
        "pending",
        "processing",
        "uploading",
        "completed",
        "failed",
        "not_found",
        "expired",
        "cancelled",
    ]


# -- terminal statuses ----------------------------------------------------------------------------


def test_terminal_statuses_are_exactly_the_five_final_outcomes() -> None:
    assert set(TERMINAL_STATUSES) == {
        S.COMPLETED,
        S.FAILED,
        S.NOT_FOUND,
        S.EXPIRED,
        S.CANCELLED,
    }
    assert set(LIVE) | set(TERMINAL) == set(TaskStatus)


@pytest.mark.parametrize("status", list(TaskStatus), ids=str)
def test_is_terminal_agrees_with_the_terminal_set(status: TaskStatus) -> None:
    assert status.is_terminal is (status in TERMINAL)


# -- transitions: the full cross product, generated from the rules ----------------------------


def _expected_by_rule(current: TaskStatus, new: TaskStatus) -> bool:
    """The rules as the docs state them, written independently of the implementation."""
    if current in TERMINAL:
        return False  # terminal -> nothing
    if new is S.REGISTERED:
        return False  # nothing moves back to registered
    # staying put is not a transition; a live status may move to any other
    return current is not new


CROSS_PRODUCT = [
    pytest.param(current, new, _expected_by_rule(current, new), id=f"{current}->{new}")
    for current, new in itertools.product(TaskStatus, TaskStatus)
]


@pytest.mark.parametrize(("current", "new", "allowed"), CROSS_PRODUCT)
def test_can_transition_follows_the_rules_for_every_pair(
    current: TaskStatus, new: TaskStatus, allowed: bool
) -> None:
    assert can_transition(current, new) is allowed


def test_the_generated_table_covers_all_81_pairs_with_the_expected_number_allowed() -> None:
    assert len(CROSS_PRODUCT) == 81
    # 4 live sources x 8 targets other than `registered`, minus the 3 same->same among them.
    allowed = [p for p in CROSS_PRODUCT if p.values[2]]
    assert len(allowed) == 4 * 8 - 3


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        pytest.param(S.REGISTERED, S.PENDING, True, id="registered->pending"),
        pytest.param(S.REGISTERED, S.COMPLETED, True, id="registered->completed-at-once"),
        pytest.param(S.REGISTERED, S.NOT_FOUND, True, id="registered->not_found"),
        pytest.param(S.PENDING, S.PROCESSING, True, id="pending->processing"),
        pytest.param(S.PROCESSING, S.UPLOADING, True, id="processing->uploading"),
        pytest.param(S.UPLOADING, S.COMPLETED, True, id="uploading->completed"),
        pytest.param(S.UPLOADING, S.FAILED, True, id="uploading->failed"),
        pytest.param(S.PROCESSING, S.PENDING, True, id="processing->pending-requeued"),
        pytest.param(S.PENDING, S.CANCELLED, True, id="pending->cancelled"),
        pytest.param(S.PROCESSING, S.EXPIRED, True, id="processing->expired"),
        pytest.param(S.PENDING, S.PENDING, False, id="pending->pending-no-move"),
        pytest.param(S.REGISTERED, S.REGISTERED, False, id="registered->registered"),
        pytest.param(S.PENDING, S.REGISTERED, False, id="pending->registered"),
        pytest.param(S.UPLOADING, S.REGISTERED, False, id="uploading->registered"),
        pytest.param(S.COMPLETED, S.PENDING, False, id="completed->pending"),
        pytest.param(S.COMPLETED, S.FAILED, False, id="completed->failed"),
        pytest.param(S.COMPLETED, S.COMPLETED, False, id="completed->completed"),
        pytest.param(S.FAILED, S.COMPLETED, False, id="failed->completed"),
        pytest.param(S.NOT_FOUND, S.PROCESSING, False, id="not_found->processing"),
        pytest.param(S.EXPIRED, S.COMPLETED, False, id="expired->completed"),
        pytest.param(S.CANCELLED, S.PENDING, False, id="cancelled->pending"),
        pytest.param(S.CANCELLED, S.REGISTERED, False, id="cancelled->registered"),
    ],
)
def test_hand_written_transition_rows(current: TaskStatus, new: TaskStatus, allowed: bool) -> None:
    assert can_transition(current, new) is allowed
