"""What every subsystem suite shares: a failed test is marked (`processes.FAILED`), so
that a suite's fixtures can show the serve processes' logs with it."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.harness.processes import FAILED


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report
