"""The capture reader on real bytes: formats, damage, batching across blocks."""

from __future__ import annotations

import gzip
import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mwtest import PCAPS

from detector.capture import reader
from detector.capture.reader import CaptureError, InputStats, open_stream, read_batches


def _read(data: bytes, live: bool = False) -> tuple[list[list[bytes]], InputStats]:
    """Packets per batch.  A batch's bytes are only valid until the next batch is read (the
    block buffer is reused), so they are copied out as each batch arrives."""
    stats = InputStats("mem")
    out = [
        [b.packet(i) for i in range(len(b))]
        for b in read_batches(io.BytesIO(data), stats, live=live)
    ]
    return out, stats


def _pcap(records: list[bytes], magic: int = 0xA1B2C3D4, endian: str = "<", link: int = 1) -> bytes:
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, link)]
    for i, r in enumerate(records):
        out.append(struct.pack(endian + "IIII", 1700000000 + i, 500, len(r), len(r)) + r)
    return b"".join(out)


def test_pcap_fields_and_order() -> None:
    recs = [bytes([i]) * (60 + i) for i in range(5)]
    stats = InputStats("mem")
    (b,) = list(read_batches(io.BytesIO(_pcap(recs)), stats))
    assert stats.errors == []
    assert len(b) == 5
    assert b.caplen.tolist() == [60, 61, 62, 63, 64]
    assert b.packet(3) == recs[3]
    assert b.ts[2] == pytest.approx(1700000002.0005)
    assert (b.linktype == 1).all()


def test_big_endian_and_nanosecond_headers() -> None:
    recs = [b"\x45" * 40]
    be, _ = _read(_pcap(recs, endian=">"))
    assert be == [recs]
    (ns,) = read_batches(io.BytesIO(_pcap(recs, magic=0xA1B23C4D)), InputStats("ns"))
    assert ns.ts[0] == pytest.approx(1700000000 + 500e-9)


def test_records_spanning_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small block size forces records to straddle block boundaries.
    monkeypatch.setattr(reader, "BLOCK_SIZE", 1000)
    recs = [bytes([i % 256]) * (100 + i * 7) for i in range(60)]
    batches, stats = _read(_pcap(recs))
    assert [p for b in batches for p in b] == recs
    assert len(batches) > 5
    assert stats.errors == []


@pytest.mark.parametrize("per_batch", [65_536, 2])
def test_truncated_file_keeps_earlier_packets(
    monkeypatch: pytest.MonkeyPatch, per_batch: int
) -> None:
    monkeypatch.setattr(reader, "MAX_BATCH_RECORDS", per_batch)
    data = _pcap([b"a" * 100, b"b" * 100, b"c" * 100])[:-30]
    batches, stats = _read(data)
    assert sum(len(b) for b in batches) == 2
    assert len([e for e in stats.errors if "truncated" in e]) == 1


def test_oversized_record_resynchronises() -> None:
    good = [b"x" * 80] * 3
    data = bytearray(_pcap([*good, b"y" * 80, *good]))
    # Corrupt the captured length of the fourth record.
    off = 24 + 3 * (16 + 80)
    struct.pack_into("<I", data, off + 8, 0x7FFFFFF0)
    batches, stats = _read(bytes(data))
    assert sum(len(b) for b in batches) >= 6
    assert any("impossible" in e for e in stats.errors)


def test_zero_length_record_is_reported() -> None:
    batches, stats = _read(_pcap([b"a" * 60, b"", b"b" * 60]))
    assert sum(len(b) for b in batches) == 2
    assert any("zero-length" in e for e in stats.errors)


def test_not_a_capture() -> None:
    with pytest.raises(CaptureError, match="not a pcap"):
        _read(b"hello world, this is text")


def _packets_and_times(path: Path) -> tuple[list[bytes], list[float], int, InputStats]:
    stats = InputStats(path.name)
    pkts, times, batches = [], [], 0
    for b in read_batches(open_stream(str(path)), stats):
        batches += 1
        assert len(b) <= reader.MAX_BATCH_RECORDS
        pkts += [b.packet(i) for i in range(len(b))]
        times += b.ts.tolist()
    return pkts, times, batches, stats


