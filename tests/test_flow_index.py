"""The flow table's hash index: ids as a dict would give them, whatever the key layout."""

from __future__ import annotations

import numpy as np

from detector.flows.table import U64, HashIndex


def _check(index: HashIndex, expected: dict[int, int], absent: np.ndarray) -> None:
    keys = np.fromiter(expected, dtype=U64, count=len(expected))
    assert index.lookup(keys).tolist() == [expected[int(k)] for k in keys]
    assert (index.lookup(absent) == -1).all()
    assert index.count == len(expected) and index.count <= index.cap // 2


def _add(index: HashIndex, expected: dict[int, int], batch: np.ndarray) -> None:
    """Add a batch of distinct keys; new ones are numbered in the order given."""
    ids, added = index.lookup_or_add(batch)
    for k, i, a in zip(batch.tolist(), ids.tolist(), added.tolist(), strict=True):
        assert a == (k not in expected)
        expected.setdefault(k, len(expected))
        assert i == expected[k]


def test_random_keys_in_batches_with_growth_and_repeats() -> None:
    rng = np.random.default_rng(7)
    pool = np.unique(rng.integers(1, 2**63, size=120_000, dtype=np.uint64))
    rng.shuffle(pool)
    index, expected = HashIndex(), {}
    for start in range(0, 96_000, 7_000):
        # Half the batch is new, half repeats keys already added.
        fresh = pool[start : start + 3_500]
        seen = pool[max(0, start - 3_500) : start]
        _add(index, expected, np.unique(np.concatenate([fresh, seen])))
    assert index.cap > HashIndex.MIN_CAP  # it grew several times
    _check(index, expected, pool[100_000:])


def test_keys_crowding_one_end_of_the_table_wrap_around() -> None:
    # Every key's home slot is among the last 16 of the table: the run of taken slots must
    # wrap past the end, both when a table is laid out afresh and when keys are added to it.
    cap = HashIndex.MIN_CAP
    low = np.arange(cap - 16, cap, dtype=np.uint64)
    keys = (np.arange(1, 3_001, dtype=np.uint64) << np.uint64(20)) | np.tile(low, 200)[:3_000]
    index, expected = HashIndex(), {}
    _add(index, expected, keys[:1_000])
    assert index.cap == cap
    _add(index, expected, keys[1_000:2_000])
    absent = keys[2_000:]
    _check(index, expected, absent)
    index.rebuild(keys[500:1_500][::-1])
    _check(index, {int(k): i for i, k in enumerate(keys[500:1_500][::-1])}, keys[:500])
    _add(index, expected := {int(k): i for i, k in enumerate(keys[500:1_500][::-1])}, keys)
    _check(index, expected, np.array([1, 2, 3], dtype=np.uint64))
