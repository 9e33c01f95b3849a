"""Compiled loops: numba's ``njit`` with the machine code cached on disk.

numba keeps the cache in ``__pycache__`` beside each module or, where that cannot be written (a
system-wide install), in ``$NUMBA_CACHE_DIR`` when set, else the user's cache directory
(``~/.cache/numba``).  The first run compiles, later runs load.  Where no cache directory can be
written at all (a service with a read-only file system and no home), functions are compiled on
every run instead: the same results, a slower start, and one line on stderr saying so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from numba import njit

F = TypeVar("F", bound=Callable[..., Any])
_told = False


def compiled(**options: Any) -> Callable[[F], F]:
    """``njit(cache=True, **options)``, or uncached where no cache directory is writable."""

    def wrap(fn: F) -> F:
        try:
            return njit(cache=True, **options)(fn)  # type: ignore[no-any-return]
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if "locator" not in str(exc):
                raise
            _tell()
            return njit(**options)(fn)  # type: ignore[no-any-return]

    return wrap


def _tell() -> None:
    global _told
    if not _told:
        _told = True
        sys.stderr.write(
            "mirrorwatch: no writable cache directory for compiled code (set NUMBA_CACHE_DIR); "
            "compiling on every run\n"
        )
