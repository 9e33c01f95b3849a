"""The compiled outer header decode, row hashes and payload windows are the numpy ones.

Every column of :class:`Headers` (values and dtypes), every row hash and every payload window
must be identical whichever form computes them: frames of every known link type (one link type
per batch and mixed), deep shim stacks, IPv6 extension chains, fragments, frames cut short,
overwritten or replaced by random bytes, laid out with random bytes between them (what a short
row reads past its end) and with the last row at the very end of the buffer; every batch of the
samples and of the public captures in ../shared/pcaps (the corpus in a longer run).  The
compiled forms must refuse a batch whose packets lie outside its buffer.  The CI run is
derandomised; ``MIRRORWATCH_FUZZ_EXAMPLES=N`` multiplies the examples and draws new ones.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mwtest import FUZZ_SCALE, PCAPS, REAL, fuzz, printed_with_and_without_pure_python
from test_reader import _pcap
from test_walk_property import LINKTYPES, frames

from detector.capture import reader
from detector.capture.reader import InputStats, PacketBatch, open_stream, read_batches, reading
from detector.decode import headers
from detector.decode.frames import InnerPacket, parse_frame
from detector.decode.headers import (
    Headers,
    decode_headers_compiled,
    decode_headers_numpy,
    payload_heads_compiled,
    payload_heads_numpy,
)
from detector.flows import table
from detector.flows.table import row_keys_compiled, row_keys_numpy

pytestmark = pytest.mark.skipif(
    headers.OUTER is None,
    reason="the compiled header decode is not built (pip install -e . with a C compiler and the "
    "Python headers builds it)",
)

UNKNOWN_LINKS = [147, 0xFFFF, 1 << 20, -1]


@st.composite
def laid_out(draw: st.DrawFn) -> PacketBatch:
    """Rows of any link types with random gaps between them, padded or not at the end."""
    one = draw(st.sampled_from([*LINKTYPES, None]))
    data, offsets, caplen, linktype = b"", [], [], []
    for _ in range(draw(st.integers(1, 12))):
        lt = one if one is not None else draw(st.sampled_from([*LINKTYPES, *UNKNOWN_LINKS]))
        frame = draw(frames(lt if lt in LINKTYPES else 1))
        data += draw(st.binary(max_size=draw(st.sampled_from([0, 4, 40]))))
        offsets.append(len(data))
        caplen.append(len(frame))
        linktype.append(lt)
        data += frame
    data += draw(st.sampled_from([b"", bytes(3), bytes(512)]) | st.binary(max_size=30))
    return PacketBatch(
        data=np.frombuffer(data, dtype=np.uint8),
        offsets=np.array(offsets, dtype=np.int64),
        caplen=np.array(caplen, dtype=np.int64),
        wirelen=np.array(caplen, dtype=np.int64),
        ts=np.zeros(len(offsets)),
        linktype=np.array(linktype, dtype=np.int32),
    )


def same_headers(a: Headers, b: Headers) -> None:
    assert a.n == b.n
    for name in Headers.__slots__:
        x, y = getattr(a, name), getattr(b, name)
        if name == "n":
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y), (name, x, y)


def same_keys(batch: PacketBatch, h: Headers) -> None:
    rows = np.nonzero(h.ipver > 0)[0]
    args = (h.src[rows], h.dst[rows], h.sport[rows], h.dport[rows], h.proto[rows])
    a = row_keys_numpy(*args)
    in_place = row_keys_compiled(h.src, h.dst, h.sport, h.dport, h.proto, rows)
    for b in (row_keys_compiled(*args), in_place):
        for name in ("src_host", "dst_host", "flow", "direction", "directed"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), name
    every = np.arange(len(batch))
    for got, want in zip(
        payload_heads_compiled(batch, h, every), payload_heads_numpy(batch, h, every), strict=True
    ):
        assert got.dtype == want.dtype and np.array_equal(got, want)


@fuzz(150)
@given(laid_out())
def test_compiled_decode_equals_numpy_decode(batch: PacketBatch) -> None:
    h = decode_headers_numpy(batch)
    same_headers(decode_headers_compiled(batch), h)
    same_keys(batch, h)


@fuzz(100)
@given(st.binary(min_size=1, max_size=600), st.data())
def test_random_bytes_cut_anywhere(data: bytes, draw: st.DataObject) -> None:
    """Rows cut at random places of random bytes, of random link types, overlapping or not."""
    n = draw.draw(st.integers(1, 20))
    offsets = draw.draw(st.lists(st.integers(0, len(data)), min_size=n, max_size=n))
    caplen = [draw.draw(st.integers(0, len(data) - o)) for o in offsets]
    links = draw.draw(st.lists(st.sampled_from([*LINKTYPES, 147]), min_size=n, max_size=n))
    batch = PacketBatch(
        data=np.frombuffer(data, dtype=np.uint8),
        offsets=np.array(offsets, dtype=np.int64),
        caplen=np.array(caplen, dtype=np.int64),
        wirelen=np.array(caplen, dtype=np.int64),
        ts=np.zeros(n),
        linktype=np.array(links, dtype=np.int32),
    )
    h = decode_headers_numpy(batch)
    same_headers(decode_headers_compiled(batch), h)
    same_keys(batch, h)


@fuzz(100)
@given(
    st.lists(st.tuples(*[st.integers(0, 0xFFFFFFFF)] * 8, st.integers(0, 0xFFFF),
                       st.integers(0, 0xFFFF), st.integers(0, 255)), max_size=40),
    st.integers(0, (1 << 64) - 1),
)  # fmt: skip
def test_row_hashes_equal_for_any_salt(rows: list[tuple[int, ...]], salt: int) -> None:
    cols = np.array(rows, dtype=np.int64).reshape(-1, 11)
    src = cols[:, 0:4].astype(np.uint32)
    dst = cols[:, 4:8].astype(np.uint32)
    old = table.SALT
    try:
        table.SALT = table.U64(salt)
        a = row_keys_numpy(src, dst, cols[:, 8], cols[:, 9], cols[:, 10])
        b = row_keys_compiled(src, dst, cols[:, 8], cols[:, 9], cols[:, 10])
    finally:
        table.SALT = old
    for name in ("src_host", "dst_host", "flow", "direction", "directed"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


# The samples and the public captures; the corpus (some 1,800 files, many link types) only in a
# longer run (MIRRORWATCH_FUZZ_EXAMPLES above 1): reading it takes seconds.
CAPTURES = sorted(
    p
    for root in (PCAPS, REAL, *([REAL.parent / "corpus"] if FUZZ_SCALE > 1 else []))
    for p in (root.rglob("*") if root.is_dir() else [])
    if p.suffix in (".pcap", ".pcapng", ".cap", ".gz")
)


class CountedEarlyDecode(headers.EarlyDecode):
    """The decode of rows as they are read, counting the rows it decoded before their batch was
    complete (a test that never gets there tests nothing)."""

    early_rows = 0

    def finish(self, batch: PacketBatch) -> Headers | None:
        CountedEarlyDecode.early_rows += self.done
        return super().finish(batch)


def test_every_batch_of_the_samples_and_public_captures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real bytes, read as the scan reads them (the rows of classic pcap files decoded as the
    reader walks them, a piece of a block at a time): Ethernet, Linux cooked (v1 and v2), raw
    IP."""
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is absent: only the samples in pcaps/ are compared")
    monkeypatch.setattr(reader, "READ_PIECE", 4096)
    monkeypatch.setattr(headers, "_EARLY_ROWS", 1)
    CountedEarlyDecode.early_rows = 0
    links: set[int] = set()
    for path in CAPTURES:
        stats = InputStats(str(path))
        with open_stream(str(path)) as stream:
            batches = read_batches(stream, stats, early=CountedEarlyDecode())
            for batch in reading(batches, stats):
                h = decode_headers_numpy(batch)
                same_headers(decode_headers_compiled(batch), h)
                if batch.decoded is not None:
                    same_headers(batch.decoded, h)
                same_keys(batch, h)
                links.update(batch.linktype.tolist())
    assert {1, 101, 113, 276} <= links
    assert CountedEarlyDecode.early_rows > 10_000


