"""Read pcap and pcapng files (plain, gzip, stdin, directories) as batches of packets.

The reader walks the record chain (the only per-packet loop: each record's offset depends on the
previous record's length; compiled where built, see ``walks``) and hands the engine numpy arrays
of offsets, lengths, timestamps and link types into a reused block buffer.  Everything after this
is vectorised per batch.

Damaged input never stops the scan silently: a truncated record, a zero-length or oversized
record, or an unknown block is reported in ``errors`` and reading goes on where it can.
"""

from __future__ import annotations

import fcntl
import gzip
import io
import os
import queue
import stat
import struct
import sys
import threading
import weakref
import zlib
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from detector.capture import walks
from detector.capture.gunzip import Gunzip

BLOCK_SIZE = 16 << 20
# A block is read a piece at a time, and a classic pcap's records are walked as each piece
# arrives, while its bytes are still in the processor's cache: walked after the whole block,
# every record header is fetched from memory again (a third of the reader's time).
READ_PIECE = 256 << 10
# Records per batch at most: a block of tiny packets is yielded in several batches, so the
# per-record lists and columns of one batch do not grow with how small the packets are.
MAX_BATCH_RECORDS = 65_536
# Bytes past the end of valid data that gathers may touch (longest header window we read).
PAD = 512
# libpcap's own upper bound on a record (MAXIMUM_SNAPLEN); anything larger is corruption.
MAX_CAPLEN = 262144
# A gzip input that inflates more than this many times is not a capture (packet captures shrink
# 2-20 times; only long runs of one byte reach deflate's limit of ~1,000).  Checked once this
# much has been inflated, so small files never trip it.
GZIP_MAX_RATIO = 200
GZIP_RATIO_FROM = 64 << 20

PCAP_MAGICS: dict[bytes, tuple[str, float]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    b"\x34\xcd\xb2\xa1": ("<", 1e-6),  # Kuznetzov's patched format: 8 more bytes per record
    b"\xa1\xb2\xcd\x34": (">", 1e-6),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


@dataclass(repr=False, eq=False, slots=True)
class PacketBatch:
    """Packets read from one block: ``data[offsets[i] : offsets[i] + caplen[i]]`` is packet i."""

    data: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    caplen: npt.NDArray[np.int64]
    wirelen: npt.NDArray[np.int64]
    ts: npt.NDArray[np.float64]
    linktype: npt.NDArray[np.int32]
    # What the reader's caller made of the rows as they were walked (see RowsWalked), or None.
    decoded: object = None

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def of_frames(
        cls,
        frames: list[bytes],
        ts: npt.ArrayLike,
        wirelen: npt.ArrayLike | None = None,
        linktype: int = 1,
    ) -> PacketBatch:
        """A batch of whole frames laid end to end (with the padding gathers may read)."""
        sizes = [len(f) for f in frames]
        return cls(
            data=np.frombuffer(b"".join(frames) + bytes(PAD), dtype=np.uint8),
            offsets=np.cumsum([0, *sizes[:-1]]).astype(np.int64),
            caplen=np.asarray(sizes, dtype=np.int64),
            wirelen=np.asarray(sizes if wirelen is None else wirelen, dtype=np.int64),
            ts=np.asarray(ts, dtype=np.float64),
            linktype=np.full(len(frames), linktype, dtype=np.int32),
        )

    def packet(self, i: int) -> bytes:
        o = int(self.offsets[i])
        return self.data[o : o + int(self.caplen[i])].tobytes()


@dataclass(repr=False, eq=False)
class InputStats:
    """What was read of one input: its packets, bytes and the problems met."""

    path: str
    packets: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    # Link types of this input that are not decoded, each named once in ``errors``.
    unknown_links: set[int] = field(default_factory=set)

    def took(self, batch: PacketBatch, known_links: AbstractSet[int]) -> None:
        """Count a batch read from this input (its packets of a link type not decoded too)."""
        self.packets += len(batch)
        self.bytes += int(batch.wirelen.sum())
        for lt in _link_types(batch.linktype) - known_links - self.unknown_links:
            self.unknown_links.add(lt)
            self.error(f"link type {lt} is not supported: its packets are counted but not decoded")

    def error(self, msg: str) -> None:
        # A damaged file can repeat one problem thousands of times; keep the report readable.
        if len(self.errors) < 50:
            self.errors.append(msg)
        elif len(self.errors) == 50:
            self.errors.append("further errors not listed")


def _link_types(links: npt.NDArray[np.int32]) -> set[int]:
    """The distinct link types of a batch's column: nearly always one, found without turning
    tens of thousands of rows into Python integers."""
    if not len(links):
        return set()
    first = links[0]
    if (links == first).all():
        return {int(first)}
    return set(np.unique(links).tolist())


class CaptureError(Exception):
    """The input cannot be read at all (not a capture, missing file)."""


def open_stream(path: str) -> BinaryIO:
    """Open a path (or ``-`` for stdin), transparently decompressing gzip."""
    raw: BinaryIO
    if path == "-":
        _widen_pipe(sys.stdin.fileno())
        raw = io.BufferedReader(sys.stdin.buffer.raw, BLOCK_SIZE)  # type: ignore[attr-defined]
    else:
        try:
            raw = open(path, "rb", buffering=0)  # noqa: SIM115 - returned to the caller
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open: {exc.strerror}") from exc
        raw = io.BufferedReader(raw, 1 << 16)  # type: ignore[arg-type]
    head = raw.peek(2)[:2]  # type: ignore[attr-defined]
    if head == b"\x1f\x8b":
        return ReadAhead(Gunzip(raw), raw)  # type: ignore[arg-type]
    return ReadAhead(raw) if path == "-" else raw


# Bytes a pipe on standard input is asked to hold (Linux allows up to 1 MiB unprivileged): each
# read then brings up to this much instead of the default 64 KiB, and the thread reading ahead
# wakes, and takes the interpreter from the engine, 16 times less often.
PIPE_BYTES = 1 << 20


def _widen_pipe(fd: int) -> None:
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):  # a smaller limit, or not Linux: the default size
        pass


