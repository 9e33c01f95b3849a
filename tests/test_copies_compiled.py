"""The compiled loops of copy matching are the numpy ones.

The sample of native packets (rows, ranks, fingerprints) must be identical whichever form takes
it: from decoded frames of every link type, cut short, overwritten or replaced by random bytes,
with random bytes between them (what a short packet's L4 window reads past its end), and from
columns no decoder would give (negative offsets, lengths past the capture, fragments).  The
size differences of the encrypted-copy test likewise, with windows that are empty or reversed,
and a batch's bytes per open bin with its candidates' rows (shared and repeated endpoints).
Batches of sampled natives are matched against those remembered alike: the same new natives,
ids and index, and the same sightings taken for copies in the same order, with fingerprints
that repeat within and across batches, destinations that differ or are 0, times that go back
or are NaN, and indexes that settle and are pruned between batches.
Rows or windows outside the columns passed are refused.  The CI run is derandomised;
``MIRRORWATCH_FUZZ_EXAMPLES=N`` multiplies the examples and draws new ones.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mwtest import PCAPS, fuzz, printed_with_and_without_pure_python
from test_outer_compiled import laid_out

from detector.capture.reader import InputStats, PacketBatch, open_stream, read_batches
from detector.decode.headers import LINK_ETHERNET, decode_headers_numpy
from detector.flows import copies, fingerprint
from detector.flows.copies import _NativeIndex
from detector.flows.encrypted import (
    MAX_CANDIDATES,
    MAX_DELTA,
    MIN_BYTES,
    MIN_PACKETS,
    RING,
    SLOT_ENDS,
    WIDTH,
    _find,
    _host_bytes_compiled,
    _host_bytes_numpy,
    batch_series,
    bin_groups,
    eligible_rows,
    fold,
    size_deltas,
)
from detector.flows.fingerprint import sample_natives_compiled, sample_natives_numpy
from detector.flows.groups import spread

pytestmark = pytest.mark.skipif(
    fingerprint.COPIES is None,
    reason="the compiled copy loops are not built (pip install -e . with a C compiler and the "
    "Python headers builds them)",
)


def same_sample(batch: object, h: object, rows: np.ndarray, keep_below: int) -> int:
    want = sample_natives_numpy(batch, h, rows, keep_below)  # type: ignore[arg-type]
    got = sample_natives_compiled(batch, h, rows, keep_below)  # type: ignore[arg-type]
    for w, g in zip(want, got, strict=True):
        assert w.dtype == g.dtype and w.tolist() == g.tolist()
    return len(got[0])


def _running_off(batch: PacketBatch, rng: np.random.Generator) -> PacketBatch:
    """``batch`` with random bytes after its data and some of its rows moved to its last bytes
    (their link headers run past the end) or given another link type."""
    n = len(batch)
    tail = rng.integers(1, 256, int(rng.integers(0, 20)), dtype=np.uint8)
    data = np.concatenate([batch.data, tail])
    late = rng.random(n) < 0.3
    offsets = np.maximum(np.where(late, len(data) - rng.integers(0, 14, n), batch.offsets), 0)
    linktype = np.where(late, LINK_ETHERNET, batch.linktype).astype(np.int32)
    other = rng.random(n) < 0.2
    linktype[other] = rng.choice([0, 101, 113, 127], int(other.sum()))
    return PacketBatch(data, offsets, batch.caplen, batch.wirelen, batch.ts, linktype)


@fuzz(40)
@given(laid_out(), st.integers(0, 17), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_sample_of_decoded_frames(
    batch: PacketBatch, keep_below: int, stride: int, seed: int
) -> None:
    h = decode_headers_numpy(batch)
    ip = np.nonzero(h.ipver > 0)[0]
    for b in (batch, _running_off(batch, np.random.default_rng(seed))):
        for rows in (ip, ip[::stride], np.arange(len(batch))):
            same_sample(b, h, rows, keep_below)


@fuzz(100)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300))
def test_sample_of_columns_no_decoder_gives(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)

    def wild(low: int, high: int) -> np.ndarray:
        # Mostly plausible values, some extreme ones.
        v = rng.integers(low, high, n, dtype=np.int64)
        extreme = rng.random(n) < 0.1
        v[extreme] = rng.choice([-(2**62), -1, 0, 2**31, 2**62], int(extreme.sum()))
        return v

    h = SimpleNamespace(
        fragment=rng.random(n) < 0.2, l4=wild(-2, 80), l3=wild(-1, 40), iplen=wild(0, 1600),
        ipid=wild(0, 65536), proto=wild(0, 256),
        src=rng.integers(0, 2**32, (n, 4), dtype=np.uint32),
        dst=rng.integers(0, 2**32, (n, 4), dtype=np.uint32),
        l4h=rng.integers(0, 256, (n, 24), dtype=np.uint8),
    )  # fmt: skip
    data = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8)
    batch = SimpleNamespace(
        caplen=wild(0, 1600), data=data, offsets=rng.integers(0, len(data) + 40, n),
        linktype=rng.choice(np.array([1, 1, 101, 0], np.int32), n),
    )  # fmt: skip
    rows = rng.integers(0, n, rng.integers(0, 2 * n), dtype=np.int64)
    for keep_below in (1, 5, 16):
        same_sample(batch, h, rows, keep_below)


def _first_batch(name: str) -> PacketBatch:
    path = str(PCAPS / name)
    return next(read_batches(open_stream(path), InputStats(path)))


def test_sample_of_a_real_capture_keeps_its_rows() -> None:
    batch = _first_batch("tee-copies.pcap")
    h = decode_headers_numpy(batch)
    ip = np.nonzero(h.ipver > 0)[0]
    assert same_sample(batch, h, ip, 16) == len(ip) > 20
    assert 0 < same_sample(batch, h, ip, 2) < len(ip)
    # Its MAC addresses as the link header holds them.
    got = sample_natives_compiled(batch, h, ip, 16)
    first = batch.data[int(batch.offsets[ip[0]]) :][:12].tobytes()
    assert (int(got[3][0]), int(got[4][0])) == (
        int.from_bytes(first[:6], "big"),
        int.from_bytes(first[6:], "big"),
    )


def test_rows_outside_the_batch_are_refused() -> None:
    batch = _first_batch("tee-copies.pcap")
    h = decode_headers_numpy(batch)
    for rows in ([len(batch)], [-1]):
        with pytest.raises(IndexError):
            sample_natives_compiled(batch, h, np.array(rows), 16)
    columns = ("fragment", "l4", "l3", "iplen", "ipid", "proto", "src", "dst")
    short = SimpleNamespace(**{k: getattr(h, k) for k in columns}, l4h=h.l4h[:, :16])
    with pytest.raises(ValueError):
        sample_natives_compiled(batch, short, np.arange(len(batch)), 16)  # type: ignore[arg-type]
    before = PacketBatch(
        batch.data, batch.offsets - 10**6, batch.caplen, batch.wirelen, batch.ts, batch.linktype
    )
    ip = np.nonzero(h.ipver > 0)[0]
    for form in (sample_natives_compiled, sample_natives_numpy):
        with pytest.raises(IndexError):
            form(before, h, ip, 16)


@fuzz(150)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), st.sampled_from([1, 3, 100, 1700, 2**70]))
def test_bin_groups(seed: int, n: int, span: int) -> None:
    # Bins close together, as far apart as the table allows or just past it, and the least and
    # greatest bins of all (their range does not fit 64 bits).
    rng = np.random.default_rng(seed)
    base = int(rng.integers(-(2**62), 2**62))
    if span > 2**63:
        bins = rng.choice(np.array([-(2**63), 2**63 - 1, 0, base], np.int64), n)
    else:
        bins = base + rng.integers(0, span, n)
    want, got = spread(bins), bin_groups(bins, compiled=True)
    for w, g in zip(want, got, strict=True):
        assert w.dtype == g.dtype and w.tolist() == g.tolist()


def _eligible_inputs(seed: int, n: int, flows: int) -> tuple[np.ndarray, ...]:
    """A batch's rows (some left out, some twice), their flows and directions, and counters
    on both sides of the thresholds."""
    rng = np.random.default_rng(seed)
    proto = rng.choice(np.array([6, 17, 50, 1, 47, 0, 255]), n).astype(np.int64)
    rows = rng.integers(0, n, int(rng.integers(0, 2 * n + 1))) if n else np.zeros(0, np.int64)
    direction = rng.integers(0, 2, len(rows)).astype(np.int8)
    fids = rng.integers(0, flows, len(rows))
    counters = np.stack(
        [rng.integers(MIN_PACKETS - 2, MIN_PACKETS + 2, flows) for _ in range(2)]
        + [rng.integers(MIN_BYTES - 2, MIN_BYTES + 2, flows) for _ in range(2)],
        axis=1,
    ).ravel(order="F")
    return rows, proto, direction, fids, counters


@fuzz(150)
@given(st.integers(0, 2**32 - 1), st.integers(0, 500), st.integers(1, 50))
def test_eligible_rows(seed: int, n: int, flows: int) -> None:
    args = _eligible_inputs(seed, n, flows)
    want = eligible_rows(*args, compiled=False)  # type: ignore[arg-type]
    got = eligible_rows(*args, compiled=True)  # type: ignore[arg-type]
    assert want.dtype == got.dtype and want.tolist() == got.tolist()


def test_eligible_rows_outside_the_columns_are_refused() -> None:
    rows, proto, direction, fids, counters = _eligible_inputs(3, 40, 5)
    for bad_rows, bad_fids in ((rows + 40, fids), (rows, fids + 5), (rows, fids - 5)):
        with pytest.raises(IndexError):
            eligible_rows(bad_rows, proto, direction, bad_fids, counters, compiled=True)
    with pytest.raises(ValueError):
        eligible_rows(rows, proto, direction + 1, fids, counters, compiled=True)
    with pytest.raises(ValueError):
        eligible_rows(rows, proto, direction, fids, counters[:-1], compiled=True)


@fuzz(150)
@given(st.integers(0, 2**32 - 1), st.integers(0, 400), st.integers(0, 60))
def test_size_deltas(seed: int, m: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 1600, m, dtype=np.int64)
    lengths[rng.random(m) < 0.2] = 1 << 40  # the endpoints' own packets
    sizes = rng.integers(0, 1600, k, dtype=np.int64)
    lo = rng.integers(0, m + 1, k, dtype=np.int64)
    hi = np.where(rng.random(k) < 0.8, rng.integers(lo, m + 1), rng.integers(0, m + 1, k))
    want = rng.integers(0, 5, MAX_DELTA, dtype=np.int64)
    got = want.copy()
    size_deltas(lengths, sizes, lo, hi, want, compiled=False)
    size_deltas(lengths, sizes, lo, hi, got, compiled=True)
    assert got.tolist() == want.tolist()


def test_windows_outside_the_lengths_are_refused() -> None:
    lengths, hist = np.arange(10, dtype=np.int64), np.zeros(MAX_DELTA, np.int64)
    one = np.array([5])
    for lo, hi in ((-1, 3), (2, 11)):
        with pytest.raises(IndexError):
            size_deltas(lengths, one, np.array([lo]), np.array([hi]), hist, compiled=True)
    with pytest.raises(TypeError):
        size_deltas(lengths, one, one, one, hist.astype(np.int32), compiled=True)


@fuzz(150)
@given(st.integers(0, 2**32 - 1), st.integers(0, 3000), st.integers(1, 5000))
def test_host_bytes(seed: int, n: int, distinct: int) -> None:
    # Few or many hosts, hashes apart only in their low or high bits, the largest values.
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**64, distinct, dtype=np.uint64, endpoint=False)
    pool[: distinct // 3] &= np.uint64(0xFFFF)
    pool[-1] = np.uint64(2**64 - 1)
    keys = SimpleNamespace(src_host=rng.choice(pool, n), dst_host=rng.choice(pool, n))
    size = rng.integers(0, 65536, n, dtype=np.int64)
    want = _host_bytes_numpy(keys, size)  # type: ignore[arg-type]
    # The compiled table sized for no host, for a few, or for every place.
    for expect in (0, distinct // 7, 2 * n):
        got = _host_bytes_compiled(keys, size, expect)  # type: ignore[arg-type]
        for w, g in zip(want, got, strict=True):
            assert w.dtype == g.dtype and w.tolist() == g.tolist()


def test_host_columns_that_differ_in_length_are_refused() -> None:
    keys = SimpleNamespace(src_host=np.zeros(4, np.uint64), dst_host=np.zeros(3, np.uint64))
    with pytest.raises(ValueError):
        _host_bytes_compiled(keys, np.zeros(4, np.int64))  # type: ignore[arg-type]


@fuzz(150)
@given(st.integers(0, 2**32 - 1), st.integers(0, 60), st.integers(0, 3000))
def test_find(seed: int, k: int, n: int) -> None:
    # Keys that repeat (candidates sharing an endpoint), apart only in their high bits or
    # alike in their low ones, values mostly not among them.
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**64, k, dtype=np.uint64, endpoint=False)
    keys[: k // 3] = (keys[: k // 3] << np.uint64(40)) | np.uint64(7)
    keys = np.sort(np.concatenate([keys, keys[: k // 4]]))
    values = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    if k:
        pick = rng.random(n) < 0.3
        values[pick] = rng.choice(keys, int(pick.sum()))
    want, got = _find(keys, values, compiled=False), _find(keys, values, compiled=True)
    for w, g in zip(want, got, strict=True):
        assert w.dtype == g.dtype and w.tolist() == g.tolist()


def _series_inputs(seed: int, n: int, bins: int, k: int) -> tuple[object, ...]:
    """A batch's columns and ``k`` candidates: hosts and keys that repeat, that differ only in
    their high or low bits, endpoints shared between candidates or a candidate's two alike."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**64, 40, dtype=np.uint64, endpoint=False)
    pool[:10] &= np.uint64(0xFFFF)
    pool[10:20] = (pool[10:20] << np.uint64(48)) | np.uint64(5)
    src, dst = rng.choice(pool, n), rng.choice(pool, n)
    dkey = rng.choice(pool, n) ^ rng.integers(0, 2, n, dtype=np.uint64)
    slots = rng.permutation(MAX_CANDIDATES)[:k].astype(np.int64)
    keys = rng.choice(np.unique(np.concatenate([dkey, pool])), k, replace=False)
    ends = rng.choice(pool, (k, 2))
    alike = rng.random(k) < 0.2
    ends[alike, 1] = ends[alike, 0]
    order = np.argsort(keys)
    hosts = ends.reshape(-1)
    by_host = np.argsort(hosts, kind="stable")
    inv = rng.integers(0, bins, n).astype(np.intp)
    size = rng.integers(0, 65536, n, dtype=np.int64)
    return (bins, inv, size, src, dst, dkey, keys[order], slots[order], hosts[by_host],
            np.repeat(slots, 2)[by_host])  # fmt: skip


