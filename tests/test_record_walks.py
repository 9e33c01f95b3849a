"""The compiled record walks and the Python ones are the same walk.

Every column of every batch, the packets' bytes and every error message must be identical
whichever walk reads a file: random, mutated, truncated and garbage pcap files (both byte orders,
micro- and nanosecond, Kuznetzov's patched records) and pcapng files (sections of either byte
order, interfaces, enhanced, simple and obsolete packet blocks), read in small and large blocks
and batches.  The chain functions themselves are compared on random bytes and bounds, and the
compiled ones must refuse bounds outside their buffers.  The CI run is derandomised;
``MIRRORWATCH_FUZZ_EXAMPLES=N`` multiplies the examples and draws new ones.
"""

from __future__ import annotations

import io
import struct
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mwtest import fuzz, printed_with_and_without_pure_python

from detector.capture import reader, walks
from detector.capture.reader import PCAP_MAGICS, CaptureError, InputStats, read_batches
from detector.compiled import built

# Imported directly: MIRRORWATCH_PURE_PYTHON only steers the reader.
COMPILED = built("detector.capture._walk")
pytestmark = pytest.mark.skipif(
    COMPILED is None,
    reason="the compiled record walk is not built (pip install -e . with a C compiler and the "
    "Python headers builds it)",
)

# Lengths a hostile file puts in a length field: around zero, the limits and 2^32.
EDGE_U32 = [0, 1, 15, 16, 31, 32, 33, 262144, 262145, 1 << 24, 0x7FFFFFFF, 0x80000000,
            0xFFFFFFF0, 0xFFFFFFFC, 0xFFFFFFFF]  # fmt: skip


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes overwritten, inserted, deleted, zeroed, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["u32", "bytes", "insert", "delete", "zeros"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "u32":
            order = draw(st.sampled_from("<>"))
            value = draw(st.sampled_from(EDGE_U32) | st.integers(0, 0xFFFFFFFF))
            out[at : at + 4] = struct.pack(order + "I", value)
        elif kind == "bytes":
            out[at : at + 4] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 40))]
        else:
            out[at : at + draw(st.integers(1, 300))] = bytes(300)
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return bytes(out)


@st.composite
def pcap_files(draw: st.DrawFn) -> bytes:
    magic = draw(st.sampled_from(sorted(PCAP_MAGICS)))
    endian = PCAP_MAGICS[magic][0]
    patched = magic in reader.PATCHED_PCAP
    snaplen = draw(st.sampled_from([0, 96, 65535, 262144, 1 << 20, 1 << 24, 0xFFFFFFFF]))
    link = draw(st.sampled_from([1, 0, 101, 0x10000001]))
    out = bytearray(magic + struct.pack(endian + "HHiIII", 2, 4, 0, 0, snaplen, link))
    for _ in range(draw(st.integers(0, 30))):
        body = draw(st.binary(max_size=90))
        incl = len(body)
        orig = draw(st.sampled_from([incl, incl + 100, max(0, incl - 1), 0, 0xFFFFFFFF]))
        sec = draw(st.sampled_from([0, 1700000000, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF))
        frac = draw(st.sampled_from([0, 999999, 999999999, 0xFFFFFFFF]) | st.integers(0, 1 << 32))
        out += struct.pack(endian + "IIII", sec, frac % (1 << 32), incl, orig)
        if patched:
            out += draw(st.binary(min_size=8, max_size=8))
        out += body
    return draw(mutations(bytes(out)))


def _block(endian: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    blen = 12 + len(body)
    return struct.pack(endian + "II", btype, blen) + body + struct.pack(endian + "I", blen)


@st.composite
def interface_block(draw: st.DrawFn, endian: str) -> bytes:
    link = draw(st.sampled_from([1, 101, 147, 0]))
    snap = draw(st.sampled_from([0, 64, 65535]))
    options = b""
    if draw(st.booleans()):  # if_tsresol: a power of ten or of two
        res = draw(st.sampled_from([6, 9, 3, 0x80 | 10, 0x80 | 30]))
        options = struct.pack(endian + "HHB3xHH", 9, 1, res, 0, 0)
    return _block(endian, 1, struct.pack(endian + "HHI", link, 0, snap) + options)


@st.composite
def pcapng_files(draw: st.DrawFn) -> bytes:
    out = bytearray()
    for _section in range(draw(st.integers(1, 2))):
        endian = draw(st.sampled_from("<>"))
        out += _block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
        kinds = ["idb"] * draw(st.sampled_from([1, 1, 2, 0])) + draw(
            st.lists(st.sampled_from(["epb"] * 6 + ["idb", "spb", "pb", "other"]), max_size=25)
        )
        for kind in kinds:
            body = draw(st.binary(min_size=1, max_size=70))
            if kind == "idb":
                out += draw(interface_block(endian))
            elif kind in ("epb", "pb"):
                iface = draw(st.sampled_from([0, 0, 1, 2, 7]))
                cap = draw(st.sampled_from([len(body), len(body), 0, len(body) + 4, 0xFFFFFFFF]))
                orig = draw(st.sampled_from([len(body), len(body) + 9, 0]))
                tsh, tsl = draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFFFFFF))
                if kind == "epb":
                    head = struct.pack(endian + "IIIII", iface, tsh, tsl, cap, orig)
                    out += _block(endian, 6, head + body)
                else:
                    head = struct.pack(endian + "HHIIII", iface, 0, tsh, tsl, cap, orig)
                    out += _block(endian, 2, head + body)
            elif kind == "spb":
                out += _block(endian, 3, struct.pack(endian + "I", len(body) + 3) + body)
            else:
                out += _block(endian, draw(st.sampled_from([5, 0x80000001, 4])), body)
    return draw(mutations(bytes(out)))