def check_inflation(inflated: int, packed: int) -> None:
    """Raise if ``packed`` bytes of gzip inflated to ``inflated`` look like a bomb."""
    if inflated >= GZIP_RATIO_FROM and packed and inflated > GZIP_MAX_RATIO * packed:
        raise OSError(
            f"gzip data inflates more than {GZIP_MAX_RATIO} times ({packed} bytes to "
            f"{inflated} so far): not a capture"
        )


class ReadAhead(io.RawIOBase):
    """The bytes of ``source``, read by a thread up to AHEAD chunks before they are wanted.

    Inflating gzip (zlib lets go of the GIL while it works) then runs on a second core
    while the engine works on the first, and a pipe's writer is not held up while a batch is
    processed.  A read error reaches the reader where it happened in the stream.
    """

    CHUNK = 4 << 20
    AHEAD = 4

    def __init__(self, source: BinaryIO, raw: BinaryIO | None = None) -> None:
        self.source = source
        self.raw = raw  # the file under a decompressor
        self.position = 0  # bytes of that file read so far, for progress
        self.chunks: queue.Queue[bytes | bytearray | BaseException] = queue.Queue(self.AHEAD)
        self.pending = memoryview(b"")
        self.ended = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, name="mirrorwatch-read", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        # One inflated piece at a time: a read that meets damage loses all it had inflated.
        # The pieces are handed over a chunk at a time: gzip inflates a few KiB a piece where
        # the data does not compress, and a hand-over per piece cost more than inflating it.
        inflated = 0
        chunk = bytearray()
        try:
            read = getattr(self.source, "read1", None) or self.source.read
            while not self.stopping.is_set():
                piece = read(self.CHUNK)
                self.position = _position(self.raw or self.source, self.position + len(piece))
                inflated += len(piece)
                if self.raw is not None:
                    check_inflation(inflated, self.position)
                if not piece:
                    if chunk:
                        self.chunks.put(chunk)
                    self.chunks.put(b"")
                    break
                chunk += piece
                if len(chunk) >= self.CHUNK:
                    self.chunks.put(chunk)
                    chunk = bytearray()
        except BaseException as exc:  # raised again by the reader, in its thread
            if chunk:
                self.chunks.put(chunk)
            self.chunks.put(exc)
        finally:
            self.source.close()
            if self.raw is not None:
                self.raw.close()

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            if self.ended:
                return 0
            item = self.chunks.get()
            if isinstance(item, BaseException):
                self.ended = True
                raise item
            if not item:
                self.ended = True
                return 0
            self.pending = memoryview(item)
        n = min(len(b), len(self.pending))
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        """Stop reading ahead; the thread closes the source once its read in progress returns
        (one still waiting on a pipe ends with the process: it is a daemon)."""
        if not self.closed:
            self.stopping.set()
            # Room for the chunk the thread may be waiting to hand over; then it sees the stop.
            while True:
                try:
                    self.chunks.get_nowait()
                except queue.Empty:
                    break
        super().close()


def _position(f: BinaryIO, fallback: int) -> int:
    try:
        return f.tell()
    except (OSError, ValueError):  # a pipe
        return fallback


def capture_magic(path: str | Path) -> str | None:
    """ "pcap", "pcapng" or "gzip" (a gzip whose content starts as a capture) from the first
    bytes of a file, whatever its name; None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head[:2] == b"\x1f\x8b":
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as inner:
                    head = inner.read(4)
                return "gzip" if head in PCAP_MAGICS or head == PCAPNG_SHB else None
    except (OSError, EOFError, zlib.error):
        return None
    if head in PCAP_MAGICS:
        return "pcap"
    return "pcapng" if head == PCAPNG_SHB else None


@dataclass(repr=False, eq=False)
class Inputs:
    """What a list of paths holds: capture files to read, and files of directories skipped."""

    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def find_inputs(paths: list[str]) -> Inputs:
    """Files as given; directories walked recursively, in name order, for files that are
    captures by their first bytes (tcpdump -C rotation names them dump.pcap1, dump.pcap2...)."""
    found = Inputs()
    for p in paths:
        if p != "-" and os.path.isdir(p):
            for f in sorted(Path(p).rglob("*")):
                if not f.is_file():
                    continue
                (found.files if capture_magic(f) else found.skipped).append(str(f))
        else:
            found.files.append(p)
    return found


def expand_paths(paths: list[str]) -> list[str]:
    return find_inputs(paths).files


@dataclass(repr=False, eq=False, slots=True)
class Window:
    """Where the records of a stream lie in their file, when the stream is one part of it: the
    headers the part needs (the file header; the section header and interface descriptions in
    force where it starts) followed by the part's own bytes."""

    # File offset minus stream offset of the part's bytes (errors name bytes of the file).
    shift: int = 0


WHOLE = Window()