@fuzz(150)
@given(st.integers(0, 2**32 - 1), st.integers(0, 3000), st.integers(1, 4), st.integers(0, 24))
def test_batch_series(seed: int, n: int, bins: int, k: int) -> None:
    args = _series_inputs(seed, n, bins, k)
    want = batch_series(*args, compiled=False)  # type: ignore[arg-type]
    got = batch_series(*args, compiled=True)  # type: ignore[arg-type]
    assert want.touched == got.touched
    for name in ("native", "own", "excl", "slot"):
        w, g = getattr(want, name), getattr(got, name)
        assert w.dtype == g.dtype and w.shape == g.shape and w.tolist() == g.tolist(), name


def test_batch_series_refuses_what_does_not_fit() -> None:
    args = list(_series_inputs(3, 50, 2, 5))
    bad_bin = args[:]
    bad_bin[1] = np.where(np.arange(50) == 7, 2, args[1])  # a bin past the last
    with pytest.raises(IndexError):
        batch_series(*bad_bin, compiled=True)  # type: ignore[arg-type]
    unsorted = args[:]
    unsorted[6] = args[6][::-1].copy()
    with pytest.raises(ValueError):
        batch_series(*unsorted, compiled=True)  # type: ignore[arg-type]
    no_slot = args[:]
    no_slot[9] = np.where(np.arange(10) == 3, MAX_CANDIDATES, args[9])
    with pytest.raises(ValueError):
        batch_series(*no_slot, compiled=True)  # type: ignore[arg-type]
    short = args[:]
    short[2] = args[2][:-1]
    with pytest.raises(ValueError):
        batch_series(*short, compiled=True)  # type: ignore[arg-type]


