"""Set membership for byte and 16-bit columns by table lookup.

``np.isin`` sorts or loops per call; indexing a 256- or 65536-entry boolean table is one gather,
which matters when a prefilter runs on every payload of every batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt


def lut(values: Iterable[int], bits: int = 8) -> npt.NDArray[np.bool_]:
    """A table ``t`` with ``t[v]`` True exactly for ``v`` in ``values``; index it with a uint8
    column (bits=8) or a 16-bit field (bits=16)."""
    table = np.zeros(1 << bits, dtype=np.bool_)
    table[list(values)] = True
    return table
