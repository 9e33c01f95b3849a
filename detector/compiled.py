"""The optional compiled extensions (``_walk``, ``_outer``, ``_copies``, ``_table``).

Each is built by ``pip install`` where a C compiler and the Python headers are at hand, and each
has a Python/numpy twin that gives the same results.  ``MIRRORWATCH_PURE_PYTHON=1`` in the
environment makes the product use the twins even where the extensions are built (the tests
compare both forms by importing an extension directly).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

PURE_PYTHON = os.environ.get("MIRRORWATCH_PURE_PYTHON", "") not in ("", "0")


def built(name: str) -> ModuleType | None:
    """The compiled module ``name`` (dotted), or None where the install could not build it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