@fuzz(15)
@given(
    st.sampled_from(LINKTYPES).flatmap(
        # (A record of no bytes is damage, skipped by the reader.)
        lambda lt: st.tuples(
            st.just(lt), st.lists(frames(lt).filter(bool), min_size=1, max_size=12)
        )
    ),
    st.sampled_from([1, 64, 1000, 5000]),
    st.sampled_from([5, 65_536]),
)
def test_rows_decoded_as_they_are_read_equal_the_decode_of_their_batch(
    drawn: tuple[int, list[bytes]], piece: int, per_batch: int
) -> None:
    """Rows decoded while their block is still being read (once DECODE_REACH bytes past them
    are in), the batch's other rows when it is complete: every column is what a decode of the
    whole batch gives, whatever the piece size, the blocks and the batches."""
    linktype, drawn_frames = drawn
    one = sum(len(f) + 16 for f in drawn_frames)
    # Enough records for rows to be decoded before their 64 KiB block is complete.
    data = _pcap(drawn_frames * (3 * (1 << 16) // one + 1), link=linktype)
    CountedEarlyDecode.early_rows = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reader, "BLOCK_SIZE", 1 << 16)
        mp.setattr(reader, "READ_PIECE", piece)
        mp.setattr(reader, "MAX_BATCH_RECORDS", per_batch)
        mp.setattr(headers, "_EARLY_ROWS", 1)
        reader.release_blocks()  # a spare block of another size must not serve this read
        stats = InputStats("mem")
        rows = 0
        for batch in read_batches(io.BytesIO(data), stats, early=CountedEarlyDecode()):
            assert isinstance(batch.decoded, Headers)
            same_headers(batch.decoded, decode_headers_numpy(batch))
            rows += len(batch)
        reader.release_blocks()
    assert rows == len(drawn_frames) * (3 * (1 << 16) // one + 1)
    assert per_batch < 64 or CountedEarlyDecode.early_rows > 0


@fuzz(60)
@given(
    st.sampled_from(LINKTYPES).flatmap(lambda lt: st.tuples(st.just(lt), frames(lt))),
    st.binary(min_size=64, max_size=64),
    st.binary(min_size=64, max_size=64),
)
def test_no_decode_reads_past_its_reach(
    drawn: tuple[int, bytes], tail_a: bytes, tail_b: bytes
) -> None:
    """A row's columns depend on no byte past DECODE_REACH from its start, whatever follows it:
    what lets a row be decoded before the rest of its block is read."""
    linktype, frame = drawn
    reach = headers.DECODE_REACH
    decoded = []
    for tail in (tail_a, tail_b):
        # The frame, whatever its capture says of the bytes after it, then other bytes.
        body = (frame + bytes(range(256)) * (reach // 256 + 1))[:reach]
        data = np.frombuffer(body + tail * 300, dtype=np.uint8)
        batch = PacketBatch(
            data=data,
            offsets=np.zeros(2, dtype=np.int64),
            caplen=np.array([len(frame), reach + 1000], dtype=np.int64),
            wirelen=np.array([len(frame), reach + 1000], dtype=np.int64),
            ts=np.zeros(2),
            linktype=np.full(2, linktype, dtype=np.int32),
        )
        decoded.append(decode_headers_numpy(batch))
    same_headers(*decoded)


def test_the_reach_covers_the_longest_extension_chain() -> None:
    """An IPv6 header followed by as many extension headers of the longest length as the decode
    steps over, then TCP: its transport window lies within DECODE_REACH of the frame's start."""
    ext = 0  # hop-by-hop options, whose length byte counts 8-byte units after the first 8
    chain = b""
    for k in range(headers.MAX_IPV6_EXT):
        nxt = 6 if k == headers.MAX_IPV6_EXT - 1 else ext
        chain += bytes([nxt, 255]) + bytes(2046)
    tcp = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 5 << 4, 0x18, 5, 0, 0)
    ip6 = struct.pack("!IHBB", 6 << 28, len(chain) + len(tcp), ext, 64) + bytes(32)
    frame = bytes(12) + b"\x86\xdd" + ip6 + chain + tcp
    batch = PacketBatch.of_frames([frame], [0.0])
    h = decode_headers_numpy(batch)
    assert h.proto[0] == 6 and h.sport[0] == 1 and h.dport[0] == 2
    assert h.l4[0] + headers.L4_WINDOW <= headers.DECODE_REACH


def test_a_range_of_rows_is_decoded_into_larger_blocks_and_nothing_else() -> None:
    """decode(..., first, stop) writes rows first..stop-1 of blocks holding more rows, the same
    as a decode of the whole batch, and leaves the other rows as they were; bad ranges are
    refused."""
    path = PCAPS / "tzsp.pcap"
    stats = InputStats(str(path))
    with open_stream(str(path)) as stream:
        batch = next(iter(read_batches(stream, stats)))
    whole = decode_headers_compiled(batch)
    n = len(batch)
    m = n + 9  # rows the blocks hold
    blocks = [
        np.full((13, m), -7, np.int64),
        np.full((4, m), 7, np.uint8),
        np.full((2, m, 4), 7, np.uint32),
        np.full((m, headers.L4_WINDOW), 7, np.uint8),
    ]
    cols = (batch.data, batch.offsets, batch.caplen, batch.linktype)
    assert headers.OUTER is not None
    headers.OUTER.decode(headers._TABLES, *cols, *blocks, 2, n - 1)
    got = headers._headers_of(n, tuple(blocks))  # type: ignore[arg-type]
    for name in headers._COLUMNS:
        x, y = getattr(got, name), getattr(whole, name)
        assert np.array_equal(x[2 : n - 1], y[2 : n - 1]), name
    assert (blocks[0][:, :2] == -7).all() and (blocks[0][:, n - 1 :] == -7).all()
    assert (blocks[3][:2] == 7).all() and (blocks[3][n - 1 :] == 7).all()
    for first, stop in ((-1, 2), (3, 2), (0, n + 1), (0, n + 10)):
        with pytest.raises(ValueError, match="rows"):
            headers.OUTER.decode(headers._TABLES, *cols, *blocks, first, stop)


def test_last_row_at_the_very_end_of_the_buffer() -> None:
    """A packet that ends the buffer, with no padding after it, decodes as the scalar walk
    decodes it in both forms: the reads past the buffer's end are zeros, not a window moved
    back over earlier bytes."""
    ip = bytes.fromhex("4500001c000000004011000001020304050607080035003500080000")
    frames_ = [b"\xee" * 60, ip]
    data = b"".join(frames_)
    batch = PacketBatch(
        data=np.frombuffer(data, dtype=np.uint8),
        offsets=np.array([0, 60], dtype=np.int64),
        caplen=np.array([60, len(ip)], dtype=np.int64),
        wirelen=np.array([60, len(ip)], dtype=np.int64),
        ts=np.zeros(2),
        linktype=np.array([101, 101], dtype=np.int32),
    )
    want = parse_frame(ip, 101) or InnerPacket()
    assert (want.src, want.dst, want.dport) == ("1.2.3.4", "5.6.7.8", 53)
    for decode in (decode_headers_numpy, decode_headers_compiled):
        h = decode(batch)
        assert (int(h.ipver[1]), int(h.src[1, 3]), int(h.dst[1, 3])) == (4, 0x01020304, 0x05060708)
        assert (int(h.sport[1]), int(h.dport[1]), int(h.udpsum[1]), int(h.paylen[1])) == (
            53, 53, 0, 0)  # fmt: skip
        # The transport window runs off the buffer after the 8 UDP bytes: zeros.
        assert h.l4h[1].tolist() == list(ip[20:]) + [0] * 16
    same_headers(decode_headers_compiled(batch), decode_headers_numpy(batch))


@pytest.mark.parametrize(
    ("offset", "caplen"), [(-1, 10), (0, -1), (0, 65), (64, 1), (1 << 62, 1), (10, 1 << 62)]
)
def test_compiled_decode_refuses_packets_outside_the_buffer(offset: int, caplen: int) -> None:
    batch = PacketBatch(
        data=np.zeros(64, dtype=np.uint8),
        offsets=np.array([0, offset], dtype=np.int64),
        caplen=np.array([14, caplen], dtype=np.int64),
        wirelen=np.array([14, 14], dtype=np.int64),
        ts=np.zeros(2),
        linktype=np.array([1, 1], dtype=np.int32),
    )
    with pytest.raises(ValueError, match=r"packet 1 .* lies outside 64 bytes"):
        decode_headers_compiled(batch)


def test_compiled_forms_check_their_columns() -> None:
    """Wrong types and sizes of columns are refused, not read or written past their ends."""
    outer = headers.OUTER
    assert outer is not None
    data, offs = np.zeros(64, dtype=np.uint8), np.zeros(2, dtype=np.int64)
    ints, flags = np.empty((13, 2), dtype=np.int64), np.empty((4, 2), dtype=np.uint8)
    addrs, l4h = np.empty((2, 2, 4), dtype=np.uint32), np.empty((2, 24), dtype=np.uint8)
    links = np.ones(2, dtype=np.int32)
    tables = headers._TABLES
    outer.decode(tables, data, offs, offs, links, ints, flags, addrs, l4h)
    with pytest.raises(TypeError, match="linktype"):
        outer.decode(tables, data, offs, offs, links.astype(np.int64), ints, flags, addrs, l4h)
    with pytest.raises(ValueError, match="ints holds 24 items, not 26"):
        outer.decode(tables, data, offs, offs, links, ints[:12], flags, addrs, l4h)
    with pytest.raises(ValueError, match="l4h"):
        outer.decode(tables, data, offs, offs, links, ints, flags, addrs, l4h.reshape(-1)[:47])
    with pytest.raises(ValueError, match="PyCapsule"):
        outer.decode(object(), data, offs, offs, links, ints, flags, addrs, l4h)
    with pytest.raises(ValueError, match="ports must be 256 bytes"):
        outer.tables([], [], bytes(65536), bytes(65536), bytes(131072), bytes(32), bytes(256),
                     bytes(255), bytes(2048), [], (0,) * 10)  # fmt: skip
    keys, direction = np.empty((4, 3), dtype=np.uint64), np.empty(3, dtype=np.int8)
    words, ports = np.zeros((3, 4), dtype=np.uint32), np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="keys"):
        outer.row_keys(1, None, words, words, ports, ports, ports, keys[:3], direction)
    with pytest.raises(ValueError, match="src"):
        outer.row_keys(1, None, words[:2], words, ports, ports, ports, keys, direction)
    for row in (3, -1):
        with pytest.raises(IndexError, match=f"row {row} of 3 rows"):
            rows = np.array([0, row, 1], dtype=np.int64)
            outer.row_keys(1, rows, words, words, ports, ports, ports, keys, direction)


def test_deep_stacks_and_extension_chains() -> None:
    """The bounds of the walks (8 VLAN tags, 16 MPLS labels, 8 IPv6 extension headers), one
    under and one over, in one batch of mixed link types."""
    ip = bytes.fromhex("4500001c000000004011000001020304050607080035003500080000")
    rows: list[tuple[int, bytes]] = []
    for tags in (8, 9):
        eth = b"\x02" * 12 + b"\x81\x00" + b"\x00\x01\x81\x00" * (tags - 1) + b"\x00\x01\x08\x00"
        rows.append((1, eth + ip))
    for labels in (16, 17):
        stack = b"\x00\x01\x00\x40" * (labels - 1) + b"\x00\x01\x01\x40"
        rows.append((113, bytes(14) + b"\x88\x47" + stack + ip))
    udp = bytes.fromhex("1388003500080000")
    for count in (8, 9):
        chain = b"".join(bytes([60 if k < count - 1 else 17, 0]) + bytes(6) for k in range(count))
        body = chain + udp
        v6 = bytes.fromhex("60000000") + len(body).to_bytes(2, "big") + b"\x3c\x40" + bytes(32)
        rows.append((101, v6 + body))
    batch = PacketBatch.of_frames([f for _, f in rows], np.zeros(len(rows)))
    batch.linktype = np.array([lt for lt, _ in rows], dtype=np.int32)
    h = decode_headers_compiled(batch)
    same_headers(h, decode_headers_numpy(batch))
    assert h.ipver.tolist() == [4, 0, 4, 0, 6, 6]
    assert h.dport.tolist() == [53, 0, 53, 0, 53, 0]  # the ninth header is not stepped over


def test_decode_is_compiled_unless_told_not_to() -> None:
    """MIRRORWATCH_PURE_PYTHON=1 makes the engine decode with numpy; by default, where the
    extension is built, it decodes compiled."""
    code = "from detector.decode import headers; print(headers.in_use())"
    assert printed_with_and_without_pure_python(code) == ("compiled", "numpy")


def test_the_engine_lets_go_of_the_headers_decoded_with_a_batch() -> None:
    """The reader decodes the next batch's rows while its caller still holds the last batch: the
    engine uses the headers decoded with a batch and drops them, so two batches' header blocks
    are not kept at once."""
    from detector.engine import Engine

    path = PCAPS / "tzsp.pcap"
    stats = InputStats(str(path))
    engine = Engine()
    packets = 0
    with open_stream(str(path)) as stream:
        for batch in read_batches(stream, stats, early=headers.EarlyDecode()):
            assert isinstance(batch.decoded, Headers)
            engine.process(batch)
            assert batch.decoded is None
            packets += len(batch)
    assert packets and engine.stats.packets == packets


def test_header_blocks_are_filled_again_only_once_nothing_looks_into_them() -> None:
    """The early decode fills the last batch's blocks again (no new pages to fault in) when no
    view of them is left, and new ones while a view of the last batch's headers is still held."""
    path = PCAPS / "tzsp.pcap"
    stats = InputStats(str(path))
    with open_stream(str(path)) as stream:
        batch = next(iter(read_batches(stream, stats)))
    early = headers.EarlyDecode()
    early.begin(len(batch))
    first = early.finish(batch)
    assert first is not None
    before = decode_headers_numpy(batch)
    kept = first.src  # a view of the blocks, still held
    blocks = early.spare
    del first
    early.begin(len(batch))
    assert early.blocks is not None and early.blocks[0] is not blocks[0]  # type: ignore[index]
    assert np.array_equal(kept, before.src)
    second = early.finish(batch)
    del kept, second
    blocks = early.spare
    early.begin(len(batch))
    assert early.blocks is blocks
    same_headers(early.finish(batch), before)  # type: ignore[arg-type]
