"""Command-line options of the unit suite, and the start of the long work some tests wait for
as soon as the tests are collected."""

from __future__ import annotations

import pytest
from mwtest import EARLY


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="rewrite tests/formats/ from this scan of the samples (after reviewing the diff)",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the long work of the selected tests (mwtest.EARLY) before the first test runs, the
    work of the test that runs first first."""
    first: dict[str, int] = {}
    for n, item in enumerate(session.items):
        for name in getattr(item, "fixturenames", ()):
            if name in EARLY:
                first.setdefault(name, n)
    for fixture in sorted(first, key=first.__getitem__):
        EARLY[fixture]()