def batch_contents(b: reader.PacketBatch) -> tuple[list[object], ...]:
    """Every column of a batch, and its packets' bytes, as lists to compare."""
    return (
        b.offsets.tolist(),
        b.caplen.tolist(),
        b.wirelen.tolist(),
        # Compared as bits: NaN stands for no time, and must match too.
        b.ts.view(np.int64).tolist(),
        b.linktype.tolist(),
        [b.packet(i) for i in range(len(b))],
    )


def _read_all(
    data: bytes, compiled: ModuleType | None, block: int, per_batch: int, piece: int = 1 << 30
) -> dict:
    """Everything a read gives: columns and packets of every batch, errors, or the refusal
    (each block read ``piece`` bytes at a time)."""
    batches: list[tuple[list[object], ...]] = []
    stats = InputStats("mem")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(walks, "compiled", compiled)
        mp.setattr(reader, "BLOCK_SIZE", block)
        mp.setattr(reader, "MAX_BATCH_RECORDS", per_batch)
        mp.setattr(reader, "READ_PIECE", piece)
        reader.release_blocks()  # a spare block of another size must not serve this read
        refused = None
        try:
            for b in reader.reading(read_batches(io.BytesIO(data), stats), stats):
                assert b.offsets.dtype == np.int64 and b.caplen.dtype == np.int64
                assert b.wirelen.dtype == np.int64 and b.ts.dtype == np.float64
                assert b.linktype.dtype == np.int32
                batches.append(batch_contents(b))
        except CaptureError as exc:
            refused = str(exc)
        reader.release_blocks()
    packets = sum(len(b[0]) for b in batches)
    return {"batches": batches, "errors": stats.errors, "packets": packets, "refused": refused}


def _same_read(data: bytes, block: int, per_batch: int) -> dict:
    python = _read_all(data, None, block, per_batch)
    native = _read_all(data, COMPILED, block, per_batch)
    assert native == python
    return native


BLOCKS = st.sampled_from([64, 200, 1000, 4096, 1 << 20])
PER_BATCH = st.sampled_from([1, 3, 65_536])


@fuzz(150)
@given(data=pcap_files(), block=BLOCKS, per_batch=PER_BATCH)
def test_pcap_files_read_the_same(data: bytes, block: int, per_batch: int) -> None:
    _same_read(data, block, per_batch)