def read_batches(
    stream: BinaryIO,
    stats: InputStats,
    live: bool = False,
    window: Window = WHOLE,
    early: RowsWalked | None = None,
) -> Iterator[PacketBatch]:
    """Yield batches from a pcap or pcapng stream; problems go to ``stats.errors``.

    With ``live`` (a capture pipe), a batch is yielded as soon as any records are complete.
    ``early`` is given the rows of a classic pcap as they are walked.
    """
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise CaptureError(f"{stats.path}: empty or too short to be a capture file")
    if head in PCAP_MAGICS:
        yield from _read_pcap(stream, head, stats, live, window, early)
    elif head == PCAPNG_SHB:
        yield from _read_pcapng(stream, head, stats, live, window)
    else:
        raise CaptureError(f"{stats.path}: {_not_a_capture(head, stream)}")


def _not_a_capture(head: bytes, stream: BinaryIO) -> str:
    """Why the input is not read: what it is, where that is known (an IPFIX file), or the
    bytes it starts with."""
    if head[:2] == b"\x00\x0a":  # an IPFIX message header: version 10
        from detector.protocols.ipfix import file_note

        note = file_note(head + _read_exact(stream, 12))
        if note:
            return note
    return (
        f"not a pcap or pcapng file (starts with {head.hex(' ')}); convert it with editcap -F pcap"
    )


# What reading a capture can raise when the file or device fails (a gzip stream cut short or
# damaged, an I/O error): the input ends there with an error, and the scan goes on.  Anything
# else is a fault of the program and must not pass for the end of a file.
READ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error)


def reading(batches: Iterator[PacketBatch], stats: InputStats) -> Iterator[PacketBatch]:
    """``batches`` until they end or reading fails; a failure is recorded in ``stats``.

    Only the reading is guarded: an exception raised by whoever consumes a batch is not
    raised inside this generator, so it is never taken for the end of the input."""
    try:
        yield from batches
    except READ_ERRORS as exc:
        stats.error(f"reading stopped: {exc}")


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    while n > 0:
        b = stream.read(n)
        if not b:
            break
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


# A block buffer of a read that ended, with how much of it was written, for the next input: a
# directory of many files would otherwise allocate and zero-fill a block per file.
_SPARE: list[tuple[bytearray, list[int]]] = []


def _spare_block() -> tuple[bytearray, list[int]]:
    """The spare block if no batch still looks into it (numpy views of a bytearray are exports,
    and an exported bytearray cannot be resized), else a new one.  Bytes before ``written[0]`` may
    be an earlier input's: the first fill zeroes those it does not overwrite, so the input sees
    a new block (zeroing all of them first took as long as reading a small file)."""
    try:
        buf, written = _SPARE.pop()
        buf.append(0)
        del buf[-1]
    except (IndexError, BufferError):
        return bytearray(BLOCK_SIZE + PAD), [0]
    return buf, written


def release_blocks() -> None:
    """Reading is over: give the spare block's memory back (the results are built next)."""
    _SPARE.clear()


def _keep_spare(buf: bytearray, view: memoryview, written: list[int]) -> None:
    try:
        view.release()
    except BufferError:
        return
    if not _SPARE:
        _SPARE.append((buf, written))


class _Blocks:
    """A reused buffer that keeps the unread tail of the previous block at its front.

    ``live`` returns after the first read that brings data (a capture pipe must not wait for a
    whole block to fill); otherwise it fills the block for throughput.
    """

    def __init__(self, stream: BinaryIO, initial: bytes = b"", live: bool = False) -> None:
        self.live = live
        self.stream = stream
        self.buf, self.written = _spare_block()
        self.spare = self.buf
        self.first = True  # the first fill zeroes what an earlier input left past its end
        self.view = memoryview(self.buf)
        # When the read is over (its generator ends or is dropped), the block may serve the next.
        weakref.finalize(self, _keep_spare, self.buf, self.view, self.written)
        self.end = 0
        self.eof = False
        # Why reading ended early (a damaged gzip, an I/O error, an inflation bomb): raised once
        # the records read before it have been yielded.
        self.failure: Exception | None = None
        self.consumed = 0  # file offset of buf[0]
        self.buf[: len(initial)] = initial
        self.end = len(initial)
        self.written[0] = max(self.written[0], self.end)

    def read_into(self, start: int, stop: int) -> int:
        """Read into ``buf[start:stop]``; 0 at the end of the input or when reading failed."""
        try:
            return self.stream.readinto(self.view[start:stop]) or 0  # type: ignore[attr-defined]
        except READ_ERRORS as exc:
            self.failure = exc
            return 0

    def fill(self, keep_from: int, arrived: Callable[[bytearray, int], None] | None = None) -> None:
        """Move ``buf[keep_from:end]`` to the front and read more after it; ``arrived`` is told
        each time more has been read (the buffer, and where its bytes end now)."""
        tail = self.end - keep_from
        if keep_from:
            self.buf[:tail] = self.buf[keep_from : self.end]
            self.consumed += keep_from
        self.end = tail
        while self.end < BLOCK_SIZE and not self.eof:
            got = self.read_into(self.end, min(BLOCK_SIZE, self.end + READ_PIECE))
            if not got:
                self.eof = True
                break
            self.end += got
            if arrived is not None:
                arrived(self.buf, self.end)
            if self.live:
                break
        if self.buf is not self.spare:
            return  # a buffer grown for one large record: new, and not kept for the next input
        if self.first and self.written[0] > self.end:
            np.frombuffer(self.buf, dtype=np.uint8, count=self.written[0])[self.end :] = 0
            self.written[0] = self.end
        self.first = False
        self.written[0] = max(self.written[0], self.end)

    def end_at(self, pos: int) -> None:
        """The input ends at ``buf[pos]``: what the stream holds past it is not read."""
        self.end = min(self.end, pos)
        self.eof = True

    def grow(self, need: int) -> None:
        """Make room for one record larger than the block (only corrupt-looking files get here)."""
        if need + PAD > len(self.buf):
            # A new buffer, not a resize: the batch yielded last may still be a view of this one.
            bigger = bytearray(need + PAD)
            bigger[: self.end] = self.view[: self.end]
            self.buf = bigger
            self.view = memoryview(bigger)


