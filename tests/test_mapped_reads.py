"""Classic pcap files on disk are read through maps of them (``_walk.Window``), not copies.

Every batch (columns and packet bytes), every error and the input counters must be what the
copying reader gives, on the samples, the public captures, hostile files (random, mutated,
truncated, with zero holes), small and large blocks, and parts of a cut file.  A file that
shrinks while it is read (logrotate's copytruncate) must end the input with an error, keeping
the packets read before, never kill the process with SIGBUS.
"""

from __future__ import annotations

import gzip
import io
import itertools
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mwtest import PCAPS, REAL, fuzz
from test_record_walks import batch_contents, pcap_files, pcapng_files

from detector import parts
from detector.capture import reader, walks
from detector.capture.reader import (
    PAD,
    CaptureError,
    InputStats,
    capture_magic,
    open_stream,
    read_batches,
    reading,
)
from detector.compiled import built
from detector.decode.headers import KNOWN_LINKS, early_decode
from detector.parts import Part, open_part, run_parts

COMPILED = built("detector.capture._walk")
pytestmark = pytest.mark.skipif(
    COMPILED is None or walks.compiled is None,
    reason="files are mapped only where the compiled record walk is built and in use",
)
CORPUS = REAL.parent / "corpus"


FORMATS = ("pcap", "pcapng")


def _pcaps(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and capture_magic(p) in FORMATS)


def _read(
    path: Path,
    mapped: bool,
    part: Part | None = None,
    block: int | None = None,
    per_batch: int | None = None,
    piece: int | None = None,
) -> dict:
    """Everything a read of ``path`` (or of ``part`` of it) gives, mapped or copied."""
    made: list[object] = []

    class Counted(reader._MappedBlocks):
        def __init__(self, *args: object) -> None:
            made.append(self)
            super().__init__(*args)  # type: ignore[arg-type]

    batches = []
    stats = InputStats(str(path))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reader, "MAP_FILES", mapped)
        mp.setattr(reader, "_MappedBlocks", Counted)
        for name, value in (("BLOCK_SIZE", block), ("MAX_BATCH_RECORDS", per_batch),
                            ("READ_PIECE", piece)):  # fmt: skip
            if value is not None:
                mp.setattr(reader, name, value)
        reader.release_blocks()
        if part is None:
            stream, window = open_stream(str(path)), reader.WHOLE
        else:
            stream, window = open_part(part)
        refused = None
        try:
            for b in reading(read_batches(stream, stats, window=window), stats):
                stats.took(b, KNOWN_LINKS)
                batches.append(batch_contents(b))
        except CaptureError as exc:
            refused = str(exc)
        finally:
            stream.close()
            reader.release_blocks()
    return {
        "batches": batches,
        "errors": stats.errors,
        "packets": stats.packets,
        "bytes": stats.bytes,
        "refused": refused,
        "mapped": bool(made),
    }


def _same(path: Path, **how: object) -> dict:
    copied = _read(path, False, **how)  # type: ignore[arg-type]
    mapped = _read(path, True, **how)  # type: ignore[arg-type]
    assert not copied.pop("mapped")
    assert mapped.pop("mapped") or mapped["refused"] is not None
    assert mapped == copied
    return mapped


SAMPLES = _pcaps(PCAPS)
REAL_PCAPS = _pcaps(REAL)
# Every fifth capture of the corpus (the whole corpus is judged in test_corpus.py).
CORPUS_SAMPLE = _pcaps(CORPUS)[::5]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_read_the_same_mapped(path: Path) -> None:
    _same(path)
    _same(path, block=4096, per_batch=50, piece=1000)


@pytest.mark.skipif(not REAL_PCAPS, reason=f"public captures not present at {REAL}")
def test_public_captures_read_the_same_mapped() -> None:
    packets = 0
    for path in REAL_PCAPS + CORPUS_SAMPLE:
        packets += _same(path)["packets"]
        _same(path, block=1 << 16, per_batch=1000)
    assert packets > 5_000  # the sample holds real traffic