@fuzz(150)
@given(data=pcapng_files(), block=BLOCKS, per_batch=PER_BATCH)
def test_pcapng_files_read_the_same(data: bytes, block: int, per_batch: int) -> None:
    _same_read(data, block, per_batch)


@fuzz(150)
@given(
    data=pcap_files(),
    block=BLOCKS,
    per_batch=PER_BATCH,
    piece=st.sampled_from([1, 5, 16, 17, 100, 1000]),
    native=st.booleans(),
)
def test_pcap_records_walked_as_pieces_arrive_read_the_same(
    data: bytes, block: int, per_batch: int, piece: int, native: bool
) -> None:
    """A classic pcap block is walked as each piece of it is read (while its bytes are in the
    cache): whatever the piece size, every batch, packet and error is what a walk of the whole
    block gives, damaged records included."""
    compiled = COMPILED if native else None
    assert _read_all(data, compiled, block, per_batch, piece) == _read_all(
        data, compiled, block, per_batch
    )


@fuzz(50)
@given(
    head=st.sampled_from([*sorted(PCAP_MAGICS), reader.PCAPNG_SHB]),
    rest=st.binary(max_size=2000),
    block=BLOCKS,
)
def test_garbage_after_a_magic_reads_the_same(head: bytes, rest: bytes, block: int) -> None:
    _same_read(head + rest, block, 65_536)


def test_the_differential_reads_see_packets_and_damage() -> None:
    """The generated files are read as packets and as damage, both walks agreeing: a file of
    sound records, and the same with a length near 2^32 in its second record."""
    magic = b"\x4d\x3c\xb2\xa1"  # nanoseconds, little-endian
    sound = magic + struct.pack("<HHiIII", 2, 4, 0, 0, 65535, 1)
    for i in range(5):
        sound += struct.pack("<IIII", 1700000000 + i, 999_999_999, 60, 80) + bytes([i]) * 60
    whole = _same_read(sound, 1 << 20, 65_536)
    assert whole["packets"] == 5 and whole["errors"] == []
    ((offsets, caplen, wirelen, ts, _links, packets),) = whole["batches"]
    assert offsets == [16 + 76 * i for i in range(5)] and caplen == [60] * 5  # after the header
    assert wirelen == [80] * 5 and packets[4] == b"\x04" * 60
    assert np.array(ts).view(np.float64)[1] == 1700000001 + 999_999_999 * 1e-9
    damaged = bytearray(sound)
    struct.pack_into("<I", damaged, 24 + 76 + 8, 0xFFFFFFF0)
    broken = _same_read(bytes(damaged), 1 << 20, 65_536)
    assert broken["packets"] == 4
    assert any("captured length 4294967280 is impossible" in e for e in broken["errors"])


# The chain functions alone, on any bytes and any bounds inside the buffer.


def _columns(rows: int) -> tuple[np.ndarray, ...]:
    # Rows the walk does not fill must stay as they were: start from the same marks.
    return (*(np.full(rows, -7, dtype=np.int64) for _ in range(3)), np.full(rows, -7.0))


@st.composite
def bounds(draw: st.DrawFn, starts: list[int], size: int) -> tuple[int, int]:
    """Where a walk starts (mostly where a record does) and ends (mostly at the buffer's end)."""
    anywhere = draw(st.integers(0, 9)) == 0
    pos = draw(st.integers(0, size) if anywhere else st.sampled_from(starts))
    end = draw(st.integers(0, size) if anywhere else st.sampled_from([size, max(0, size - 1)]))
    return pos, end


def rows() -> st.SearchStrategy[tuple[int, int]]:
    """Rows already filled, and where the walk must stop filling (columns of 9)."""
    return st.sampled_from([0, 0, 0, 1, 4]).flatmap(
        lambda n: st.tuples(st.just(n), st.sampled_from([9, 9, n, n + 1, n + 2]))
    )


