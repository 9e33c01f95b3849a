"""The compiled flow accounting is the numpy one.

A flow table accounts batches of rows either in one compiled pass over a hash index
(``_table.c``) or with a sorted index and numpy calls; both must give every row the same flow
id, start the same flows, and hold the same columns and counters after any sequence of batches
and evictions: with keys that repeat within and across batches, keys whose slots in the hash
table collide (built by inverting the mixing), tables at their limit (evicting while full) and
hash tables at the edge of growing, times that repeat, go back or are NaN.  The host set
likewise.  The compiled calls refuse arguments that do not fit instead of reading or writing
past them.  The CI run is derandomised; ``MIRRORWATCH_FUZZ_EXAMPLES=N`` multiplies the
examples and draws new ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mwtest import PCAPS, fuzz, printed_with_and_without_pure_python, uplink_capture

from detector import engine as engine_module
from detector.capture.reader import InputStats, open_stream, read_batches
from detector.engine import Engine
from detector.flows import table
from detector.flows.table import U64, FlowTable, KeySet, SlotIndex, SlotSet, mix64
from detector.limits import Limits

pytestmark = pytest.mark.skipif(
    table.TABLE is None,
    reason="the compiled flow table is not built (pip install -e . with a C compiler and the "
    "Python headers builds it)",
)

_MASK = (1 << 64) - 1


def _unshift(y: int, s: int) -> int:
    """x of y = x ^ (x >> s)."""
    x = y
    for _ in range(64 // s + 1):
        x = y ^ (x >> s)
    return x


def unmix64(y: int) -> int:
    """The key whose :func:`mix64` is ``y`` (the mixing is a bijection of 64-bit values)."""
    y = _unshift(y, 31)
    y = y * pow(0x94D049BB133111EB, -1, 1 << 64) & _MASK
    y = _unshift(y, 27)
    y = y * pow(0xBF58476D1CE4E5B9, -1, 1 << 64) & _MASK
    return _unshift(y, 30)


def test_unmix_inverts_the_mixing() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**64 - 1, size=200, dtype=U64, endpoint=True)
    assert [unmix64(int(k)) for k in mix64(keys)] == keys.tolist()


@st.composite
def key_pools(draw: st.DrawFn) -> list[int]:
    """Distinct keys: random ones, ones alike in their low or high bits, and ones that all take
    the same few slots of the hash table whatever its size (their mixed values share their low
    20 bits)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 80))
    kind = draw(st.sampled_from(["random", "low bits", "high bits", "same slot", "mixed"]))
    anywhere = rng.integers(0, 2**64 - 1, size=n, dtype=U64, endpoint=True).tolist()
    low = [(int(k) << 16 | 0xBEEF) & _MASK for k in anywhere]
    high = [0xABCD << 48 | int(k) % 4096 for k in anywhere]
    same_slot = [unmix64((int(k) << 20 | draw(st.sampled_from([0, 1, 5]))) & _MASK)
                 for k in anywhere]  # fmt: skip
    pools = {"random": anywhere, "low bits": low, "high bits": high, "same slot": same_slot}
    if kind == "mixed":
        pool = [0, _MASK] + [p[i] for i, p in enumerate(pools.values()) for i in range(i, n, 4)]
    else:
        pool = pools[kind]
    return list(dict.fromkeys(pool))