def _write(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.pcap"
        path.write_bytes(data)
        yield path


@fuzz(100)
@given(data=pcap_files(), block=st.sampled_from([64, 200, 4096, 5000, 1 << 20]),
       per_batch=st.sampled_from([1, 3, 65_536]),
       piece=st.sampled_from([16, 100, 1 << 20]))  # fmt: skip
def test_hostile_files_read_the_same_mapped(
    data: bytes, block: int, per_batch: int, piece: int
) -> None:
    for path in _write(data):
        _same(path, block=block, per_batch=per_batch, piece=piece)


@fuzz(100)
@given(data=pcapng_files(), block=st.sampled_from([64, 200, 4096, 5000, 1 << 20]),
       per_batch=st.sampled_from([1, 3, 65_536]))  # fmt: skip
def test_hostile_pcapng_files_read_the_same_mapped(data: bytes, block: int, per_batch: int) -> None:
    for path in _write(data):
        _same(path, block=block, per_batch=per_batch)


def _records(n: int, size: int = 100, start: int = 1_700_000_000) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(n):
        body = (i.to_bytes(4, "big") * (size // 4 + 1))[:size]
        out += struct.pack("<IIII", start + i, i % 1_000_000, size, size + 10) + body
    return bytes(out)


def test_damaged_files_read_the_same_mapped(tmp_path: Path) -> None:
    """A zero hole (a sparse file), a cut record, a record larger than the block, and a file
    whose last bytes end on a page boundary (gathers read zeros past it, never a fault)."""
    good = _records(3000)
    hole = tmp_path / "hole.pcap"
    with open(hole, "wb") as f:
        f.write(good[:150_000])
        f.seek(150_000 + 70_000)  # a hole of zeros the file system does not store
        f.write(good[150_000:])
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good[:-37])
    paged = tmp_path / "paged.pcap"
    paged.write_bytes(good[: 24 + 116 * 35] + bytes(4096 * 2 - 24 - 116 * 35))
    big = tmp_path / "big.pcap"
    big.write_bytes(good[:24] + struct.pack("<IIII", 1, 2, 9000, 9000) + bytes(9000) + good[24:])
    hole_read = _same(hole)
    assert any("zero bytes skipped" in e for e in hole_read["errors"])
    assert _same(hole, block=4096, per_batch=100)["packets"] == hole_read["packets"]
    assert "file truncated in record 3000" in _same(cut, block=5000)["errors"][0]
    assert _same(paged)["packets"] == 35
    assert _same(big, block=4096)["packets"] == 3001


def test_parts_of_a_cut_file_read_the_same_mapped(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes(_records(5000))
    record = 16 + 100
    cuts = [24, 24 + 1234 * record, 24 + 3000 * record, None]
    total = 0
    for start, end in itertools.pairwise(cuts):
        part = Part(str(path), start, end)
        total += _same(path, part=part)["packets"]
        _same(path, part=part, block=4096, per_batch=7)
    assert total == 5000
    # A part cut inside a record: its last record is cut short, the same way read.
    torn = _same(path, part=Part(str(path), 24, 24 + 10 * record + 50), block=1000)
    assert torn["packets"] == 10 and "file truncated in record 11" in torn["errors"][0]


def test_parts_of_a_cut_pcapng_file_read_the_same_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part of a pcapng file is its section header and interfaces, then its own blocks: the
    first block is a copy of the headers and of the file's bytes after them, the rest maps."""
    path = tmp_path / "cut.pcapng"
    path.write_bytes(_pcapng(3000) + _pcapng(2000))  # a second section, after the cut
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 1 << 10)
    cut = parts.split(str(path), 3)
    assert len(cut) == 3 and all(p.head for p in cut[1:])
    total = 0
    for part in cut:
        total += _same(path, part=part)["packets"]
        _same(path, part=part, block=4096, per_batch=7)
        _same(path, part=part, block=len(part.head) + 200)  # the headers' block holds one packet
    assert total == 5000


# A file that shrinks while it is read.


def test_a_window_of_a_file_cut_short_reads_zeros_not_a_fault(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 64)  # 16 KiB: four pages
    with open(path, "rb") as f:
        window = COMPILED.Window(f.fileno(), 100, 10_000, PAD)
        assert window.mapped and window.length == 10_000 and window.fault == -1
        view = np.frombuffer(window, dtype=np.uint8)
        # Past the window, its padding holds what follows in the file.
        assert len(view) == 10_000 + PAD and (view == np.arange(100, 10_612) % 256).all()
        os.truncate(path, 5000)  # the pages past the first two go; reading them faults
        assert view[4000] == (4100 % 256)  # the first page is still the file's
        assert not view[8000:].any()  # zeros, where the kernel sent SIGBUS
        assert 4096 - 100 <= window.fault <= 8192 - 100
        del view
    # A window of a file ending on a page boundary has its padding all the same.
    path.write_bytes(b"\xff" * 8192)
    with open(path, "rb") as f:
        tail = np.frombuffer(COMPILED.Window(f.fileno(), 4096, 1 << 20, PAD), dtype=np.uint8)
        assert len(tail) == 4096 + PAD and tail[:4096].all() and not tail[4096:].any()


def test_windows_past_the_handlers_list_are_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(10_000))
    with open(path, "rb") as f:
        windows = [COMPILED.Window(f.fileno(), 7 * i, 9000, 16) for i in range(300)]
        assert any(w.mapped for w in windows) and not all(w.mapped for w in windows)
        data = path.read_bytes()
        for i, w in enumerate(windows):
            n = min(9000, 10_000 - 7 * i)
            assert w.length == n and bytes(w)[:n] == data[7 * i : 7 * i + n]


class _CutWhenWalked:
    """The early decode of a scan, that cuts its file short the first time rows are walked
    (the pages past the cut then fault as the walk goes on)."""

    def __init__(self, path: Path, keep: int) -> None:
        self.path, self.keep, self.cut = path, keep, False
        self.decode = early_decode()

    def begin(self, capacity: int) -> None:
        if self.decode is not None:
            self.decode.begin(capacity)

    def walked(self, columns: reader.WalkedColumns, rows: int, end: int) -> None:
        if not self.cut:
            self.cut = True
            os.truncate(self.path, self.keep)
        if self.decode is not None:
            self.decode.walked(columns, rows, end)

    def finish(self, batch: reader.PacketBatch) -> object:
        return None if self.decode is None else self.decode.finish(batch)


def _scan_cut(
    path: Path, monkeypatch: pytest.MonkeyPatch, keep: int, when: str
) -> tuple[InputStats, int]:
    """A scan of ``path`` cut to ``keep`` bytes as its records are walked, or once its first
    batch has been taken: its input counters and the packets its engine saw."""
    monkeypatch.setattr(reader, "BLOCK_SIZE", 1 << 18)
    monkeypatch.setattr(reader, "READ_PIECE", 1 << 14)
    cut = []

    def progress(done: int) -> None:
        if when == "batch" and not cut:
            cut.append(done)
            os.truncate(path, keep)

    if when == "walk":
        monkeypatch.setattr(parts, "early_decode", lambda: _CutWhenWalked(path, keep))
    engine, (stats,), unreadable = run_parts([Part(str(path))], progress)
    assert not unreadable
    return stats, engine.stats.packets


RECORD = 16 + 100


@pytest.mark.parametrize(
    ("when", "keep"),
    [
        ("walk", 4096 * 14),  # on a page boundary: the walk faults on the next page
        ("walk", 24 + 500 * RECORD + 30),  # inside a page: its end reads as zeros
        ("batch", 24 + 500 * RECORD + 30),  # in pages of the batch taken
    ],
)
def test_a_file_cut_while_scanned_ends_the_input_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str, keep: int
) -> None:
    path = tmp_path / "rotated.pcap"
    path.write_bytes(_records(10_000))
    first_batch = (1 << 18) // RECORD  # the records wholly in the first block
    stats, seen = _scan_cut(path, monkeypatch, keep, when)
    lost_from = keep if when == "walk" else 24 + first_batch * RECORD
    assert stats.errors == [
        f"reading stopped: the file shrank to {keep} bytes while it was read; its records "
        f"from byte {lost_from} on are lost"
    ]
    # Cut as the walk goes: the records wholly before the cut; cut after a batch: that batch.
    kept = (keep - 24) // RECORD if when == "walk" else first_batch
    assert stats.packets == seen == kept


