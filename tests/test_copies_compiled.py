"""The compiled loops of copy matching are the numpy ones.

The sample of native packets (rows, ranks, fingerprints) must be identical whichever form takes
it: from decoded frames of every link type, cut short, overwritten or replaced by random bytes,
with random bytes between them (what a short packet's L4 window reads past its end), and from
columns no decoder would give (negative offsets, lengths past the capture, fragments).  The
size differences of the encrypted-copy test likewise, with windows that are empty or reversed,
and a batch's bytes per open bin with its candidates' rows (shared and repeated endpoints).
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
    RING,
    SLOT_ENDS,
    WIDTH,
    _find,
    _host_bytes_compiled,
    _host_bytes_numpy,
    batch_series,
    fold,
    size_deltas,
)
from detector.flows.fingerprint import l2_words, sample_natives_compiled, sample_natives_numpy

pytestmark = pytest.mark.skipif(
    fingerprint.COPIES is None,
    reason="the compiled copy loops are not built (pip install -e . with a C compiler and the "
    "Python headers builds them)",
)


def same_sample(h: object, caplen: np.ndarray, rows: np.ndarray, keep_below: int) -> int:
    want = sample_natives_numpy(h, caplen, rows, keep_below)  # type: ignore[arg-type]
    got = sample_natives_compiled(h, caplen, rows, keep_below)  # type: ignore[arg-type]
    for w, g in zip(want, got, strict=True):
        assert w.dtype == g.dtype and w.tolist() == g.tolist()
    return len(got[0])


@fuzz(40)
@given(laid_out(), st.integers(0, 17), st.integers(1, 3))
def test_sample_of_decoded_frames(batch: PacketBatch, keep_below: int, stride: int) -> None:
    h = decode_headers_numpy(batch)
    ip = np.nonzero(h.ipver > 0)[0]
    for rows in (ip, ip[::stride], np.arange(len(batch))):
        same_sample(h, batch.caplen, rows, keep_below)


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
    caplen = wild(0, 1600)
    rows = rng.integers(0, n, rng.integers(0, 2 * n), dtype=np.int64)
    for keep_below in (1, 5, 16):
        same_sample(h, caplen, rows, keep_below)


def _first_batch(name: str) -> PacketBatch:
    path = str(PCAPS / name)
    return next(read_batches(open_stream(path), InputStats(path)))


def test_sample_of_a_real_capture_keeps_its_rows() -> None:
    batch = _first_batch("tee-copies.pcap")
    h = decode_headers_numpy(batch)
    ip = np.nonzero(h.ipver > 0)[0]
    assert same_sample(h, batch.caplen, ip, 16) == len(ip) > 20
    assert 0 < same_sample(h, batch.caplen, ip, 2) < len(ip)


@fuzz(60)
@given(laid_out(), st.integers(0, 2**32 - 1))
def test_l2_words(batch: PacketBatch, seed: int) -> None:
    # Rows of every link type, some Ethernet rows whose 12 bytes run past the end of the data.
    rng = np.random.default_rng(seed)
    n = len(batch)
    tail = rng.integers(1, 256, int(rng.integers(0, 20)), dtype=np.uint8)
    batch.data = np.concatenate([batch.data, tail])
    late = rng.random(n) < 0.3
    batch.offsets = np.where(late, len(batch.data) - rng.integers(0, 14, n), batch.offsets)
    batch.offsets = np.maximum(batch.offsets, 0)
    batch.linktype = np.where(late, LINK_ETHERNET, batch.linktype).astype(np.int32)
    rows = rng.integers(0, n, rng.integers(0, 2 * n + 1))
    want, got = l2_words(batch, rows, compiled=False), l2_words(batch, rows, compiled=True)
    for w, g in zip(want, got, strict=True):
        assert w.dtype == g.dtype and w.tolist() == g.tolist()
    with pytest.raises(IndexError):
        l2_words(batch, np.array([n]), compiled=True)


def test_rows_outside_the_batch_are_refused() -> None:
    batch = _first_batch("tee-copies.pcap")
    h = decode_headers_numpy(batch)
    for rows in ([len(batch)], [-1]):
        with pytest.raises(IndexError):
            sample_natives_compiled(h, batch.caplen, np.array(rows), 16)
    columns = ("fragment", "l4", "l3", "iplen", "ipid", "proto", "src", "dst")
    short = SimpleNamespace(**{k: getattr(h, k) for k in columns}, l4h=h.l4h[:, :16])
    with pytest.raises(ValueError):
        sample_natives_compiled(short, batch.caplen, np.arange(len(batch)), 16)  # type: ignore[arg-type]


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
