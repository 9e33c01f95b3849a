"""The flow table's key index: ids as a dict would give them, whatever the key layout."""

from __future__ import annotations

import numpy as np
import pytest

from detector.flows import groups, table
from detector.flows.table import (
    SALT,
    U64,
    FlowTable,
    KeyIndex,
    KeySet,
    _most_recent,
    address_hash,
    mix64,
)

NEEDS_TABLE = pytest.mark.skipif(table.TABLE is None, reason="the compiled flow table is not built")


def _check(index: KeyIndex, expected: dict[int, int], absent: np.ndarray) -> None:
    keys = np.fromiter(expected, dtype=U64, count=len(expected))
    assert index.lookup(keys).tolist() == [expected[int(k)] for k in keys]
    assert (index.lookup(absent) == -1).all()
    assert index.count == len(expected) == index.cap


def _add(index: KeyIndex, expected: dict[int, int], batch: np.ndarray) -> None:
    """Add a batch of distinct keys; new ones are numbered in the order given."""
    ids, added = index.lookup_or_add(batch)
    for k, i, a in zip(batch.tolist(), ids.tolist(), added.tolist(), strict=True):
        assert a == (k not in expected)
        expected.setdefault(k, len(expected))
        assert i == expected[k]


def test_random_keys_in_batches_sorted_or_not_with_repeats() -> None:
    rng = np.random.default_rng(7)
    pool = np.unique(rng.integers(1, 2**63, size=120_000, dtype=np.uint64))
    rng.shuffle(pool)
    index, expected = KeyIndex(), {}
    for n, start in enumerate(range(0, 96_000, 7_000)):
        # Half the batch is new, half repeats keys already added; every other batch unsorted.
        fresh = pool[start : start + 3_500]
        seen = pool[max(0, start - 3_500) : start]
        batch = np.unique(np.concatenate([fresh, seen]))
        _add(index, expected, batch if n % 2 else rng.permutation(batch))
    _check(index, expected, pool[100_000:])


def test_keys_at_both_ends_and_between_the_ones_held() -> None:
    # New keys go before the first key held, after the last, and several into one gap; 0 and
    # the largest key are keys like any other.
    top = np.uint64(2**64 - 1)
    index, expected = KeyIndex(), {}
    assert index.lookup(np.array([0, 5, top], dtype=U64)).tolist() == [-1, -1, -1]
    _add(index, expected, np.array([100, 200, 300], dtype=U64))
    _add(index, expected, np.array([250, 0, 400, 201, top, 299, 100], dtype=U64))
    _add(index, expected, np.array([1, 99, 301], dtype=U64))
    _check(index, expected, np.array([2, 98, 202, 302, 2**63], dtype=U64))
    index.rebuild(np.array([top, 250, 0], dtype=U64))
    _check(index, {2**64 - 1: 0, 250: 1, 0: 2}, np.array([100, 200, 1], dtype=U64))
    _add(index, expected := {2**64 - 1: 0, 250: 1, 0: 2}, np.array([7, 0, 251], dtype=U64))
    _check(index, expected, np.array([1, 2, 3], dtype=U64))


def test_groups_give_what_np_unique_gives() -> None:
    rng = np.random.default_rng(3)
    for n, span in ((0, 5), (1, 5), (9, 3), (5_000, 2**64 - 1), (5_000, 700)):
        keys = rng.integers(0, span, size=n, dtype=np.uint64, endpoint=True)
        want = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        got = groups.group(keys)
        for a, b in zip(got, want[:3], strict=True):
            assert a.tolist() == b.tolist()
        assert groups.distinct(keys).tolist() == want[0].tolist()
        assert [a.tolist() for a in groups.count(keys)] == [want[0].tolist(), want[3].tolist()]
        # Membership in a sorted set of some of them, and of keys never drawn.
        for members in (keys[: n // 3], keys[:1], keys[:0], np.array([0, 2**64 - 1], dtype=U64)):
            held = groups.distinct(members)
            at, got_in = groups.locate(held, keys)
            assert got_in.tolist() == np.isin(keys, members).tolist()
            assert at.tolist() == np.searchsorted(held, keys).tolist()
    # Integers over a short range (table) and a long one (sort), negative ones too.
    for values in (rng.integers(-5, 40, size=300), rng.integers(0, 2**40, size=300), []):
        values = np.asarray(values, dtype=np.int64)
        want = np.unique(values, return_inverse=True)
        assert [a.tolist() for a in groups.spread(values)] == [w.tolist() for w in want]


def test_eviction_keeps_what_a_full_sort_would() -> None:
    # Streams' flows first, then the latest batch, then the latest time, then the lowest row;
    # few batches and times so that the cut falls among ties.
    rng = np.random.default_rng(5)
    for n, room in ((2_000, 1_500), (2_000, 200), (2_000, 40), (300, 299), (300, 1)):
        kept = rng.random(n) < 0.05
        seen = rng.integers(0, 6, size=n)
        last = rng.integers(0, 4, size=n).astype(np.float64)
        for times in (last, np.where(rng.random(n) < 0.3, np.nan, last)):  # NaN: a broken clock
            want = np.lexsort((-times, -seen, ~kept))[:room]
            got = _most_recent(kept, seen, times, room)
            assert sorted(got.tolist()) == sorted(want.tolist())


def test_key_set_counts_what_a_set_would() -> None:
    rng = np.random.default_rng(11)
    keys, held = KeySet(), set()
    for size in (0, 1, 50, 3_000, 3_000, 10):
        batch = np.unique(rng.integers(0, 20_000, size=size, dtype=np.uint64))
        assert keys.add(batch) == len(set(batch.tolist()) - held)
        held |= set(batch.tolist())
        assert keys.keys.tolist() == sorted(held) and keys.count == len(held)
    assert keys.add(np.array([0, 2**64 - 1], dtype=U64)) == (0 not in held) + 1


def test_address_hash_is_the_salted_hash_of_the_address_words() -> None:
    rng = np.random.default_rng(13)
    addr = rng.integers(0, 2**32, size=(500, 4), dtype=np.uint32)
    a = addr.astype(U64)
    with np.errstate(over="ignore"):
        first = mix64(((a[:, 0] << U64(32)) | a[:, 1]) ^ SALT)
        want = mix64(first ^ ((a[:, 2] << U64(32)) | a[:, 3]) * U64(0x9E3779B97F4A7C15))
    assert address_hash(addr).tolist() == want.tolist()
    assert address_hash(addr[::2]).tolist() == want[::2].tolist()  # a strided view too


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=NEEDS_TABLE)])
def test_columns_grow_no_further_than_the_flows_a_table_can_hold(compiled: bool) -> None:
    """A table of at most 1,000 flows, given batches of up to 300 new ones: its columns hold
    room for the flows it can hold before an eviction (1,300), not the next power of two."""
    table = FlowTable(max_flows=1000, batch_rows=300, compiled=compiled)
    rng = np.random.default_rng(5)
    for second in range(12):
        keys = rng.integers(1, 1 << 62, 300, dtype=np.uint64)
        ts = np.full(300, float(second))
        table.update(keys, np.zeros(300, np.int8), np.full(300, 17), np.full(300, 60), ts)
        if table.full():
            table.expire(float(second))
        assert len(table) <= 1300
        assert len(table.key) <= 1300
    assert table.total_flows == 3600