@st.composite
def pcap_chain_cases(draw: st.DrawFn) -> tuple:
    """Buffers of record headers whose lengths sit on the walk's edges (zero, the limit and one
    either side, past the end, near 2^32), then bounds and rows anywhere inside."""
    rec_hdr, big = draw(st.sampled_from([16, 24])), draw(st.booleans())
    limit = draw(st.sampled_from([8, 40, 40, 262144, 1, 0]))
    buf, starts = bytearray(), [0]
    for _ in range(draw(st.integers(0, 8))):
        starts.append(len(buf))
        incl = draw(st.integers(1, max(1, min(limit, 48))))
        if draw(st.integers(0, 3)) == 0:
            edges = [0, 1, limit - 1, limit, limit + 1, 0xFFFFFFFF, 0x80000000]
            incl = draw(st.sampled_from(edges)) % (1 << 32)
        orig = draw(st.sampled_from([0, incl, incl + 1, 0xFFFFFFFF]) | st.integers(0, 1 << 32))
        sec, frac = draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFFFFFF))
        order = ">" if big else "<"
        buf += struct.pack(order + "IIII", sec, frac, incl, orig % (1 << 32))
        buf += draw(st.binary(min_size=rec_hdr - 16, max_size=rec_hdr - 16))
        buf += draw(st.binary(min_size=min(incl, 48), max_size=min(incl, 48)))
    buf += draw(st.binary(max_size=20))
    pos, end = draw(bounds(starts, len(buf)))
    n, stop_n = draw(rows())
    unit = draw(st.sampled_from([1e-6, 1e-9]))
    return buf, pos, max(0, end), rec_hdr, limit, big, unit, n, stop_n


@fuzz(300)
@given(case=pcap_chain_cases())
def test_pcap_chain_functions_agree(case: tuple) -> None:
    got = []
    for chain in (walks.pcap_chain, COMPILED.pcap_chain):
        cols = _columns(9)
        got.append((chain(*case, *cols), [c.tobytes() for c in cols]))
    assert got[0] == got[1]


@fuzz(300)
@given(case=pcap_chain_cases(), start=st.integers(0, 60), max_orig=st.sampled_from([48, 1 << 20]))
def test_pcap_resync_functions_agree(case: tuple, start: int, max_orig: int) -> None:
    buf, _pos, end, rec_hdr, limit, big = case[:6]
    start = min(start, len(buf))
    python = walks.pcap_resync(buf, start, end, rec_hdr, limit, big, max_orig)
    assert COMPILED.pcap_resync(buf, start, end, rec_hdr, limit, big, max_orig) == python


def test_pcap_resync_edges() -> None:
    """A record that ends exactly at the end, at the last offset a pair can start; an original
    length exactly at the bound."""
    record = struct.pack("<IIII", 0, 0, 16, 48) + bytes(16)
    cases = [
        (b"\x00" + record, 0, 48),  # the pair would start at end - 32: past the last offset
        (bytes(3) + record + record, 1, 48),
        (bytes(3) + record + record, 1, 47),
    ]
    found = []
    for buf, start, max_orig in cases:
        python = walks.pcap_resync(bytearray(buf), start, len(buf), 16, 64, False, max_orig)
        found.append(python)
        assert COMPILED.pcap_resync(bytearray(buf), start, len(buf), 16, 64, False, max_orig) == (
            python
        )
    assert found == [-1, 3, -1]