# Regular files are read through maps of them where the compiled walks are built (see
# _MappedBlocks); the tests turn this off to compare both readings.
MAP_FILES = True


class FileSpan(NamedTuple):
    """Where the rest of a stream lies in a regular file: its bytes [start, stop) (stop None: to
    the end of the file), after ``before``, bytes of the stream that are not the file's (the
    blocks a part of a pcapng file starts with).  ``more``, where given, is asked for a later
    stop when the stream is read up to ``stop`` (the part grows while it is read)."""

    fd: int
    start: int
    stop: int | None
    before: bytes = b""
    more: Callable[[int], int | None] | None = None


def _file_span(stream: BinaryIO, initial: bytes = b"") -> FileSpan | None:
    """Where ``stream`` lies in a regular file from the ``initial`` bytes read last on, if it
    holds nothing but bytes of one (after a part's headers)."""
    if not MAP_FILES or walks.compiled is None:
        return None
    raw = stream.raw if isinstance(stream, io.BufferedReader) else stream
    try:
        at = stream.tell() - len(initial)
        span = getattr(raw, "file_span", None)
        if span is not None:  # a part of a file (detector.parts)
            found: FileSpan = span(at)
            return found
        if not isinstance(raw, io.FileIO):
            return None
        fd = raw.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError):
        return None
    # A file of the /proc kind says it is empty: it is read, not mapped.
    if not stat.S_ISREG(st.st_mode) or st.st_size < at:
        return None
    return FileSpan(fd, at, None)


class _MappedBlocks:
    """The blocks of a regular file as read-only maps of it (``Window``), not copies: the
    walks read the file's pages where they lie, without a copy of every byte.

    Each block is a window of BLOCK_SIZE bytes that starts where the unread records do, as
    ``_Blocks`` keeps the unread tail at the front of its buffer, so the batches are the same.
    A batch is a view of its window, which stays mapped while anything looks into it; the
    window before is told to give back its resident pages when the next is made (read again
    from the file if looked at).  A file that shrinks while it is read ends the input with an
    error once the records read before are yielded (the pages it lost read as zeros, never a
    fault: see ``_walk.c``).  A block that begins with bytes that are not the file's (a part's
    headers) is a copy of them and of the window after them.
    """

    live = False

    def __init__(self, stream: BinaryIO, span: FileSpan, initial: bytes = b"") -> None:
        assert walks.compiled is not None
        self.make = walks.compiled.Window
        self.stream = stream
        self.fd, self.origin, self.stop, self.before, self.more = span
        # Stream offsets count from where ``initial`` (read already, and read again) starts.
        self.stream_origin = stream.tell() - len(initial)
        self.window: object | None = None
        self.buf: memoryview = memoryview(b"")
        self.lead = 0  # bytes of buf before the window's (``before``'s)
        self.end = 0
        self.eof = False
        self.failure: Exception | None = None
        self.consumed = 0  # stream offset of buf[0]
        self.seen = self.origin  # the file held bytes up to here

    def file_offset(self, stream_offset: int) -> int:
        return self.origin + stream_offset - len(self.before)

    def read_into(self, start: int, stop: int) -> int:
        return 0  # a window holds all the file has of the block when it is made

    def fill(self, keep_from: int, arrived: Callable[[bytearray, int], None] | None = None) -> None:
        """The window from ``buf[keep_from]`` on; ``arrived`` is told as its records are walked
        (a piece at a time, as ``_Blocks`` reads them)."""
        if keep_from == 0 and self.end >= BLOCK_SIZE:
            return  # a window grown for one large record: the walk has not taken it yet
        self.consumed += keep_from
        got = self._map(BLOCK_SIZE)
        self.eof = got < BLOCK_SIZE or self.failure is not None
        window, done = self.window, 0
        while arrived is not None and done < self.end:
            done = min(self.end, done + READ_PIECE)
            arrived(self.buf, done)  # type: ignore[arg-type]
            if window.fault >= 0:  # type: ignore[attr-defined]
                break
        self._check()

    def _map(self, length: int) -> int:
        """A block of ``length`` bytes from ``consumed`` on (fewer where the part or the file
        ends first): how many it holds."""
        lead = self.before[self.consumed :]
        at = self.file_offset(self.consumed + len(lead))
        length = max(0, length - len(lead))
        if self.stop is not None and self.more is not None and at + length > self.stop:
            self.stop = self.more(at + length)
        if self.stop is not None:
            length = min(length, max(0, self.stop - at))
        old, self.window = self.window, None
        self.buf = memoryview(b"")
        if old is not None:
            if old.fault >= 0:  # type: ignore[attr-defined]
                self._lost(at, os.fstat(self.fd).st_size)  # the last batch read zeros
            old.forget()  # type: ignore[attr-defined]
        try:
            window = self.make(self.fd, at, length, PAD)
        except OSError as exc:
            self.failure, self.end, self.eof = exc, 0, True
            return 0
        self.window, self.lead = window, len(lead)
        self.buf = memoryview(bytearray(lead) + memoryview(window) if lead else window)
        self.end = len(lead) + window.length
        if window.size < self.seen:
            self._lost(at, window.size)
        if self.failure is not None:
            self.end = 0
        self.seen = max(self.seen, at + window.length)
        self.stream.seek(self.stream_origin + self.consumed + self.end)
        return self.end

    def _check(self) -> None:
        """After the walk of a window: whether the file lost bytes of it meanwhile."""
        window = self.window
        if window is None:
            return
        start = self.file_offset(self.consumed)  # of buf[0]
        size = os.fstat(self.fd).st_size
        fault = window.fault  # type: ignore[attr-defined]
        if fault < 0 and size >= start + self.end:
            return
        sound = min(self.end, max(self.lead, size - start))
        if fault >= 0:
            sound = min(sound, self.lead + fault)
        self._lost(start + sound, size)
        self.end = sound

    def _lost(self, lost_from: int, size: int) -> None:
        """The file's bytes from ``lost_from`` on could not be read: the input ends there."""
        self.eof = True
        if self.failure is None:
            self.failure = OSError(
                f"the file shrank to {size} bytes while it was read; "
                f"its records from byte {lost_from} on are lost"
            )

    def end_at(self, pos: int) -> None:
        self.end = min(self.end, pos)
        self.eof = True

    def grow(self, need: int) -> None:
        """A window of ``need`` bytes for one record larger than the block."""
        got = self._map(need)
        self._check()
        self.eof = got < need or self.failure is not None


