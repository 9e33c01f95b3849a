"""Command-line options of the unit suite, and the start of the long work some tests wait for
as soon as the unit tests begin."""

from __future__ import annotations

import pytest
from mwtest import EARLY


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="rewrite tests/formats/ from this scan of the samples (after reviewing the diff)",
    )


def _waits_early(item: pytest.Item) -> bool:
    return any(name in EARLY for name in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The tests that wait for long work started early (mwtest.EARLY) run last, in their order:
    # the work has the whole run to get done beside the other tests.
    items.sort(key=_waits_early)


_STARTS: list[str] = []  # fixtures whose early work starts with the first unit test


def pytest_collection_finish(session: pytest.Session) -> None:
    """The long work of the selected tests (mwtest.EARLY), the work of the test that runs first
    first."""
    if session.config.option.collectonly:
        return
    first: dict[str, int] = {}
    for n, item in enumerate(session.items):
        for name in getattr(item, "fixturenames", ()):
            if name in EARLY:
                first.setdefault(name, n)
    _STARTS[:] = sorted(first, key=first.__getitem__)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Started with the first unit test, not before: the end-to-end tests (run first) time real
    # emitters and would share their cores with it.
    if _STARTS and "e2e" not in item.path.parts:
        for fixture in _STARTS:
            EARLY[fixture]()
        _STARTS.clear()