def _fold_inputs(seed: int, n: int, k: int) -> tuple[object, ...]:
    """Bins of bytes whose sums round (whole numbers up to 2**52 beside small ones, so that the
    order of the additions shows), rings and sums already under way, and ``k`` candidates
    counted from before, within or after the ``n`` bins."""
    rng = np.random.default_rng(seed)

    def bytes_of(shape: tuple[int, ...]) -> np.ndarray:
        scale = rng.choice([1, 1 << 12, 1 << 30], shape)
        values = (rng.integers(0, 1 << 22, shape) * scale).astype(np.float64)
        values[rng.random(shape) < 0.3] = 0.0
        return values

    full = bytes_of((RING - 1 + n, WIDTH))
    floats = bytes_of((MAX_CANDIDATES, SLOT_ENDS[-1]))
    excl = bytes_of((MAX_CANDIDATES, n, WIDTH)) * (rng.random((MAX_CANDIDATES, 1, 1)) < 0.7)
    y = bytes_of((MAX_CANDIDATES, n))
    slots = rng.permutation(MAX_CANDIDATES)[:k].astype(np.int64)
    a = int(rng.integers(-(10**6), 10**12))
    first = a + rng.integers(-30, n + 12, k)
    return full, floats, excl, y, slots, first, a


@fuzz(100)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3, 7, 8, 9, 17, 40, 129, 300]),
       st.integers(0, MAX_CANDIDATES))  # fmt: skip