class WalkedColumns(NamedTuple):
    """The columns a walk fills, rows 0 .. n - 1 of them walked so far, and the block's bytes."""

    data: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    caplen: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.int32]


class RowsWalked(Protocol):
    """Work the caller of a reader does on the rows of a batch as soon as they are walked, while
    their bytes are still in the processor's cache; what it made goes with the batch
    (``PacketBatch.decoded``)."""

    def begin(self, capacity: int) -> None:
        """A batch of at most ``capacity`` rows begins."""

    def walked(self, columns: WalkedColumns, rows: int, end: int) -> None:
        """Rows 0 .. rows - 1 of the columns are walked and the block's bytes are read up to
        ``end`` (the bytes past it are not yet the input's)."""

    def finish(self, batch: PacketBatch) -> object:
        """The batch is complete: what goes with it."""


class _Walk:
    """How one format turns the bytes of a block into a batch (see ``_batches``)."""

    def begin(self) -> Callable[[bytearray, int], None] | None:
        """A block is about to be filled from its start: what to tell as its bytes arrive (a
        walk that starts then), or None."""
        return None

    def walk(self, blocks: _Blocks, pos: int) -> tuple[int, PacketBatch | None, bool]:
        """Records from ``pos`` on, as far as they are whole in the block or the batch is full:
        where the walk stopped, the batch of what it found, and whether the batch is full."""
        raise NotImplementedError

    def ended(self, blocks: _Blocks, pos: int) -> None:
        """The input ended with ``blocks.buf[pos : blocks.end]`` unread: report it."""
        raise NotImplementedError

    def needs(self, buf: bytearray, pos: int) -> int:
        """Bytes the record that starts at ``pos`` takes, header included."""
        raise NotImplementedError


def _batches(blocks: _Blocks, walk: _Walk) -> Iterator[PacketBatch]:
    """The read loop of every format: fill the block (keeping the unread tail), walk its records,
    yield them; at the end of the input report what is left."""
    pos = 0
    while True:
        blocks.fill(pos, walk.begin())
        pos, batch, full = walk.walk(blocks, 0)
        if batch is not None:
            yield batch
        if full:
            continue  # more records wait in this block
        if blocks.failure is not None:
            raise blocks.failure
        if blocks.eof:
            walk.ended(blocks, pos)
            return
        if pos == 0 and batch is None and blocks.end >= BLOCK_SIZE:
            # A single record larger than the block: grow the buffer for it.
            want = walk.needs(blocks.buf, 0)
            blocks.grow(want)
            _fill_to(blocks, want)


