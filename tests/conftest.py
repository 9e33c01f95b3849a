"""Command-line options of the unit suite."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="rewrite tests/formats/ from this scan of the samples (after reviewing the diff)",
    )
