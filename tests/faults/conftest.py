"""The fault campaign prints each scenario's one-line summary at the end of the run."""

from __future__ import annotations

import pytest

from tests.faults.campaign import SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("fault campaign")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