@st.composite
def pcapng_chain_cases(draw: st.DrawFn) -> tuple:
    """Buffers of blocks whose types and lengths sit on the enhanced-packet walk's edges."""
    big, max_block = draw(st.booleans()), draw(st.sampled_from([32, 48, 64, 1 << 20]))
    order = ">" if big else "<"
    buf, starts = bytearray(), [0]
    for _ in range(draw(st.integers(0, 8))):
        starts.append(len(buf))
        odd = draw(st.integers(0, 3))  # 0: an odd type, 1: an odd length, else sound
        btype = draw(st.sampled_from([2, 3, 1, 0x0A0D0D0A, 0x06000000, 0x106])) if odd == 0 else 6
        blen = draw(st.integers(8, min(max_block, 80) // 4)) * 4
        if odd == 1:
            edges = [34, 38, 33, 35, 28, 0, max_block + 4, max_block - 2, 0xFFFFFFFC, 0xFFFFFFFF]
            blen = draw(st.sampled_from(edges))
        buf += struct.pack(order + "II", btype, blen)
        buf += draw(st.binary(min_size=min(blen, 80), max_size=min(blen, 80)))[8:]
    buf += draw(st.binary(max_size=20))
    pos, end = draw(bounds(starts, len(buf)))
    n, stop_n = draw(rows())
    return buf, pos, max(0, end), big, max_block, n, stop_n


@fuzz(300)
@given(case=pcapng_chain_cases())
def test_pcapng_chain_functions_agree(case: tuple) -> None:
    got = []
    for chain in (walks.pcapng_chain, COMPILED.pcapng_chain):
        starts = np.full(9, -7, dtype=np.int64)
        got.append((chain(*case, starts), starts.tolist()))
    assert got[0] == got[1]


def test_compiled_chains_refuse_bounds_outside_their_buffers() -> None:
    buf = bytearray(struct.pack("<IIII", 0, 0, 4, 4) + b"abcd") * 3
    cols = _columns(4)
    # A sound call, as the reader makes it: three records.
    assert COMPILED.pcap_chain(buf, 0, len(buf), 16, 100, False, 1e-6, 0, 4, *cols) == (60, 3)
    outside = [
        (0, len(buf) + 1, 0, 4),  # end past the buffer
        (-1, len(buf), 0, 4),  # a negative start
        (0, -5, 0, 4),  # a negative end
        (0, len(buf), 0, 5),  # more rows than the columns hold
        (0, len(buf), 3, 2),  # rows already filled past the stop
        (0, len(buf), -1, 4),
    ]
    for pos, end, n, stop_n in outside:
        with pytest.raises(ValueError):
            COMPILED.pcap_chain(buf, pos, end, 16, 100, False, 1e-6, n, stop_n, *cols)
        with pytest.raises(ValueError):
            COMPILED.pcapng_chain(buf, pos, end, False, 1 << 20, n, stop_n, cols[0])
    for pos, end, _n, _stop_n in outside[:3]:
        with pytest.raises(ValueError):
            COMPILED.pcap_resync(buf, pos, end, 16, 100, False, 1 << 20)
    with pytest.raises(ValueError):  # a record header too short to hold the lengths
        COMPILED.pcap_chain(buf, 0, len(buf), 8, 100, False, 1e-6, 0, 4, *cols)
    # Columns of the wrong type or layout.
    wrong = [np.zeros(4, dtype=np.int32), np.zeros(8, dtype=np.int64)[::2], b"\0" * 32]
    for column in wrong:
        with pytest.raises((TypeError, BufferError, ValueError)):
            COMPILED.pcap_chain(buf, 0, len(buf), 16, 100, False, 1e-6, 0, 4, column, *cols[1:])
    with pytest.raises(TypeError):
        COMPILED.pcap_chain(buf, 0, len(buf), 16, 100, False, 1e-6, 0, 4, *cols[:3], cols[0])
    # The sound chain picks up at its first record; a start past the end walks nothing.
    assert COMPILED.pcap_resync(buf, 0, len(buf), 16, 100, False, 1 << 20) == 0
    assert COMPILED.pcap_resync(buf, 1, len(buf), 16, 100, False, 1 << 20) == 20
    assert COMPILED.pcap_resync(buf, 50, 20, 16, 100, False, 1 << 20) == -1
    assert COMPILED.pcap_chain(buf, 50, 20, 16, 100, False, 1e-6, 0, 4, *cols) == (50, 0)


def test_the_reader_uses_the_compiled_walks_unless_told_not_to() -> None:
    """MIRRORWATCH_PURE_PYTHON=1 makes the reader walk in Python; by default, where the
    extension is built, it walks compiled."""
    code = "from detector.capture import walks; print(walks.in_use())"
    assert printed_with_and_without_pure_python(code) == ("compiled", "Python")