@pytest.mark.parametrize("name", ["tzsp.pcap", "two-links.pcapng"])
def test_a_block_of_many_records_is_yielded_in_batches_of_bounded_size(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    whole, whole_ts, one, _ = _packets_and_times(PCAPS / name)
    monkeypatch.setattr(reader, "MAX_BATCH_RECORDS", 7)
    cut, cut_ts, many, stats = _packets_and_times(PCAPS / name)
    assert one == 1 and many == -(-len(whole) // 7)
    assert cut == whole and cut_ts == whole_ts
    assert stats.errors == []


def test_gzip_and_pcapng_samples() -> None:
    plain = PCAPS / "tzsp.pcap"
    gz = PCAPS / "tzsp.pcap.gz"
    assert gzip.decompress(gz.read_bytes()) == plain.read_bytes()
    s1, s2 = InputStats("a"), InputStats("b")
    a = [b.packet(i) for b in read_batches(open_stream(str(plain)), s1) for i in range(len(b))]
    b = [x.packet(i) for x in read_batches(open_stream(str(gz)), s2) for i in range(len(x))]
    assert a == b and len(a) > 10


def test_pcapng_interfaces_keep_their_link_types() -> None:
    stats = InputStats("ng")
    links = set()
    for b in read_batches(open_stream(str(PCAPS / "two-links.pcapng")), stats):
        links |= set(np.unique(b.linktype).tolist())
    assert links == {1, 101}
    assert stats.errors == []


def test_live_mode_yields_before_block_fills(tmp_path: Path) -> None:
    # A pipe delivers little at a time: live mode must hand over what is complete.
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            n = min(len(b), 150, len(self.data) - self.pos)
            b[:n] = self.data[self.pos : self.pos + n]
            self.pos += n
            return n

    recs = [bytes([i]) * 100 for i in range(10)]
    stats = InputStats("pipe")
    stream = Trickle(_pcap(recs))
    batches = [
        [b.packet(i) for i in range(len(b))]
        for b in read_batches(stream, stats, live=True)  # type: ignore[arg-type]
    ]
    assert len(batches) >= 5
    assert [p for b in batches for p in b] == recs


def _block_of(batch: reader.PacketBatch) -> object:
    return batch.data.base.obj  # type: ignore[union-attr]


def test_block_buffer_serves_the_next_input_once_no_batch_looks_into_it() -> None:
    a = _pcap([b"\x11" * 70, b"\x12" * 80])
    b = _pcap([b"\x21" * 90])
    # Batches of the first input still held: the second gets a buffer of its own.
    (held,) = list(read_batches(io.BytesIO(a), InputStats("a")))
    (other,) = list(read_batches(io.BytesIO(b), InputStats("b")))
    assert _block_of(other) is not _block_of(held)
    assert [held.packet(i) for i in range(2)] == [b"\x11" * 70, b"\x12" * 80]
    block = _block_of(other)
    del held, other
    # Nothing looks into the last block any more: the next input is read into it.
    (again,) = list(read_batches(io.BytesIO(_pcap([b"\x31" * 65])), InputStats("c")))
    assert _block_of(again) is block
    assert again.packet(0) == b"\x31" * 65
    # Past the data, the reused block holds zeros, as a new one does.
    assert not again.data[int(again.offsets[0] + again.caplen[0]) :].any()


def test_gzip_is_inflated_ahead_and_damage_ends_the_input_where_it_is(tmp_path: Path) -> None:
    plain = (PCAPS / "mirror-with-natives.pcap").read_bytes()
    # More than one block of records (what was read before a failing block is kept).
    records = plain[24:] * (2 * reader.BLOCK_SIZE // (len(plain) - 24) + 1)
    whole = gzip.compress(plain[:24] + records, compresslevel=1, mtime=0)
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(whole[: len(whole) * 3 // 4])
    stream = open_stream(str(cut))
    assert isinstance(stream, reader.ReadAhead)
    stats = InputStats(str(cut))
    packets = sum(len(b) for b in reader.reading(read_batches(stream, stats), stats))
    stream.close()
    stream.thread.join(120)  # returns when the thread ends; the bound is for a loaded machine
    assert not stream.thread.is_alive()
    # The packets before the cut are read; the cut is an error of this input, not a fault.
    assert packets > 0 and stats.errors[-1].startswith("reading stopped")


def test_reading_ahead_stops_when_the_reader_closes_early(tmp_path: Path) -> None:
    big = tmp_path / "big.pcap.gz"
    big.write_bytes(gzip.compress(os.urandom(1 << 20) * 24, compresslevel=1))
    stream = open_stream(str(big))
    assert stream.read(4) == gzip.decompress(big.read_bytes())[:4]
    stream.close()  # 24 MiB not read: more than the thread may hold ahead
    stream.thread.join(120)  # returns when the thread ends; the bound is for a loaded machine
    assert not stream.thread.is_alive()


def test_a_pipe_on_standard_input_is_widened_and_read_whole() -> None:
    # Each read of a wide pipe brings up to a MiB: the thread reading ahead wakes less often.
    probe = (
        "import fcntl, sys\n"
        "from detector.capture.reader import InputStats, open_stream, read_batches\n"
        "stream = open_stream('-')\n"
        "print(fcntl.fcntl(0, fcntl.F_GETPIPE_SZ))\n"
        "print(sum(len(b) for b in read_batches(stream, InputStats('-'))))\n"
    )
    data = (PCAPS / "tzsp.pcap").read_bytes()
    out = subprocess.run(
        [sys.executable, "-c", probe], input=data, capture_output=True, check=True,
        env={**os.environ, "PYTHONPATH": str(PCAPS.parent)},
    ).stdout.split()  # fmt: skip
    whole = sum(len(b) for b in read_batches(io.BytesIO(data), InputStats("tzsp")))
    assert out == [str(reader.PIPE_BYTES).encode(), str(whole).encode()]