def test_fold(seed: int, n: int, k: int) -> None:
    full, floats, excl, y, slots, first, a = _fold_inputs(seed, n, k)
    want, got = floats.copy(), floats.copy()  # type: ignore[attr-defined]
    fold(full, want, excl, y, slots, first, a, compiled=False)  # type: ignore[arg-type]
    fold(full, got, excl, y, slots, first, a, compiled=True)  # type: ignore[arg-type]
    # Bit for bit: the same additions in the same order.
    assert got.tobytes() == want.tobytes()
    untouched = np.setdiff1d(np.arange(MAX_CANDIDATES), slots)  # type: ignore[arg-type]
    assert (got[untouched] == floats[untouched]).all()  # type: ignore[index]


def test_fold_refuses_what_does_not_fit() -> None:
    full, floats, excl, y, slots, first, a = _fold_inputs(7, 3, 5)
    with pytest.raises(IndexError):
        fold(full, floats, excl, y, np.array([MAX_CANDIDATES]), first[:1], a, compiled=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fold(full[:-1], floats, excl, y, slots, first, a, compiled=True)  # type: ignore[index]
    with pytest.raises(ValueError):
        fold(full, floats, excl[:, :-1], y, slots, first, a, compiled=True)  # type: ignore[index]
    with pytest.raises(ValueError):
        fold(full[: RING - 1], floats, excl, y, slots, first, a, compiled=True)  # type: ignore[index]


@fuzz(60)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_native_index(seed: int, batches: int) -> None:
    # Batches of sorted fingerprints, new and seen before (in either part of the index), the
    # recent part merged into the settled one once it holds a few hundred keys, everything
    # rebuilt now and then: the compiled and numpy forms give the same ids and hold the same
    # index.
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**64, 3000, dtype=np.uint64, endpoint=False)
    pool[:500] &= np.uint64(0xFFF)
    pool[-1] = np.uint64(2**64 - 1)
    pool = np.unique(pool)
    numpy_form, compiled_form = _NativeIndex(), _NativeIndex()
    remembered = np.zeros(0, np.uint64)  # every key at its id
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(copies, "RECENT_KEYS", 300)
        for _ in range(batches):
            keys = np.unique(rng.choice(pool, int(rng.integers(0, 300))))
            want_ids, want_added = numpy_form.lookup_or_add(keys, compiled=False)
            ids, added = compiled_form.lookup_or_add(keys, compiled=True)
            assert ids.dtype == want_ids.dtype and ids.tolist() == want_ids.tolist()
            assert added.dtype == want_added.dtype and added.tolist() == want_added.tolist()
            remembered = np.concatenate([remembered, keys[added]])
            rebuild = rng.random() < 0.05
            for index, compiled in ((numpy_form, False), (compiled_form, True)):
                if rebuild:
                    index.rebuild(remembered)
                else:
                    index.settle(remembered, compiled=compiled)
            for part in ("settled", "recent"):
                a, b = getattr(numpy_form, part), getattr(compiled_form, part)
                assert a.count == b.count
                assert a.keys.tolist() == b.keys.tolist() and a.ids.tolist() == b.ids.tolist()
            probe = rng.choice(pool, 50)
            assert numpy_form.lookup(probe).tolist() == compiled_form.lookup(probe).tolist()