def _pcapng(n: int) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 0))
    for i in range(n):
        out += block(6, struct.pack("<IIIII", 0, 0, i, 100, 100) + bytes([i % 256]) * 100)
    return out


def test_a_pcapng_file_cut_while_scanned_ends_the_input_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rotated.pcapng"
    path.write_bytes(_pcapng(10_000))
    stats, seen = _scan_cut(path, monkeypatch, 50_000, "batch")
    first_batch = ((1 << 18) - 48) // 132  # after the section and interface blocks
    assert stats.errors == [
        "reading stopped: the file shrank to 50000 bytes while it was read; its records from "
        f"byte {48 + first_batch * 132} on are lost"
    ]
    assert stats.packets == seen == first_batch


def test_a_file_cut_past_what_was_read_reads_as_a_truncated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rotated.pcap"
    path.write_bytes(_records(10_000))
    keep = 24 + 5000 * RECORD + 30  # in a block not mapped yet
    stats, seen = _scan_cut(path, monkeypatch, keep, "batch")
    assert stats.errors == ["file truncated in record 5001: 14 of 100 captured bytes present"]
    assert stats.packets == seen == 5000


FAULT_ELSEWHERE = """
import faulthandler, mmap, os, sys, tempfile
from detector.capture import _walk
if sys.argv[1] == "faulthandler":
    faulthandler.enable()
with tempfile.TemporaryFile() as f:
    f.write(b"x" * 8192)
    f.flush()
    window = _walk.Window(f.fileno(), 0, 100, 16)  # installs the handler
    other = mmap.mmap(f.fileno(), 8192, access=mmap.ACCESS_READ)
    os.truncate(f.fileno(), 100)
    print("reading", flush=True)
    other[5000]  # past the file's end, outside every window
print("not reached")
"""


@pytest.mark.parametrize("earlier", ["default", "faulthandler"])
def test_a_fault_outside_the_windows_goes_to_the_earlier_handler(earlier: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", FAULT_ELSEWHERE, earlier], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == -7 and done.stdout == "reading\n"  # killed by SIGBUS
    assert ("Bus error" in done.stderr) == (earlier == "faulthandler")


def test_only_regular_files_are_mapped(tmp_path: Path) -> None:
    data = _records(20)
    path = tmp_path / "f.pcap"
    path.write_bytes(data)
    assert _read(path, True)["mapped"]
    gz = tmp_path / "f.pcap.gz"
    gz.write_bytes(gzip.compress(data))
    assert not _read(gz, True)["mapped"] and _read(gz, True)["packets"] == 20
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f'cat "{path}" > "{fifo}"'])
    try:
        got = _read(fifo, True)
    finally:
        writer.wait(timeout=60)
    assert not got["mapped"] and got["packets"] == 20
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(walks, "compiled", None)  # pure Python: the copying reader
        assert not _read(path, True)["mapped"]
    assert reader._file_span(io.BytesIO(data)) is None  # type: ignore[arg-type]