@st.composite
def batches(draw: st.DrawFn, pool: list[int]) -> tuple[np.ndarray, ...]:
    m = draw(st.integers(0, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    keys = np.array(pool, dtype=U64)[rng.integers(0, len(pool), size=m)]
    direction = rng.integers(0, 2, size=m).astype(np.int8)
    proto = rng.choice([6, 17, 47, 0, 255, 40_000, -3], size=m).astype(np.int64)
    wire = rng.choice([0, 60, 1514, 65_535, 2**32 - 1], size=m).astype(np.int64)
    base = draw(st.sampled_from([0.0, 100.0, 1e9, -5.0]))
    ts = base + rng.integers(0, 4, size=m) * draw(st.sampled_from([0.0, 0.5, 60.0, 200.0]))
    if draw(st.booleans()):
        ts[rng.random(m) < 0.1] = np.nan  # a broken clock
    return keys, direction, proto, wire, ts


COLUMNS = ("key", "proto", "quiet", "first", "last", "seen", "counts")


def same_tables(c: FlowTable, p: FlowTable, pool: list[int]) -> None:
    n = len(p)
    assert len(c) == n
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(c, name)[:n], getattr(p, name)[:n], err_msg=name)
    for name in ("total_flows", "shed", "peak_flows", "batches"):
        assert getattr(c, name) == getattr(p, name), name
    keys = np.array([*pool, 12345], dtype=U64)
    assert c.index.lookup(keys).tolist() == p.index.lookup(keys).tolist()
    for k in pool[:5]:
        assert c.counters(k) == p.counters(k)


@fuzz(100)
@given(st.data())
def test_batches_and_evictions_give_the_same_table(data: st.DataObject) -> None:
    pool = data.draw(key_pools())
    max_flows = data.draw(st.sampled_from([4, 16, 33, 1024]))
    timeout = data.draw(st.sampled_from([0.0, 30.0, 120.0]))
    c = FlowTable(timeout, max_flows, compiled=True)
    p = FlowTable(timeout, max_flows, compiled=False)
    assert isinstance(c.index, SlotIndex) and not isinstance(p.index, SlotIndex)
    for _ in range(data.draw(st.integers(1, 8))):
        batch = data.draw(batches(pool))
        got, want = c.update(*batch), p.update(*batch)
        assert got[0].tolist() == want[0].tolist()  # each row's flow id
        assert got[1].tolist() == want[1].tolist()  # the rows that started a flow
        ids = got[0]
        if len(ids):
            # Ids are dense, and new flows are numbered in the order of their first rows.
            assert ids.max() < len(c)
            assert (np.diff(ids[got[1]]) == 1).all()
        quiet = np.unique(ids)[: data.draw(st.integers(0, 3))]
        for t in (c, p):
            t.add_quiet(quiet, np.full(len(quiet), 7))
        same_tables(c, p, pool)
        if data.draw(st.booleans()):
            now = data.draw(st.sampled_from([0.0, 150.0, 1e9 + 500, np.nan]))
            keep = set(data.draw(st.lists(st.sampled_from(pool), max_size=6)))
            assert c.expire(now, keep) == p.expire(now, keep)
            same_tables(c, p, pool)


def test_tables_at_the_edge_of_growing_and_full_of_colliding_keys() -> None:
    """Batches that fill the hash table to exactly half, then one key more, all of whose keys
    take one run of slots; then an eviction that keeps a few, and the same keys again."""
    slots = 1024
    pool = [unmix64(i << 32) for i in range(1, slots + 2)]  # every one's first slot is 0
    c = FlowTable(1.0, 10 * slots, compiled=True)
    p = FlowTable(1.0, 10 * slots, compiled=False)
    c.index = SlotIndex(slots // 2)  # smaller than the limit asks for: it grows past half full
    ones = np.ones(len(pool), dtype=np.int64)
    half = slots // 2
    for part, size in (
        (pool[: half - 3], slots),
        (pool[half - 3 : half], slots),
        (pool[half : half + 1], 2 * slots),
    ):
        # Every row is a new flow: the table is made room for as many.
        keys = np.array(part, dtype=U64)
        m = len(keys)
        batch = (keys, np.zeros(m, np.int8), ones[:m], ones[:m], np.arange(m, dtype=np.float64))
        assert c.update(*batch)[0].tolist() == p.update(*batch)[0].tolist()
        same_tables(c, p, pool)
        assert len(c.index.slots) == size  # half full, then grown when a key more came
    # Every flow is idle: all but the kept ones go, and the hash is rebuilt from those.
    keep = set(pool[5:9])
    for t in (c, p):
        t.max_flows = 8
    assert c.expire(1e6, keep) == p.expire(1e6, keep) == half + 1 - 4
    same_tables(c, p, pool)
    keys = np.array(pool[::-1], dtype=U64)
    m = len(keys)
    batch = (keys, np.ones(m, np.int8), np.ones(m, np.int64), np.ones(m, np.int64), np.full(m, 3.0))
    assert c.update(*batch)[0].tolist() == p.update(*batch)[0].tolist()
    same_tables(c, p, pool)


@fuzz(100)
@given(key_pools(), st.lists(st.tuples(st.integers(0, 60), st.booleans()), max_size=8), st.data())
def test_host_sets_hold_the_same_keys(
    pool: list[int], sizes: list[tuple[int, bool]], data: st.DataObject
) -> None:
    # Made for fewer keys than come (it grows), or for enough.
    c, p = SlotSet(data.draw(st.sampled_from([1, 40, 1024]))), KeySet()
    keys = np.array(pool, dtype=U64)
    rng = np.random.default_rng(len(pool))
    for size, rows_of_two in sizes:
        a = keys[rng.integers(0, len(keys), size=size)]
        if rows_of_two:
            b = keys[rng.integers(0, len(keys), size=size)]
            rows = np.array(data.draw(st.lists(st.integers(0, max(size - 1, 0)), max_size=size)))
            rows = rows[rows < size].astype(np.int64)
            assert c.add_rows(a, b, rows) == p.add_rows(a, b, rows)
        else:
            assert c.add(a) == p.add(np.unique(a))
        assert sorted(c.keys.tolist()) == p.keys.tolist() and c.count == p.count
        if data.draw(st.integers(0, 4)) == 0:  # the count restarts
            c.clear()
            p.clear()
            assert c.count == p.count == 0 and not len(c.keys)


def _engine_tables(path: str, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> tuple:
    monkeypatch.setattr(table, "use_compiled", compiled)
    # Small batches: many of them, each with a few new flows.
    monkeypatch.setattr(engine_module, "MAX_BATCH_ROWS", 700)
    engine = Engine(Limits(flows=1024, hosts=1024))
    with open_stream(path) as stream:
        for batch in read_batches(stream, InputStats(path)):
            engine.process(batch)
    report = [(s.flow_key, s.kind, s.packets) for s in engine.finish()]
    n = len(engine.flows)
    f = engine.flows
    return (report, f.key[:n].tolist(), f.counts[:n].tolist(), f.quiet[:n].tolist(),
            f.total_flows, f.shed, engine.stats.prefiltered, engine.stats.candidates,
            engine.distinct_hosts(), sorted(engine.hosts.keys.tolist()))  # fmt: skip


def test_engine_over_many_flows_counts_the_same(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capture of many more flows and hosts than the limits hold, in small batches: evictions
    while full, and host counts that restart."""
    path = uplink_capture(tmp_path / "uplink.pcap", 30_000)  # type: ignore[operator]
    assert _engine_tables(str(path), True, monkeypatch) == _engine_tables(
        str(path), False, monkeypatch
    )


def test_pure_python_chooses_the_numpy_table() -> None:
    code = (
        "from detector.engine import Engine; e = Engine(); "
        "print(type(e.flows.index).__name__, type(e.hosts).__name__)"
    )
    assert printed_with_and_without_pure_python(code) == ("SlotIndex SlotSet", "KeyIndex KeySet")


def test_calls_that_do_not_fit_are_refused() -> None:
    t = table.TABLE
    assert t is not None
    slots = np.zeros((16, 2), dtype=U64)
    keys = np.arange(9, dtype=U64)
    with pytest.raises(ValueError, match="half full"):
        t.build(slots, keys)  # 9 keys in 16 slots
    with pytest.raises(ValueError, match="power of two"):
        t.build(np.zeros((12, 2), dtype=U64), keys[:2])
    with pytest.raises(ValueError, match="repeat"):
        t.build(slots, np.array([3, 4, 3], dtype=U64))
    with pytest.raises(TypeError):
        t.build(slots, keys.astype(np.int32))
    t.build(slots, keys[:4])
    ids = np.empty(3, dtype=np.int64)
    t.lookup(slots, np.array([2, 3, 99], dtype=U64), ids, 4)
    assert ids.tolist() == [2, 3, -1]
    with pytest.raises(ValueError, match="past the keys held"):
        t.lookup(slots, np.array([3], dtype=U64), ids[:1], 2)  # slots name ids 2 and 3
    zero = np.zeros(1, dtype=np.uint8)
    with pytest.raises(IndexError):
        t.add(np.zeros(16, dtype=U64), zero, keys[:3], np.array([0, 3]), 0)
    with pytest.raises(ValueError, match="half full"):
        t.add(np.zeros(16, dtype=U64), zero, keys, None, 0)  # 9 keys in 16 slots
    with pytest.raises(ValueError, match="power of two"):
        t.add(np.zeros(12, dtype=U64), zero, keys[:2], None, 0)
    assert zero[0] == 0  # a call refused adds nothing
    assert t.add(np.zeros(16, dtype=U64), zero, keys[:3], None, 0) == 3  # 0, 1, 2
    assert zero[0] == 1

    m = 5
    flows = FlowTable(compiled=True)
    flows._room(8)

    def update(direction: np.ndarray, count: int = 0, cap: int = 8) -> int:
        f = flows
        return t.update(
            np.zeros((16, 2), dtype=U64), keys[:m], direction, np.zeros(m, np.int64),
            np.zeros(m, np.int64), np.zeros(m), f.key[:cap], f.proto[:cap], f.quiet[:cap],
            f.first[:cap], f.last[:cap], f.seen[:cap], np.zeros((4, cap), np.int64),
            np.empty(m, np.int64), np.empty(m, np.int64), count, 1,
        )  # fmt: skip

    assert update(np.zeros(m, np.int8)) == m
    f = flows
    for rows in ([1, 1], [2, 0], [0, 9], [-1]):
        with pytest.raises(ValueError, match="ascend"):
            t.keep(np.zeros((16, 2), dtype=U64), np.array(rows, np.int64), f.key, f.proto,
                   f.quiet, f.first, f.last, f.seen, f.counts.T, 5)  # fmt: skip
    with pytest.raises(ValueError, match="neither 0 nor 1"):
        update(np.array([0, 1, 2, 0, 0], np.int8))
    with pytest.raises(ValueError, match="no room"):
        update(np.zeros(m, np.int8), count=4)
    with pytest.raises(ValueError, match="one item per"):
        update(np.zeros(m + 1, np.int8))


def test_sample_captures_count_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in sorted(PCAPS.glob("*.pcap"))[:12]:
        assert _engine_tables(str(path), True, monkeypatch) == _engine_tables(
            str(path), False, monkeypatch
        ), path.name


@st.composite
def payload_rows(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """A batch's payload rows of a few flows: flow ids (rows of one flow together or spread),
    each flow's quiet count (some saturated, some past the rows' budget), each row's budget
    (one for TCP and one for UDP rows, of any value a setting may give), probes, and the rows
    some prefilter accepted."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    flows = draw(st.integers(1, 40))
    m = draw(st.integers(0, 150))
    fids = rng.integers(0, draw(st.integers(1, flows)), size=m).astype(np.int64)
    if draw(st.booleans()):
        fids.sort()
    quiet = rng.choice([0, 1, 3, 7, 8, 9, 254, 255], size=flows).astype(np.uint8)
    budgets = draw(
        st.lists(st.sampled_from([0, 1, 2, 8, 24, 255, 256, 10_000, -1]), min_size=2, max_size=2)
    )
    after = np.array(budgets, np.int64)[fids % 2]
    probes = rng.random(m) < draw(st.sampled_from([0.0, 0.1, 1.0]))
    hit = rng.random(m) < draw(st.sampled_from([0.0, 0.05, 0.5]))
    return fids, after, probes, quiet, hit


@fuzz(200)
@given(payload_rows())
def test_quiet_passes_pick_and_count_the_same_rows(rows: tuple[np.ndarray, ...]) -> None:
    fids, after, probes, quiet, hit = rows
    c, p = FlowTable(compiled=True), FlowTable(compiled=False)
    for t in (c, p):
        t.quiet = quiet.copy()
    looks = c.quiet_looks(fids, after, probes), p.quiet_looks(fids, after, probes)
    assert [a.tolist() for a in looks[0]] == [a.tolist() for a in looks[1]]
    look, young = looks[1]
    assert (look | ~probes).all()  # a probe is always looked at
    more = c.quiet_more(fids, young, look, hit), p.quiet_more(fids, young, look, hit)
    assert more[0].tolist() == more[1].tolist()
    looked = look | more[1]
    for t in (c, p):
        t.quiet_missed(fids, young, looked, hit)
    assert c.quiet.tolist() == p.quiet.tolist()
    assert not c._scratch().any()  # the scratch counts are zero between calls


def test_quiet_passes_refuse_rows_that_do_not_fit() -> None:
    t = table.TABLE
    assert t is not None
    quiet, scratch = np.zeros(4, np.uint8), np.zeros(4, np.int32)
    flags = np.zeros(3, np.bool_)

    def looks(fids: list[int], scratch: np.ndarray = scratch, n: int = 3) -> int:
        after = np.full(n, 8, np.int64)
        return t.quiet_looks(np.array(fids, np.int64), after, flags[:n], quiet, scratch,
                             np.empty(n, np.bool_), np.empty(n, np.bool_))  # fmt: skip

    assert looks([0, 3, 3]) == 3
    for fids in ([0, 4, 1], [-1, 0, 0]):
        with pytest.raises(IndexError, match="not one of the 4 flows"):
            looks(fids)
        with pytest.raises(IndexError):
            t.quiet_more(np.array(fids, np.int64), flags, flags, flags, scratch, flags.copy())
        with pytest.raises(IndexError):
            t.quiet_missed(np.array(fids, np.int64), ~flags, ~flags, flags, quiet, scratch)
    assert not scratch.any() and not quiet.any()  # a call refused changes nothing
    with pytest.raises(ValueError, match="one per flow"):
        looks([0, 1, 2], scratch=np.zeros(5, np.int32))
    with pytest.raises(TypeError):
        looks([0, 1, 2], scratch=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="one item per row"):
        looks([0, 1], n=3)
    with pytest.raises(ValueError, match="one item per row"):
        t.quiet_more(np.zeros(3, np.int64), flags, flags, flags[:2], scratch, flags.copy())
