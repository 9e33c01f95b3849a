"""Scanning on several cores: inputs cut into parts, one engine per part, results folded.

A large classic pcap is cut at record boundaries into as many parts as there are workers (a
boundary is found by checking that a run of record headers chains).  A large pcapng file is cut
at block boundaries found by one walk of its block headers, which also gives each part the
section header and interface descriptions in force where it starts, read before its blocks.
Other inputs (gzip, stdin) are read whole.  Each worker
runs its own engine over a contiguous run of parts, in capture order, and returns what the
verdicts need: stream evidence, per-flow counters, distinct hosts, statistics.  Folding keeps
what a single engine would have seen: a stream found in one part takes the packets and bytes
its flow carried in the later parts from their flow tables, even where that part's engine did
not recognise the stream (a TCP handover joined mid-stream, say).
"""

from __future__ import annotations

import io
import itertools
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from detector.capture.reader import (
    MAX_CAPLEN,
    MAX_ORIG,
    PATCHED_PCAP,
    PCAP_MAGICS,
    PCAPNG_SHB,
    WHOLE,
    CaptureError,
    FileSpan,
    InputStats,
    Window,
    open_stream,
    plausible_record,
    read_batches,
    reading,
    release_blocks,
)
from detector.capture.sections import sections_at
from detector.claims import TOLD_STREAMS, Claims
from detector.decode.headers import KNOWN_LINKS, early_decode
from detector.detection import Detection
from detector.engine import Engine, EngineStats
from detector.evidence import StreamEvidence
from detector.flows.groups import distinct
from detector.limits import Limits
from detector.prefilter_route import route_for
from detector.protocols import registry

# Files smaller than this are not worth a second process.
SPLIT_MIN_BYTES = 64 << 20
# Record headers that must chain for a cut point to count as a record boundary.
CHAIN = 16
# Pieces a large file is cut into for several workers: small enough that what a slowed worker
# has not begun can be shared out, large enough that a piece's start costs nothing to speak of.
PIECE_BYTES = 48 << 20
# Offsets of a window looked at together for a record boundary.
STRETCH = 4096


class ScanFault(Exception):
    """The engine failed on an input (a bug): the message names the input and the packet."""


@dataclass(repr=False, eq=False, slots=True)
class Part:
    """Bytes [start, end) of one input; start 0 and end None mean the whole input."""

    path: str
    start: int = 0
    end: int | None = None
    # pcapng: the blocks to read before the part's own (the section header and interface
    # descriptions in force at its start).
    head: bytes = b""


@dataclass(repr=False, eq=False)
class PartResult:
    """What one worker's engine saw, in a form that pickles and folds."""

    streams: list[StreamEvidence]
    flow_keys: npt.NDArray[np.uint64]
    flow_counts: npt.NDArray[np.int64]  # (n, 4): packets dir0, dir1, bytes dir0, dir1
    flow_last: npt.NDArray[np.float64]
    hosts: npt.NDArray[np.uint64]
    hosts_before: int
    stats: EngineStats
    total_flows: int
    peak_flows: int
    inputs: list[InputStats] = field(default_factory=list)
    unreadable: bool = False


def plan(paths: list[str], jobs: int) -> list[list[Part]]:
    """Parts for each worker (contiguous, in capture order).  A large file is cut into pieces
    of about PIECE_BYTES, as many for each worker: the pieces a worker has not begun when
    another is done can change hands (``detector.claims``)."""
    parts: list[Part] = []
    for p in paths:
        parts.extend(split(p, _pieces(p, jobs)))
    sizes = [_size(x) for x in parts]
    total = sum(sizes) or 1
    if jobs <= 1 or len(parts) == 1 or total < SPLIT_MIN_BYTES:
        return [parts]  # a second process costs more than it saves on small inputs
    groups: list[list[Part]] = [[]]
    acc = 0
    for part, size in zip(parts, sizes, strict=True):
        # A part goes to the next group when most of it lies past this group's share.
        if groups[-1] and acc + size / 2 > total * len(groups) / jobs and len(groups) < jobs:
            groups.append([])
        groups[-1].append(part)
        acc += size
    return groups