# The record header of Kuznetzov's patched pcap is 8 bytes longer.
PATCHED_PCAP = (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34")


class _PcapWalk(_Walk):
    """Classic pcap: one link type, a chain of record headers."""

    def __init__(
        self,
        magic: bytes,
        header: bytes,
        stats: InputStats,
        shift: int,
        early: RowsWalked | None = None,
    ) -> None:
        endian, self.unit = PCAP_MAGICS[magic]
        _vmaj, _vmin, _zone, _sigfigs, snaplen, network = struct.unpack(endian + "HHiIII", header)
        self.linktype = network & 0x0FFFFFFF
        self.rec_hdr = 24 if magic in PATCHED_PCAP else 16
        self.limit = max(MAX_CAPLEN, snaplen if snaplen < (1 << 24) else MAX_CAPLEN)
        self.big = endian == ">"
        self.u32 = struct.Struct(endian + "I").unpack_from
        self.chain, _, self.resync = walks.chains()
        self.columns = _chain_columns(MAX_BATCH_RECORDS)
        self.stats = stats
        self.shift = shift
        # Records walked before this batch, damaged ones included: errors name the record as a
        # reader counts.
        self.number = 0
        # Where the walk begun while the block filled stands: (offset, rows filled).
        self.ahead = (0, 0)
        self.rows_walked = early
        self.links = np.zeros(0, dtype=np.int32)  # the link type column the rows walked are given

    def begin(self) -> Callable[[bytearray, int], None]:
        most = MAX_BATCH_RECORDS
        if len(self.columns[0]) < most:
            self.columns = _chain_columns(most)
        self.ahead = (0, 0)
        if self.rows_walked is not None:
            if len(self.links) != len(self.columns[0]):
                self.links = np.full(len(self.columns[0]), self.linktype, dtype=np.int32)
            self.rows_walked.begin(most)
        return self._arrived

    def _arrived(self, buf: bytearray, end: int) -> None:
        """Walk the sound, whole records read so far (the chain stops where ``walk`` takes over:
        a damaged or partial record, or the batch full)."""
        pos, n = self.ahead
        offsets, caplen, wirelen, ts = self.columns
        self.ahead = self.chain(buf, pos, end, self.rec_hdr, self.limit, self.big, self.unit,
                                n, MAX_BATCH_RECORDS, offsets, caplen, wirelen, ts)  # fmt: skip
        if self.rows_walked is not None and self.ahead[1] > n:
            data = np.frombuffer(buf, dtype=np.uint8)
            columns = WalkedColumns(data, offsets, caplen, self.links)
            self.rows_walked.walked(columns, self.ahead[1], end)

    def walk(self, blocks: _Blocks, pos: int) -> tuple[int, PacketBatch | None, bool]:
        buf, end, rec_hdr, most = blocks.buf, blocks.end, self.rec_hdr, MAX_BATCH_RECORDS
        offsets, caplen, wirelen, ts = self.columns  # sized by ``begin``
        n = 0  # rows of the columns filled
        if pos == 0:
            pos, n = self.ahead  # walked while the block filled
        self.ahead = (0, 0)
        while True:
            pos, n = self.chain(buf, pos, end, rec_hdr, self.limit, self.big, self.unit, n, most,
                                offsets, caplen, wirelen, ts)  # fmt: skip
            if n >= most or pos + rec_hdr > end:
                break
            incl = self.u32(buf, pos + 8)[0]
            if 0 < incl <= self.limit:
                break  # a whole record that is not all in the block yet
            pos = self._damaged(blocks, pos, incl, n)
            if pos < 0:
                pos = -pos - 1
                break
        if pos > end:  # the file shrank under rows walked before (see _MappedBlocks)
            n = int(np.searchsorted(offsets[:n] + caplen[:n], end, side="right"))
        if not n:
            return pos, None, False
        self.number += n
        batch = PacketBatch(
            data=np.frombuffer(buf, dtype=np.uint8),
            offsets=offsets[:n].copy(),
            caplen=caplen[:n].copy(),
            wirelen=wirelen[:n].copy(),
            ts=ts[:n].copy(),
            linktype=np.full(n, self.linktype, dtype=np.int32),
        )
        if self.rows_walked is not None:
            batch.decoded = self.rows_walked.finish(batch)
        return pos, batch, n >= most

    def _damaged(self, blocks: _Blocks, pos: int, incl: int, walked: int) -> int:
        """Step over the damaged record at ``pos`` (``walked`` records into the batch): where to
        walk on, or -1 - where to read on from once the block has been refilled."""
        buf, end, rec_hdr = blocks.buf, blocks.end, self.rec_hdr
        number = self.number + walked
        if incl > self.limit:
            # Oversized record: the chain is broken here.  Look for the next record header.
            self.stats.error(
                f"record {number + 1} at byte {24 + self.shift + blocks.consumed + pos}: "
                f"captured length {incl} is impossible; resynchronising"
            )
            self.number += 1
            found = self.resync(buf, pos + 1, end, rec_hdr, self.limit, self.big, MAX_ORIG)
            if found >= 0:
                return found
            return -1 - (max(pos + 1, end - rec_hdr - MAX_CAPLEN) if not blocks.eof else end)
        if not any(buf[pos : pos + rec_hdr]):
            # A run of zero bytes (a hole in the file, or a gzip of zeros): skip it whole (as a
            # chain of empty records), not one record per turn of the walk.
            run = _zero_run(buf, pos, end)
            run -= run % rec_hdr
            self.stats.error(
                f"records {number + 1}-{number + run // rec_hdr}"
                f" at byte {24 + self.shift + blocks.consumed + pos}: {run} zero bytes skipped"
            )
            self.number += run // rec_hdr
            return pos + run
        self.number += 1
        self.stats.error(f"record {number + 1}: zero-length record skipped")
        return pos + rec_hdr

    def ended(self, blocks: _Blocks, pos: int) -> None:
        left = blocks.end - pos
        if not left:
            return
        if left < self.rec_hdr:
            self.stats.error(f"file truncated: {left} bytes of a record header at the end")
            return
        want = self.u32(blocks.buf, pos + 8)[0]
        self.stats.error(
            f"file truncated in record {self.number + 1}: "
            f"{left - self.rec_hdr} of {want} captured bytes present"
        )

    def needs(self, buf: bytearray, pos: int) -> int:
        return self.u32(buf, pos + 8)[0] + self.rec_hdr


def _read_pcap(
    stream: BinaryIO,
    magic: bytes,
    stats: InputStats,
    live: bool,
    window: Window,
    early: RowsWalked | None = None,
) -> Iterator[PacketBatch]:
    header = _read_exact(stream, 20)
    if len(header) < 20:
        raise CaptureError(f"{stats.path}: pcap file header is truncated")
    walk = _PcapWalk(magic, header, stats, window.shift, early)
    span = None if live else _file_span(stream)
    blocks = _Blocks(stream, live=live) if span is None else _MappedBlocks(stream, span)
    yield from _batches(blocks, walk)  # type: ignore[arg-type]


def _chain_columns(rows: int) -> tuple[walks.Column, walks.Column, walks.Column, walks.Seconds]:
    """Columns the chain walks fill (offsets, captured and original lengths, seconds), reused
    from batch to batch: a batch takes a copy of the rows it holds."""
    return (*(np.empty(rows, dtype=np.int64) for _ in range(3)), np.empty(rows, dtype=np.float64))


def _zero_run(buf: bytearray, pos: int, end: int) -> int:
    """How many zero bytes start at ``pos`` (up to ``end``)."""
    data = np.frombuffer(buf, dtype=np.uint8, count=end - pos, offset=pos)
    nonzero = np.flatnonzero(data)
    return int(nonzero[0]) if len(nonzero) else end - pos


def _fill_to(blocks: _Blocks, want: int) -> None:
    while blocks.end < want and not blocks.eof:
        got = blocks.read_into(blocks.end, want)
        if not got:
            blocks.eof = True
        else:
            blocks.end += got


def plausible_record(
    buf: bytes | bytearray,
    p: int,
    end: int,
    unpack: Callable[..., tuple[int, ...]],
    limit: int = MAX_CAPLEN,
    rec_hdr: int = 16,
) -> int | None:
    """Captured length of the record whose header starts at ``p``, if the header is plausible
    (lengths within bounds, captured not above original), else None."""
    return walks.plausible_length(buf, p, end, unpack, limit, rec_hdr, MAX_ORIG)


# The largest original length a plausible record header declares.
MAX_ORIG = MAX_CAPLEN * 4


# pcapng block types
SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
# The largest pcapng block read; anything larger is corruption.
MAX_BLOCK = MAX_CAPLEN * 4
BYTE_ORDERS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}


