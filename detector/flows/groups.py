"""Distinct values and group-by of one batch's keys, by sorting.

``np.unique`` of numpy 2.x finds plain distinct values with a hash set and, asked for first
rows or an inverse, sorts with a stable (merge) sort; on the few thousand uint64 keys of a batch
both are several times slower than numpy's vectorised sort and argsort, which these use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


def _starts(s: npt.NDArray) -> npt.NDArray[np.bool_]:
    """Of sorted values: True where a run of equal values starts."""
    start = np.empty(len(s), dtype=np.bool_)
    start[:1] = True
    np.not_equal(s[1:], s[:-1], out=start[1:])
    return start


def runs(s: npt.NDArray) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Of sorted values: where each run of equal values starts, and its length."""
    at = np.nonzero(_starts(s))[0]
    return at, np.diff(at, append=len(s))


def distinct(values: npt.NDArray) -> npt.NDArray:
    """The distinct values, sorted (``np.unique(values)``)."""
    s = np.sort(values)
    return s[_starts(s)] if len(s) else s


def locate(
    sorted_keys: npt.NDArray, values: npt.NDArray
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Where each of ``values`` is, or would go, among ``sorted_keys`` (the first place, where
    keys repeat), and whether it is there: one binary search, no sort of the values."""
    at = np.searchsorted(sorted_keys, values)
    if not len(sorted_keys):
        return at, np.zeros(len(values), dtype=np.bool_)
    return at, sorted_keys.take(at, mode="clip") == values


def group(
    keys: npt.NDArray,
) -> tuple[npt.NDArray, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Distinct keys (sorted), the first row of each, and each row's group: what
    ``np.unique(keys, return_index=True, return_inverse=True)`` gives."""
    g = sorted_groups(keys)
    return g.keys, g.first, g.inverse


@dataclass(repr=False, eq=False, slots=True)
class Groups:
    """Rows grouped by key with one sort: the distinct keys (sorted), the first row of each,
    each row's group, and the rows in key order with where each group's run starts (for
    ``reduceat`` over any column taken in ``order``)."""

    keys: npt.NDArray
    first: npt.NDArray[np.intp]
    inverse: npt.NDArray[np.intp]
    order: npt.NDArray[np.intp]
    at: npt.NDArray[np.intp]


def sorted_groups(keys: npt.NDArray) -> Groups:
    if not len(keys):
        empty = np.zeros(0, dtype=np.intp)
        return Groups(keys[:0], empty, empty, empty, empty)
    order = np.argsort(keys)
    s = keys[order]
    start = _starts(s)
    at = np.nonzero(start)[0]
    # The sort is not stable: the first row of a group is the least row index in it.
    first = np.minimum.reduceat(order, at)
    inverse = np.empty(len(keys), dtype=np.intp)
    inverse[order] = np.cumsum(start) - 1
    return Groups(s[at], first, inverse, order, at)


@dataclass(repr=False, eq=False, slots=True)
class Ranked:
    """Rows grouped by key, each group's rows in row order: the rows in that order, where each
    group starts in it and its length, and each of its rows' rank in its group."""

    order: npt.NDArray[np.intp]
    at: npt.NDArray[np.intp]
    lengths: npt.NDArray[np.intp]
    rank: npt.NDArray[np.intp]


def ranked(keys: npt.NDArray[np.int64]) -> Ranked:
    """Of non-negative keys (ids well below 2**63 / len(keys)): a stable grouping by one plain
    sort of key * len + row, several times faster than a stable argsort."""
    n = len(keys)
    rows = np.arange(n)
    if not n:
        return Ranked(rows, rows, rows, rows)
    s = np.sort(keys.astype(np.int64) * n + rows)
    order = s % n
    at, lengths = runs(s // n)
    return Ranked(order, at, lengths, rows - np.repeat(at, lengths))


def spread(values: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """Distinct integers (sorted) and each row's group, as ``np.unique(values,
    return_inverse=True)``; values within a few times their count of each other (seconds or
    time bins of a batch) are grouped by a table over their range, without sorting."""
    if not len(values):
        return values[:0], np.zeros(0, dtype=np.intp)
    lo = int(values.min())
    span = int(values.max()) - lo + 1
    if span > 4 * len(values) + 64:
        distinct_values, inverse = np.unique(values, return_inverse=True)
        return distinct_values, inverse.reshape(-1)
    rel = values - lo
    present = np.bincount(rel, minlength=span) > 0
    place = np.cumsum(present) - 1
    return np.nonzero(present)[0] + lo, place[rel]


def count(values: npt.NDArray) -> tuple[npt.NDArray, npt.NDArray[np.intp]]:
    """Distinct values (sorted) and how often each occurs (``return_counts=True``)."""
    s = np.sort(values)
    at, lengths = runs(s)
    return s[at], lengths