def _pieces(path: str, jobs: int) -> int:
    """Pieces to cut ``path`` into for ``jobs`` workers (a multiple of ``jobs``)."""
    if jobs <= 1 or not _large_file(path):
        return jobs
    per_job = os.path.getsize(path) / (jobs * PIECE_BYTES)
    return jobs * max(1, round(per_job))


def _large_file(path: str) -> bool:
    """A file (not standard input) large enough to be worth cutting."""
    return path != "-" and os.path.isfile(path) and os.path.getsize(path) >= SPLIT_MIN_BYTES


def can_cut(path: str) -> bool:
    """Whether ``path`` is a file large enough to be cut into parts, of a format that can be
    (pcap or pcapng: not gzip)."""
    if not _large_file(path):
        return False
    with open(path, "rb") as f:
        magic = f.read(4)
    return magic == PCAPNG_SHB or (magic in PCAP_MAGICS and magic not in PATCHED_PCAP)


def _size(part: Part) -> int:
    if part.path == "-" or not os.path.isfile(part.path):
        return 0
    end = os.path.getsize(part.path) if part.end is None else part.end
    return max(0, end - part.start)


def _midpoint(path: str) -> int | None:
    """A record boundary near the middle of a large classic pcap, or None."""
    cuts = cut_points(path, 2)
    return cuts[0] if cuts else None


def cut_points(path: str, pieces: int) -> list[int]:
    """Record boundaries that cut a large classic pcap into about ``pieces`` parts of equal
    size (fewer where no boundary is found near a target); none for other inputs."""
    if not _large_file(path):
        return []
    size = os.path.getsize(path)
    cuts: list[int] = []
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:4] not in PCAP_MAGICS or head[:4] in PATCHED_PCAP:
            return []  # gzip, pcapng, or the rare patched format: read whole
        order = PCAP_MAGICS[head[:4]][0]
        u32 = struct.Struct(order + "I").unpack_from
        for k in range(1, max(1, pieces)):
            target = size * k // pieces
            # A boundary is near (records are small): a short read first, a long one if not.
            for length in (64 << 10, 4 << 20):
                f.seek(target)
                window = f.read(length)
                off = _first_chain(window, order, u32)
                if off is not None or len(window) < length:
                    break
            if off is not None and target + off > (cuts[-1] if cuts else 24):
                cuts.append(target + off)
    return cuts


def _first_chain(
    window: bytes, order: str, u32: Callable[[bytes, int], tuple[int, ...]]
) -> int | None:
    """The first offset in ``window`` where CHAIN record headers chain.  Only offsets whose
    header has plausible lengths and fraction are tried (a few in a thousand), looked for a
    stretch at a time: a boundary is usually within the first record."""
    last = len(window) - 16 * CHAIN
    shifts = (0, 8, 16, 24) if order == "<" else (24, 16, 8, 0)
    for start in range(0, max(0, last), STRETCH):
        n = min(STRETCH, last - start)
        u = np.frombuffer(window, np.uint8, n + 16, start).astype(np.uint32)

        def word(at: int, u: npt.NDArray[np.uint32] = u, n: int = n) -> npt.NDArray[np.uint32]:
            return (
                (u[at : at + n] << shifts[0])
                | (u[at + 1 : at + 1 + n] << shifts[1])
                | (u[at + 2 : at + 2 + n] << shifts[2])
                | (u[at + 3 : at + 3 + n] << shifts[3])
            )

        incl, orig = word(8), word(12)
        maybe = (word(4) < 10**9) & (incl > 0) & (incl <= MAX_CAPLEN) & (incl <= orig)
        maybe &= orig <= MAX_ORIG
        for off in (np.flatnonzero(maybe) + start).tolist():
            if _chains(window, off, u32):
                return off
    return None