def test_native_index_refuses_keys_out_of_order() -> None:
    index = _NativeIndex()
    with pytest.raises(ValueError):
        index.lookup_or_add(np.array([5, 3], np.uint64), compiled=True)
    with pytest.raises(ValueError):
        index.lookup_or_add(np.array([3, 3], np.uint64), compiled=True)
    keys, ids = np.arange(4, dtype=np.uint64), np.arange(4, dtype=np.int64)
    with pytest.raises(ValueError):  # no room for both parts
        fingerprint.COPIES.index_merge(keys, ids, keys, ids, keys, ids)  # type: ignore[union-attr]


def test_copy_loops_are_compiled_unless_told_not_to() -> None:
    """MIRRORWATCH_PURE_PYTHON=1 makes the engine sample natives and count size differences
    with numpy; by default, where the extension is built, compiled."""
    code = (
        "from detector.flows import encrypted, fingerprint as f; "
        "print(f.sample_natives.__name__, encrypted.size_deltas.__defaults__[0], "
        "encrypted.batch_series.__defaults__[0])"
    )
    plain, pure = printed_with_and_without_pure_python(code)
    assert plain.split() == ["sample_natives_compiled", "True", "True"]
    assert pure.split() == ["sample_natives_numpy", "False", "False"]


@st.composite
def native_batches(draw: st.DrawFn) -> list[tuple[np.ndarray, ...]]:
    """Batches of sampled natives: fingerprints from a small pool (repeats within a batch and
    across batches), a few L2 destinations (0 among them), times mostly rising, some at the
    edge of the TEE window."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = rng.integers(0, 2**64 - 1, size=draw(st.integers(1, 300)), dtype=np.uint64)
    t = 0.0
    out = []
    for _ in range(draw(st.integers(1, 6))):
        k = draw(st.integers(0, 120))
        fps = pool[rng.integers(0, len(pool), size=k)]
        t += draw(st.sampled_from([0.0, 0.1, 0.6, 11.0]))
        if draw(st.booleans()):
            ts = t + np.sort(rng.random(k)) * draw(st.sampled_from([0.0, 0.3, 2.0]))
        else:  # on a grid of quarter seconds: some sightings exactly the TEE window apart
            ts = t + np.sort(rng.integers(0, 8, size=k)) * 0.25
        if draw(st.booleans()):
            ts[rng.random(k) < 0.1] = np.nan
        if draw(st.booleans()):
            ts = ts[::-1].copy()  # times that go back
        l2dst = rng.choice([0, 1, 2, 0xFFFF_FFFF_FFFF], size=k).astype(np.int64)
        l2src = rng.choice([5, 6], size=k).astype(np.int64)
        ranks = rng.integers(0, 16, size=k).astype(np.uint64)
        out.append((fps, ranks, ts, l2dst, l2src, rng.integers(60, 1500, size=k)))
    return out


def _natives_state(m: copies.CopyMatcher, probe: np.ndarray) -> tuple:
    n = len(m)
    plain = {
        key: (pc.matches, pc.estimated_packets, pc.estimated_bytes, pc.first_seen,
              pc.last_seen, pc.delays, pc.pairs, pc.samples, sorted(pc.fps))
        for key, pc in m.plain.items()
    }  # fmt: skip
    columns = [c[:n].tolist() for c in (m.fp, m.ts, m.l2dst, m.l2src, m.rank)]
    return n, m.level, plain, columns, m.index.lookup(probe).tolist()


@fuzz(150)
@given(native_batches(), st.sampled_from([8, 64, 100_000]), st.sampled_from([4, 16, 8192]))
def test_natives_match_alike(batches: list[tuple[np.ndarray, ...]], most: int, recent: int) -> None:
    """Each batch of natives leaves both matchers alike (a small budget prunes them, a small
    recent part settles often)."""
    kept = copies.RECENT_KEYS
    copies.RECENT_KEYS = recent
    try:
        c = copies.CopyMatcher(max_natives=most, compiled=True)
        p = copies.CopyMatcher(max_natives=most, compiled=False)
        probe = np.concatenate([b[0] for b in batches] + [np.array([7], np.uint64)])
        for batch in batches:
            for m in (c, p):
                m.add_natives(*batch, lambda i: ("a", f"b{i % 3}"), lambda i: bytes([i % 256]))
            assert _natives_state(c, probe) == _natives_state(p, probe)
    finally:
        copies.RECENT_KEYS = kept


def test_natives_match_refuses_what_does_not_fit() -> None:
    mod = fingerprint.COPIES
    assert mod is not None
    k = 3
    fps = np.array([5, 5, 9], np.uint64)
    empty_u, empty_i = np.zeros(0, np.uint64), np.zeros(0, np.int64)

    def call(order: list[int], settled_ids: np.ndarray = empty_i, keys: np.ndarray = empty_u,
             pairs: int = 4 * k) -> tuple:  # fmt: skip
        return mod.natives_match(
            fps, np.array(order, np.int64), np.zeros(k), np.ones(k, np.int64), keys,
            settled_ids, empty_u, empty_i, np.zeros(2), np.zeros(2, np.int64),
            np.empty(k, np.uint64), np.empty(k, np.int64), np.empty(k, np.int64),
            np.empty(k, np.uint64), np.empty(k, np.int64), np.empty(pairs, np.int64), 0.5,
        )  # fmt: skip

    assert call([0, 1, 2]) == (2, 2, 0, 0)
    with pytest.raises(ValueError, match="stably"):
        call([1, 0, 2])
    with pytest.raises(ValueError, match="stably"):
        call([2, 0, 1])
    with pytest.raises(IndexError):
        call([0, 1, 3])
    with pytest.raises(ValueError, match="past the natives held"):
        call([0, 1, 2], np.array([2], np.int64), np.array([9], np.uint64))
    with pytest.raises(ValueError, match="do not fit"):
        call([0, 1, 2], pairs=4)
