"""Which pieces of a scan each of its processes reads, shared out as they go.

The inputs are cut into pieces, in capture order.  Each engine reads a run of contiguous pieces
from its first; it claims a piece as it begins it.  A process whose own run is read takes over
the tail of another run that is not begun yet, as a new run read by a new engine (a run that
keeps its engine sees its packets as one engine would: the pieces are contiguous).  So a
process slowed by other work on its core hands part of its share to the others instead of
keeping the whole scan waiting for it.

Each run also tells, once a piece, how many packets of each stream its engine has decoded, so
that every engine samples a stream on the count of the whole scan (``Engine.decoded_elsewhere``)
instead of decoding it in full from its first packets in every run.

The runs live in a file that every process of the scan maps (created before they are forked);
a claim is made under a lock of that file, a few microseconds a piece.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import time
from collections.abc import Iterator
from itertools import accumulate

# What a new engine costs, as the bytes of input one process reads in that time: its result is
# folded, and the streams it finds are sampled on the packets the other engines decoded (about
# 20 ms on the bench capture, 16 MiB of it; decoding them in full from their first packets, as
# an engine told nothing would, it cost 100 ms).  A tail is taken over only where that pays...
ENGINE_COST_BYTES = 16 << 20
# ...by ending the scan this much sooner at least (the times are estimates).
MIN_GAIN_SECONDS = 0.01

# Columns of a run: its first piece, the next piece to begin, the piece it ends before, the
# bytes read of the piece before the next, when its first piece was begun (monotonic ns), how
# many streams it has told of (``tell``).
FIRST, NEXT, END, READ, BEGAN, TOLD = 0, 1, 2, 3, 4, 5
WIDTH = 6
# Streams a run tells of, the most decoded first: the other engines sample each of these as one
# engine would that had decoded every packet of it decoded so far (``Engine.decoded_elsewhere``).
TOLD_STREAMS = 256


class Claims:
    """The runs of pieces of one scan (``sizes``: each piece's bytes), shared between the
    processes forked after it is made."""

    def __init__(
        self, sizes: list[int], runs: list[tuple[int, int]], joins: list[bool] | None = None
    ) -> None:
        self.ends = [0, *accumulate(sizes)]  # bytes before each piece
        # Whether each piece goes on from the one before in the same file (a reader may go on
        # into it without a new start, ``take(joined=True)``).
        self.joins = joins or [False] * len(sizes)
        self.capacity = len(runs) + len(sizes)  # a run taken over has one piece at least
        self.streams_at = 1 + WIDTH * self.capacity  # then (key, decoded) pairs, per run
        size = 8 * (self.streams_at + self.capacity * 2 * TOLD_STREAMS)
        self.fd = _shared_file(size)
        # Without a file to lock, each process keeps to its own runs: nothing is taken over
        # and nothing told (the runs of other processes are never written).
        self.shared = self.fd is not None
        self.map = mmap.mmap(-1 if self.fd is None else self.fd, size)
        # [runs, (first, next, end, ...) per run, (key, decoded) * TOLD_STREAMS per run]
        self.table = memoryview(self.map).cast("q")
        for r, (a, b) in enumerate(runs):
            self._set(r, a, b)
        self.table[0] = len(runs)

    def close(self) -> None:
        self.table.release()
        self.map.close()
        if self.fd is not None:
            os.close(self.fd)

    @property
    def runs(self) -> int:
        return self.table[0]

    def _at(self, run: int, column: int) -> int:
        return self.table[1 + WIDTH * run + column]

    def _put(self, run: int, column: int, value: int) -> None:
        self.table[1 + WIDTH * run + column] = value

    def _set(self, run: int, first: int, end: int) -> None:
        for column, value in ((FIRST, first), (NEXT, first), (END, end), (READ, 0), (BEGAN, 0)):
            self._put(run, column, value)
        self._put(run, TOLD, 0)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A POSIX lock is held by a process, so it keeps forked processes out (it would not
        # keep out threads of one).
        if self.fd is None:
            yield
            return
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def take(self, run: int, joined: bool = False) -> int | None:
        """The next piece of ``run``, now begun; None when none is left to it (or, ``joined``,
        when it does not go on from the one before in the same file: the reader of the one
        before reads on into it)."""
        with self._locked():
            nxt = self._at(run, NEXT)
            if nxt >= self._at(run, END) or (joined and not self.joins[nxt]):
                return None
            if nxt == self._at(run, FIRST):
                self._put(run, BEGAN, time.monotonic_ns())
            self._put(run, NEXT, nxt + 1)
            self._put(run, READ, 0)
            return nxt

    def read(self, run: int, done: int) -> None:
        """``done`` bytes of the piece ``run`` is reading are read (told without the lock: a
        word written whole, only ever an estimate to the others)."""
        self._put(run, READ, done)

    def take_over(self, mine: int) -> int | None:
        """A new run for the process that has read run ``mine``: the tail of another run that
        is not begun yet, where a new engine that reads it ends the scan soonest; None where
        none ends it sooner."""
        if not self.shared:
            return None
        with self._locked():
            now = time.monotonic_ns()
            rate = self._rate(mine, now)
            best: tuple[float, int, int] | None = None  # (seconds sooner, run, cut)
            for r in range(self.runs):
                if r == mine or self._at(r, NEXT) >= self._at(r, END):
                    continue
                cut, gain = self._best_cut(r, self._rate(r, now) or rate, rate)
                if gain >= MIN_GAIN_SECONDS and (best is None or gain > best[0]):
                    best = (gain, r, cut)
            if best is None or self.runs >= self.capacity:
                return None
            _, victim, cut = best
            new = self.runs
            self._set(new, cut, self._at(victim, END))
            self._put(victim, END, cut)
            self.table[0] = new + 1
            return new

    def _rate(self, run: int, now: int) -> float:
        """Bytes a second ``run`` has been read at (0 before it has read any)."""
        began, nxt = self._at(run, BEGAN), self._at(run, NEXT)
        if not began or nxt == self._at(run, FIRST) or now <= began:
            return 0.0
        e = self.ends
        done = e[nxt - 1] - e[self._at(run, FIRST)] + self._at(run, READ)
        return done * 1e9 / (now - began)

    def _best_cut(self, run: int, theirs: float, mine: float) -> tuple[int, float]:
        """Where to cut the unbegun pieces of ``run`` (read at ``theirs`` bytes a second), for
        a new engine reading at ``mine``, and how many seconds sooner the scan then ends.  The
        run's owner reads the rest of its current piece first; the new engine pays
        ENGINE_COST_BYTES first."""
        if theirs <= 0 or mine <= 0:
            return 0, 0.0
        e = self.ends
        nxt, end = self._at(run, NEXT), self._at(run, END)
        current = max(0, e[nxt] - e[nxt - 1] - self._at(run, READ)) if nxt > 0 else 0
        alone = (current + e[end] - e[nxt]) / theirs
        best_cut, best_gain = nxt, 0.0
        for cut in range(nxt, end):
            kept = (current + e[cut] - e[nxt]) / theirs
            taken = (ENGINE_COST_BYTES + e[end] - e[cut]) / mine
            gain = alone - max(kept, taken)
            if gain > best_gain:
                best_cut, best_gain = cut, gain
        return best_cut, best_gain

    def tell(self, run: int, streams: list[tuple[int, int]]) -> None:
        """The streams ``run``'s engine has found and the packets of each it has decoded (up to
        TOLD_STREAMS), for the other engines of the scan."""
        if not self.shared:
            return
        at = self.streams_at + run * 2 * TOLD_STREAMS
        told = streams[:TOLD_STREAMS]
        with self._locked():
            for i, (key, decoded) in enumerate(told):
                # Keys are unsigned 64-bit: stored as the signed word of the same bits.
                self.table[at + 2 * i] = key - (1 << 64) if key >= 1 << 63 else key
                self.table[at + 2 * i + 1] = decoded
            self._put(run, TOLD, len(told))

    def told_elsewhere(self, run: int) -> dict[int, int]:
        """Packets of each stream decoded by the engines of every run but ``run``, as they last
        told (``tell``)."""
        counts: dict[int, int] = {}
        t = self.table
        with self._locked():
            for r in range(self.runs):
                if r == run:
                    continue
                at = self.streams_at + r * 2 * TOLD_STREAMS
                for i in range(self._at(r, TOLD)):
                    key = t[at + 2 * i] & ((1 << 64) - 1)
                    counts[key] = counts.get(key, 0) + t[at + 2 * i + 1]
        return counts

    def begun(self) -> int:
        """Bytes of the pieces begun so far, by every run."""
        e = self.ends
        return sum(e[self._at(r, NEXT)] - e[self._at(r, FIRST)] for r in range(self.runs))


def _shared_file(size: int) -> int | None:
    """A file of ``size`` zero bytes, in memory where the system offers it, that no other
    program sees; None where none can be made (a sandbox without memfd and temporary files)."""
    try:
        fd = os.memfd_create("mirrorwatch-claims", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        import tempfile

        try:
            fd, path = tempfile.mkstemp(prefix="mirrorwatch-claims-")
            os.unlink(path)
        except OSError:
            return None
    try:
        os.ftruncate(fd, size)
        fcntl.lockf(fd, fcntl.LOCK_UN)  # locks work on it
    except OSError:
        os.close(fd)
        return None
    return fd