class _Columns:
    """The columns of a pcapng batch, gathered in runs: a run ends where the interfaces in force
    change, or at a block that is not an enhanced packet."""

    def __init__(self) -> None:
        self.runs: list[tuple[npt.NDArray[np.int64], ...]] = []
        self.rows = 0
        self.walked = 0  # packet blocks walked, damaged ones included

    def add(self, offs: npt.ArrayLike, caps: npt.ArrayLike, origs: npt.ArrayLike,
            ts: npt.ArrayLike, links: npt.ArrayLike) -> None:  # fmt: skip
        run = tuple(np.asarray(c) for c in (offs, caps, origs, ts, links))
        self.runs.append(run)
        self.rows += len(run[0])

    def batch(self, buf: bytearray, before: float) -> PacketBatch | None:
        """The batch of the runs; a packet without a time takes the last one before it (in an
        earlier batch, ``before``, if need be)."""
        if not self.rows:
            return None
        offs, caps, origs, ts, links = (
            np.concatenate(c) if len(self.runs) > 1 else c[0] for c in zip(*self.runs, strict=True)
        )
        ts = ts.astype(np.float64, copy=False)
        if np.isnan(ts).any():
            ts = _fill_nan_forward(ts, before)  # simple packet blocks carry no time
        return PacketBatch(
            data=np.frombuffer(buf, dtype=np.uint8),
            offsets=offs.astype(np.int64, copy=False),
            caplen=caps.astype(np.int64, copy=False),
            wirelen=origs.astype(np.int64, copy=False),
            ts=ts,
            linktype=links.astype(np.int32, copy=False),
        )