def split(path: str, pieces: int) -> list[Part]:
    """``path`` as about ``pieces`` parts of equal size, in order (one where it cannot be cut)."""
    cuts = cut_points(path, pieces) if pieces > 1 else []
    if cuts:
        ends: list[int | None] = [*cuts, None]
        return [Part(path, a, b) for a, b in zip([0, *cuts], ends, strict=True)]
    targets = pcapng_cuts(path, pieces) if pieces > 1 else []
    return pcapng_parts(path, targets) if targets else [Part(path)]


def pcapng_cuts(path: str, pieces: int) -> list[int]:
    """Byte offsets that cut a large pcapng file into ``pieces`` parts of equal size (none for
    other inputs)."""
    if not _large_file(path):
        return []
    with open(path, "rb") as f:
        if f.read(4) != PCAPNG_SHB:
            return []
    size = os.path.getsize(path)
    return [size * k // pieces for k in range(1, max(1, pieces))]


def pcapng_parts(path: str, targets: list[int]) -> list[Part]:
    """A pcapng file cut at the first block at or after each of ``targets``: one walk of the
    block headers (``sections.sections_at``) finds the blocks and, for each part, the section
    header and interface descriptions in force at its start.  Where the file ends or its chain
    breaks before a target, the part before it runs to the end."""
    size = os.path.getsize(path)
    starts = [(0, b"")]
    for at, head in sections_at(path, targets):
        if starts[-1][0] < at < size:
            starts.append((at, head))
    ends: list[int | None] = [at for at, _ in starts[1:]] + [None]
    return [Part(path, a, b, h) for (a, h), b in zip(starts, ends, strict=True)]


def _chains(buf: bytes, off: int, u32: Callable[[bytes, int], tuple[int, ...]]) -> bool:
    """CHAIN record headers from ``off`` are plausible and follow each other."""
    prev_sec = None
    for _ in range(CHAIN):
        incl = plausible_record(buf, off, len(buf), u32)
        if incl is None:
            return False
        sec, frac = u32(buf, off)[0], u32(buf, off + 4)[0]
        if frac >= 10**9:
            return False
        if prev_sec is not None and not (prev_sec - 86400 <= sec <= prev_sec + 86400):
            return False
        prev_sec = sec
        off += 16 + incl
    return True


class _Slice(io.RawIOBase):
    """``head`` followed by bytes [start, end) of the file."""

    def __init__(
        self,
        path: str,
        head: bytes,
        start: int,
        end: int | None,
        more: Callable[[int], int | None] | None = None,
    ) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.whole_head, self.start, self.end = head, start, end
        self.size = os.path.getsize(path)
        self.stop = self.size if end is None else min(self.size, end)
        # Asked for a later end when the part is read up to its end (``read_runs``).
        self.more = more
        self.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or pos < 0:
            raise OSError("a part is only read from a given offset")
        self.head = self.whole_head[pos:]
        at = self.start + max(0, pos - len(self.whole_head))
        self.f.seek(at)
        self.left = self.stop - at
        self.position = pos  # bytes of the stream read: how far the part has been read
        return pos

    def file_span(self, pos: int) -> FileSpan:
        """Where the stream from ``pos`` on lies in the file (after what is left of the head)."""
        at = self.start + max(0, pos - len(self.whole_head))
        return FileSpan(self.f.fileno(), at, self.end, self.whole_head[pos:], self._more)

    def _more(self, want: int) -> int | None:
        """A later end, asked for once the part is read up to ``want``."""
        if self.more is not None and self.end is not None:
            self.end = self.more(want)
            self.stop = self.size if self.end is None else min(self.size, self.end)
            self.left = self.stop - self.f.tell()
        return self.end

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
        else:
            if self.left < len(b) and self.more is not None:
                self._more(self.f.tell() + len(b))
            n = self.f.readinto(memoryview(b)[: max(0, min(len(b), self.left))]) or 0
            self.left -= n
        self.position += n
        return n

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self.f.close()
        super().close()


def open_part(
    part: Part, more: Callable[[int], int | None] | None = None
) -> tuple[BinaryIO, Window]:
    """A stream of the part, and where it lies in its file; ``more`` is asked for a later end
    when the part is read up to its end (the next parts of the file that the reader may go on
    to, where they can be claimed)."""
    if part.start == 0 and part.end is None:
        return open_stream(part.path), WHOLE
    with open(part.path, "rb") as f:
        head = f.read(24)
    if head[:4] == PCAPNG_SHB:
        # The blocks of the part, after the section and interfaces in force where it starts.
        stream = _Slice(part.path, part.head, part.start, part.end, more)
        return io.BufferedReader(stream, 1 << 16), Window(shift=part.start - len(part.head))
    # pcap: the file header, then the records of the part (cut at record boundaries).
    start = max(part.start, 24)
    stream = _Slice(part.path, head, start, part.end, more)
    return io.BufferedReader(stream, 1 << 16), Window(shift=start - 24)


def run_parts(
    parts: list[Part],
    progress: Callable[[int], None] | None = None,
    detection: Detection | None = None,
    limits: Limits | None = None,
) -> tuple[Engine, list[InputStats], bool]:
    """One engine over ``parts`` in order; per-part input statistics; any input unreadable.
    ``progress`` is told how many bytes of the parts have been read so far."""
    engine = Engine(limits, detection)
    inputs: list[InputStats] = []
    unreadable = False
    done = 0
    for part in parts:
        told = None if progress is None else _offset(progress, done)
        stats, bad = _read_whole(engine, part, told)
        unreadable |= bad
        done += _size(part)
        inputs.append(stats)
    release_blocks()
    return engine, inputs, unreadable


def _read_whole(
    engine: Engine,
    part: Part,
    progress: Callable[[int], None] | None,
    more: Callable[[int], int | None] | None = None,
) -> tuple[InputStats, bool]:
    """Feed ``part`` to ``engine`` (and what ``more`` adds to it, see ``open_part``): what was
    read of it, and whether it was unreadable."""
    stats = InputStats(part.path)
    unreadable = False
    try:
        _read_part(engine, part, stats, progress, more)
    except CaptureError as exc:
        stats.error(str(exc).removeprefix(f"{part.path}: "))  # reports name the input
        unreadable = True
    # Damaged from its first record: nothing of it could be read.
    return stats, unreadable or (stats.packets == 0 and bool(stats.errors))


def read_runs(
    claims: Claims,
    run: int,
    parts: list[Part],
    progress: Callable[[int], None] | None = None,
    detection: Detection | None = None,
    limits: Limits | None = None,
) -> list[tuple[int, PartResult]]:
    """Read run ``run`` of ``claims`` (pieces of ``parts``) with one engine, then the tails of
    other runs taken over, each with an engine of its own: each engine's result, after the
    index of its first piece.  ``progress`` is told the bytes of every run read so far."""
    out: list[tuple[int, PartResult]] = []
    current: int | None = run
    while current is not None:
        engine = Engine(limits, detection)
        engine.decoded_elsewhere(claims.told_elsewhere(current))
        inputs: list[InputStats] = []
        unreadable = False
        first: int | None = None
        while (i := claims.take(current)) is not None:
            first = i if first is None else first
            _share_counts(claims, current, engine)
            # The pieces of the file that follow are read on into as they are claimed: one
            # stream, with no short batch where a piece ends.
            stretch = _Stretch(claims, current, parts, i, engine)
            told = stretch.told(progress, claims.begun() - _size(parts[i]))
            stats, bad = _read_whole(engine, parts[i], told, stretch.more)
            unreadable |= bad
            inputs.append(stats)
        if first is not None:
            out.append((first, result_of(engine, inputs, unreadable)))
        del engine  # before the next one is built
        current = claims.take_over(current)
    release_blocks()
    return out


def _share_counts(claims: Claims, run: int, engine: Engine) -> None:
    """Tell the other engines of the scan how many packets of each stream ``engine`` has
    decoded, and it how many they have: each stream is sampled on the scan's count (a piece at
    a time, so a few hundred more decoded than by one engine, not a full start in every part)."""
    claims.tell(run, engine.decoded_counts(TOLD_STREAMS))
    engine.decoded_elsewhere(claims.told_elsewhere(run))


class _Stretch:
    """Pieces of one file that one run reads as one stream, from piece ``first``: the pieces
    after it are claimed as the reader reaches them."""

    def __init__(
        self, claims: Claims, run: int, parts: list[Part], first: int, engine: Engine
    ) -> None:
        self.claims, self.run, self.parts, self.engine = claims, run, parts, engine
        self.start = parts[first].start
        self.last = first

    def more(self, want: int) -> int | None:
        """The end of the stretch once the pieces up to byte ``want`` are claimed, as far as
        they can be."""
        end = self.parts[self.last].end
        while end is not None and end < want:
            j = self.claims.take(self.run, joined=True)
            if j is None:
                break
            _share_counts(self.claims, self.run, self.engine)
            self.last, end = j, self.parts[j].end
        return end

    def told(self, progress: Callable[[int], None] | None, before: int) -> Callable[[int], None]:
        """What the stretch tells as it is read: how far into its last piece, to the claims; the
        bytes of every run begun before it and of itself read, to ``progress``."""

        def told(n: int) -> None:
            self.claims.read(self.run, max(0, self.start + n - self.parts[self.last].start))
            if progress is not None:
                progress(before + n)

        return told


def _offset(progress: Callable[[int], None], done: int) -> Callable[[int], None]:
    return lambda n: progress(done + n)


def _read_part(
    engine: Engine,
    part: Part,
    stats: InputStats,
    progress: Callable[[int], None] | None,
    more: Callable[[int], int | None] | None = None,
) -> None:
    """Feed the packets of ``part`` to ``engine``, counting them in ``stats``."""
    stream, window = open_part(part, more)
    try:
        batches = read_batches(stream, stats, window=window, early=early_decode())
        for batch in reading(batches, stats):
            stats.took(batch, KNOWN_LINKS)
            try:
                engine.process(batch)
            except Exception as exc:
                # A fault of the program, not of the input: the scan must not pass for done.
                raise ScanFault(
                    f"{part.path}: failed in the batch ending at packet {stats.packets}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if progress:
                progress(_tell(stream))
    finally:
        stream.close()


def _tell(stream: object) -> int:
    """Bytes of the underlying file read so far (compressed bytes for gzip)."""
    try:
        raw = getattr(stream, "fileobj", None) or getattr(stream, "raw", None) or stream
        return int(raw.tell())  # type: ignore[attr-defined]
    except (OSError, AttributeError, ValueError):
        return 0


def result_of(engine: Engine, inputs: list[InputStats], unreadable: bool) -> PartResult:
    streams = engine.finish()
    n = len(engine.flows)
    return PartResult(
        streams=streams,
        flow_keys=engine.flows.key[:n].copy(),
        flow_counts=engine.flows.counts[:n].copy(),
        flow_last=engine.flows.last[:n].copy(),
        hosts=engine.hosts.keys.copy(),
        hosts_before=engine._hosts_before,
        stats=engine.stats,
        total_flows=engine.flows.total_flows,
        peak_flows=engine.flows.peak_flows,
        inputs=inputs,
        unreadable=unreadable,
    )


class _Worker:
    """A forked process that reads a group of parts, and the pipe its result comes back on
    (its length, then the pickled result or the error that stopped the worker)."""

    def __init__(
        self,
        claims: Claims,
        run: int,
        parts: list[Part],
        detection: Detection | None,
        limits: Limits | None,
    ) -> None:
        read, write = os.pipe()
        # What is buffered is written once, by this process, not again by the worker.
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            status = 1
            try:
                os.close(read)
                _work(write, claims, run, parts, detection, limits)
                status = 0
            finally:
                os._exit(status)  # never this process's exit handlers, nor its return
        os.close(write)
        self.pipe: BinaryIO | None = open(read, "rb")  # noqa: SIM115 - closed in end()
        self.status: int | None = None

    def result(self) -> list[tuple[int, PartResult]]:
        """The worker's results (``read_runs``); the error that stopped it is raised here."""
        assert self.pipe is not None
        head = self.pipe.read(8)
        data = self.pipe.read(int.from_bytes(head, "little")) if len(head) == 8 else b""
        if len(head) < 8 or len(data) < int.from_bytes(head, "little"):
            self.end()
            raise ScanFault(
                f"a worker process ended without its result (exit status {self.status})"
            )
        ok, out = pickle.loads(data)
        if not ok:
            raise out  # type: ignore[misc]
        return out  # type: ignore[no-any-return]

    def end(self) -> None:
        """Close the pipe and wait for the worker to end, ending it first if it is still at
        work (the scan failed in this process)."""
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None
        if self.status is not None:
            return
        pid, wait = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            os.kill(self.pid, signal.SIGTERM)
            pid, wait = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(wait)


def _work(
    fd: int,
    claims: Claims,
    run: int,
    parts: list[Part],
    detection: Detection | None,
    limits: Limits | None,
) -> None:
    """In a forked worker: read ``run`` and what it takes over, and write the results, or the
    error that stopped it, to the pipe ``fd``."""
    _default_sigterm()
    try:
        out: tuple[bool, object] = (True, read_runs(claims, run, parts, None, detection, limits))
    except Exception as exc:
        out = (False, exc)
    try:
        data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # the error itself did not pickle: its text will do
        data = pickle.dumps((False, ScanFault(f"{type(exc).__name__}: {exc}")))
    with open(fd, "wb") as pipe:
        pipe.write(len(data).to_bytes(8, "little"))
        pipe.write(data)


def scan_parts(
    groups: list[list[Part]],
    progress: Callable[[int], None] | None = None,
    detection: Detection | None = None,
    limits: Limits | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> list[PartResult]:
    """Run each group in its own process (the first in this one, reporting ``progress``: the
    bytes of all groups read so far), results in capture order.  The parts a process has not
    begun when another is done may be read by that one (``detector.claims``): there may be
    more results than groups.  ``meanwhile`` runs in this process once it has nothing more to
    read, while the workers may still be reading."""
    if len(groups) == 1:
        results = [result_of(*run_parts(groups[0], progress, detection, limits))]
        if meanwhile is not None:
            meanwhile()
        return results
    parts = [p for g in groups for p in g]
    firsts = list(itertools.accumulate((len(g) for g in groups), initial=0))
    joins = [False] + [a.path == b.path and a.end == b.start for a, b in itertools.pairwise(parts)]
    claims = Claims([_size(p) for p in parts], list(itertools.pairwise(firsts)), joins)
    _build_shared()
    # One forked process and one pipe per group rather than a Pool or multiprocessing's
    # processes: no task to pickle, no handler threads in this process, nothing more to load
    # before the workers start (multiprocessing took milliseconds that every process waited
    # for), and a worker that dies fails the scan instead of leaving it waiting for a result.
    workers: list[_Worker] = []
    try:
        for run in range(1, len(groups)):
            workers.append(_Worker(claims, run, parts, detection, limits))
        results = read_runs(claims, 0, parts, progress, detection, limits)
        if meanwhile is not None:
            meanwhile()
        for w in workers:
            results.extend(w.result())
        return [r for _, r in sorted(results, key=lambda x: x[0])]
    finally:
        for w in workers:
            w.end()
        claims.close()


def _build_shared() -> None:
    """Build what every engine builds on first use and never changes (the prefilter routes of
    UDP and TCP) before the workers are forked: they inherit it instead of each building its
    own, 20 ms of CPU apiece."""
    for transport in ("udp", "tcp"):
        route_for(registry.decoders_for(transport))


def _default_sigterm() -> None:
    """A forked worker inherits its parent's signal handlers: where the embedding program
    catches SIGTERM (watch does, in-process), terminate could not end the worker."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass(repr=False, eq=False)
class Folded:
    """The results of every part of a scan, folded into one."""

    streams: list[StreamEvidence]
    stats: EngineStats
    hosts: int
    total_flows: int
    peak_flows: int


def fold(results: list[PartResult]) -> Folded:
    """One view of several parts, as if one engine had read them in order."""
    if len(results) == 1:
        r = results[0]
        return Folded(r.streams, r.stats, r.hosts_before + len(r.hosts), r.total_flows,
                      r.peak_flows)  # fmt: skip
    hosts = distinct(np.concatenate([r.hosts for r in results]))
    return Folded(
        streams=_fold_streams(results),
        stats=_fold_stats([r.stats for r in results]),
        hosts=len(hosts) + sum(r.hosts_before for r in results),
        total_flows=sum(r.total_flows for r in results),
        peak_flows=max(r.peak_flows for r in results),
    )


def _fold_streams(results: list[PartResult]) -> list[StreamEvidence]:
    """Streams of all parts, each once: a stream found in several parts absorbs its later
    parts' evidence, and takes its flow's packets from parts that did not classify it."""
    streams: dict[int, StreamEvidence] = {}
    for i, r in enumerate(results):
        seen_here = {s.key for s in r.streams}
        for s in r.streams:
            if s.key in streams:
                streams[s.key].absorb(s)
            else:
                streams[s.key] = s
        # Streams known from earlier parts that this part's engine did not classify: take
        # their packets from this part's flow table.
        earlier = [s for k, s in streams.items() if k not in seen_here and i > 0]
        if earlier and len(r.flow_keys):
            _add_flow_counters(earlier, r)
    return sorted(streams.values(), key=lambda s: (s.first_seen, s.key))


# Counters that add up across parts.
_SUMMED = ("packets", "bytes", "ip_packets", "non_ip_packets", "unknown_link_packets",
           "fragments_reassembled", "candidates", "decoded")  # fmt: skip


def _fold_stats(parts: list[EngineStats]) -> EngineStats:
    st = EngineStats()
    for o in parts:
        for name in _SUMMED:
            setattr(st, name, getattr(st, name) + getattr(o, name))
        _add_counts(st.decoder_errors, o.decoder_errors)
        _add_counts(st.shed, o.shed)
        if o.first_ts is not None:
            st.first_ts = o.first_ts if st.first_ts is None else min(st.first_ts, o.first_ts)
        if o.last_ts is not None:
            st.last_ts = o.last_ts if st.last_ts is None else max(st.last_ts, o.last_ts)
        for sec, (p, b) in o.timeline.items():
            cell = st.timeline.setdefault(sec, [0, 0])
            cell[0] += p
            cell[1] += b
    return st


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _add_flow_counters(streams: list[StreamEvidence], r: PartResult) -> None:
    order = np.argsort(r.flow_keys)
    keys = r.flow_keys[order]
    want = np.array([s.flow_key for s in streams], dtype=np.uint64)
    pos = np.searchsorted(keys, want)
    for s, p, k in zip(streams, pos.tolist(), want.tolist(), strict=True):
        if p >= len(keys) or int(keys[p]) != k:
            continue
        fid = int(order[p])
        c = r.flow_counts[fid]
        s.packets += int(c[s.direction])
        s.bytes += int(c[2 + s.direction])
        s.return_packets += int(c[1 - s.direction])
        s.return_bytes += int(c[3 - s.direction])
        s.last_seen = max(s.last_seen, float(r.flow_last[fid]))