class _PcapngWalk(_Walk):
    """pcapng: per-interface link types and timestamp resolutions, several sections.

    The hot loop only notes where enhanced packet blocks start; their fields are read for a
    whole run at once (``_enhanced``) where the interfaces in force change or the walk ends."""

    def __init__(self, stats: InputStats, window: Window) -> None:
        self.stats = stats
        self.shift = window.shift
        self.interfaces: list[tuple[int, float, int]] = []  # (linktype, s per tick, snaplen)
        self._byte_order("<")
        self.seen = 0  # packet blocks walked so far (errors name packets as a reader counts)
        self.last_ts = 0.0  # time of the last packet yielded
        self.chain = walks.chains().pcapng_chain
        self.starts = np.empty(MAX_BATCH_RECORDS, dtype=np.int64)  # reused from batch to batch

    def _byte_order(self, endian: str) -> None:
        self.endian = endian
        self.big = endian == ">"
        self.head = struct.Struct(endian + "II").unpack_from
        self.fields = np.dtype([(n, endian + "u4") for n in
                                ("blen", "iface", "tsh", "tsl", "cap", "orig")])  # fmt: skip

    def walk(self, blocks: _Blocks, pos: int) -> tuple[int, PacketBatch | None, bool]:
        buf, end, most = blocks.buf, blocks.end, MAX_BATCH_RECORDS
        cols = _Columns()
        if len(self.starts) < most:
            self.starts = np.empty(most, dtype=np.int64)
        starts, n = self.starts, 0  # enhanced packet blocks of the current run
        last = end - 12  # the last offset a block header can be read at
        room = most  # packet blocks the batch can still take
        while pos <= last and n < room:
            pos, n = self.chain(buf, pos, end, self.big, MAX_BLOCK, n, room, starts)
            if pos > last or n >= room:
                break
            self._enhanced(buf, starts[:n], cols)
            n = 0
            nxt = self._block(blocks, pos, cols)
            if nxt is None:
                break
            pos, room = nxt, most - cols.walked
        self._enhanced(buf, starts[:n], cols)
        self.seen += cols.walked
        batch = cols.batch(buf, self.last_ts)
        if batch is not None:
            self.last_ts = float(batch.ts[-1])
        return pos, batch, cols.walked >= most

    def _enhanced(self, buf: bytearray, starts: walks.Column, cols: _Columns) -> None:
        """The enhanced packet blocks that start at ``starts`` as columns."""
        if not len(starts):
            return
        data = np.frombuffer(buf, dtype=np.uint8)
        window = np.lib.stride_tricks.as_strided(data, shape=(len(data) - 24, 24), strides=(1, 1))
        f = window[starts + 4].copy().view(self.fields).reshape(-1)
        links = np.array([i[0] for i in self.interfaces] or [0], dtype=np.int64)
        ticks = np.array([i[1] for i in self.interfaces] or [0.0], dtype=np.float64)
        iface, cap = f["iface"], f["cap"]
        sound = (iface < len(self.interfaces)) & (cap > 0) & (cap <= f["blen"] - 32)
        if not sound.all():
            for k in np.flatnonzero(~sound).tolist():
                self._bad_packet(int(iface[k]), int(cap[k]), self.seen + cols.walked + k + 1)
        cols.walked += len(starts)
        iface, cap, f = iface[sound], cap[sound], f[sound]
        ticks_since = (f["tsh"].astype(np.uint64) << np.uint64(32)) | f["tsl"]
        cols.add(starts[sound] + 28, cap, np.maximum(f["orig"], cap),
                 ticks_since.astype(np.float64) * ticks[iface], links[iface])  # fmt: skip

    def _block(self, blocks: _Blocks, pos: int, cols: _Columns) -> int | None:
        """The block at ``pos`` that is not a sound enhanced packet block: where the next one
        starts, or None where the walk stops (the block is not all in the buffer, or the rest
        of the input cannot be read)."""
        buf = blocks.buf
        btype, blen = self.head(buf, pos)
        if btype == SHB:  # the same number in either byte order
            if not self._section(blocks, pos):
                return None
            btype, blen = self.head(buf, pos)
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            self._impossible(blocks, pos, blen)
            return None
        if pos + blen > blocks.end:
            return None
        self._other_block(buf, pos, btype, blen, cols)
        return pos + blen

    def _section(self, blocks: _Blocks, pos: int) -> bool:
        """A section header: its byte order, and no interfaces yet; False if it is unreadable."""
        bom = bytes(blocks.buf[pos + 8 : pos + 12])
        endian = BYTE_ORDERS.get(bom)
        if endian is not None:
            self._byte_order(endian)
            self.interfaces = []
            return True
        if blocks.consumed + pos == 0:
            raise CaptureError(
                f"{self.stats.path}: pcapng section header has no valid byte-order magic "
                f"({bom.hex(' ')}): not a readable capture"
            )
        self.stats.error(
            f"pcapng section at byte {self.shift + blocks.consumed + pos}: bad byte order; "
            "the rest of the file is unreadable"
        )
        blocks.end_at(pos)  # the rest cannot be read
        return False

    def _impossible(self, blocks: _Blocks, pos: int, blen: int) -> None:
        if blocks.consumed + pos == 0:
            raise CaptureError(
                f"{self.stats.path}: pcapng section header length {blen} is impossible: "
                "not a readable capture"
            )
        self.stats.error(
            f"pcapng block at byte {self.shift + blocks.consumed + pos}: impossible length {blen}; "
            "the rest of the file is unreadable"
        )
        blocks.end_at(pos)  # the rest cannot be read

    def _bad_packet(self, iface: int, cap: int, number: int) -> None:
        if iface >= len(self.interfaces):
            self.stats.error(f"packet {number}: unknown interface {iface}")
        else:
            self.stats.error(f"packet {number}: bad captured length {cap}")

    def _other_block(self, buf: bytearray, pos: int, btype: int, blen: int, cols: _Columns) -> None:
        """Blocks other than enhanced packets: interfaces, simple and obsolete packets."""
        endian, body = self.endian, pos + 8
        if btype == IDB and blen >= 20:
            lt, _res, snap = struct.unpack_from(endian + "HHI", buf, body)
            self.interfaces.append((lt, _if_tsresol(buf, body + 8, pos + blen - 4, endian), snap))
        elif btype == SPB and blen >= 16 and self.interfaces:
            orig = struct.unpack_from(endian + "I", buf, body)[0]
            lt, _tick, snap = self.interfaces[0]
            cap = min(orig, blen - 16, snap or orig)
            if cap:
                cols.walked += 1
                cols.add([body + 4], [cap], [orig], [float("nan")], [lt])
        elif btype == PB and blen >= 32:
            iface, _drops, tsh, tsl, cap, orig = struct.unpack_from(endian + "HHIIII", buf, body)
            cols.walked += 1
            if iface < len(self.interfaces) and 0 < cap <= blen - 32:
                lt, tick, _snap = self.interfaces[iface]
                cols.add([body + 20], [cap], [max(orig, cap)], [((tsh << 32) | tsl) * tick], [lt])
            else:
                self._bad_packet(iface, cap, self.seen + cols.walked)

    def ended(self, blocks: _Blocks, pos: int) -> None:
        if pos < blocks.end:
            self.stats.error(f"file truncated: last block incomplete ({blocks.end - pos} bytes)")

    def needs(self, buf: bytearray, pos: int) -> int:
        return int(self.head(buf, pos)[1])


def _read_pcapng(
    stream: BinaryIO, magic: bytes, stats: InputStats, live: bool, window: Window
) -> Iterator[PacketBatch]:
    span = None if live else _file_span(stream, magic)
    if span is None:
        blocks = _Blocks(stream, magic, live=live)
    else:
        blocks = _MappedBlocks(stream, span, magic)  # type: ignore[assignment]
    yield from _batches(blocks, _PcapngWalk(stats, window))


def _fill_nan_forward(ts: npt.NDArray[np.float64], before: float) -> npt.NDArray[np.float64]:
    """Each NaN replaced by the last time before it (``before`` for those at the start)."""
    good = ~np.isnan(ts)
    idx = np.where(good, np.arange(len(ts)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = ts[idx]
    out[np.isnan(out)] = before
    return out


def _if_tsresol(buf: bytearray, pos: int, end: int, endian: str) -> float:
    """Seconds per timestamp tick from the if_tsresol option (default microseconds)."""
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = buf[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        pos += 4 + ((length + 3) & ~3)
    return 1e-6
