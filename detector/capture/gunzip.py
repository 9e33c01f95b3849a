"""The inflated bytes of a gzip stream (RFC 1952), inflated a large piece at a time.

Python's ``gzip`` module inflates a few KiB per call where the data does not compress (a
capture's payloads seldom do), and every call takes the interpreter lock: inflating on a second
core while the engine works on the first then mostly waits for the lock.  Here each call hands
zlib up to PIECE bytes (it lets go of the lock for all of them).  A member's header is parsed
here and its data inflated raw, its CRC and length checked at its end: damage is raised only
after every byte inflated before it is handed over, as a reader that loses the least expects.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from typing import BinaryIO

# Compressed bytes given to zlib per call.
PIECE = 1 << 20
MAGIC = b"\x1f\x8b"
DEFLATE = 8
ENDED_EARLY = "Compressed file ended before the end-of-stream marker was reached"
# Header flags (RFC 1952 2.3.1).
FHCRC, FEXTRA, FNAME, FCOMMENT = 2, 4, 8, 16


class Gunzip:
    """Read-only: ``read1(n)`` gives up to ``n`` inflated bytes (b"" at the end).  Members
    follow each other; zero bytes after a member are padding."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.pending = b""  # compressed bytes read, not yet inflated
        self.inflater: zlib._Decompress | None = None  # the member being inflated
        self.crc = 0
        self.size = 0
        self.members = 0
        self.failure: BaseException | None = None  # raised on the next read
        self.ended = False

    def read1(self, n: int = PIECE) -> bytes:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            self.ended = True
            raise failure
        while not self.ended:
            if self.inflater is None and not self._begin_member():
                self.ended = True
                break
            assert self.inflater is not None
            data = self.pending or self.raw.read(PIECE)
            self.pending = b""
            if not data:
                raise EOFError(ENDED_EARLY)
            out = self.inflater.decompress(data, max(1, n))
            self.pending = self.inflater.unconsumed_tail
            self.crc = zlib.crc32(out, self.crc)
            self.size += len(out)
            if self.inflater.eof:
                self.pending = self.inflater.unused_data
                try:
                    self._end_member()
                except (OSError, EOFError) as exc:
                    if not out:
                        raise
                    self.failure = exc  # what came before it is handed over first
            if out:
                return out
        return b""

    def close(self) -> None:
        self.ended = True

    def _take(self, n: int) -> bytes:
        """The next ``n`` compressed bytes (fewer at the end of the input)."""
        while len(self.pending) < n:
            more = self.raw.read(max(PIECE, n - len(self.pending)))
            if not more:
                break
            self.pending += more
        taken, self.pending = self.pending[:n], self.pending[n:]
        return taken

    def _skip_past(self, stop: bytes) -> None:
        """Skip a zero-terminated header field."""
        while True:
            at = self.pending.find(stop)
            if at >= 0:
                self.pending = self.pending[at + 1 :]
                return
            more = self.raw.read(PIECE)
            if not more:
                raise EOFError(ENDED_EARLY)
            self.pending = more

    def _begin_member(self) -> bool:
        """Parse the next member's header; False at the end of the input."""
        # Zero bytes after a member are padding (as gzip reads them).
        while True:
            self.pending = self.pending.lstrip(b"\0") if self.members else self.pending
            if self.pending:
                break
            more = self.raw.read(PIECE)
            if not more:
                return False
            self.pending = more
        head = self._take(10)
        if len(head) < 10:
            raise EOFError(ENDED_EARLY)
        if head[:2] != MAGIC:
            raise gzip.BadGzipFile(f"Not a gzipped file ({head[:2]!r})")
        if head[2] != DEFLATE:
            raise gzip.BadGzipFile("Unknown compression method")
        flags = head[3]
        if flags & FEXTRA:
            (extra,) = struct.unpack("<H", self._take(2).ljust(2, b"\0"))
            if len(self._take(extra)) < extra:
                raise EOFError(ENDED_EARLY)
        if flags & FNAME:
            self._skip_past(b"\0")
        if flags & FCOMMENT:
            self._skip_past(b"\0")
        if flags & FHCRC:
            self._take(2)
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.crc = self.size = 0
        return True

    def _end_member(self) -> None:
        """Check the trailer of the member just inflated."""
        self.inflater = None
        self.members += 1
        trailer = self._take(8)
        if len(trailer) < 8:
            raise EOFError(ENDED_EARLY)
        crc, size = struct.unpack("<II", trailer)
        if crc != self.crc:
            raise gzip.BadGzipFile(f"CRC check failed {crc:#x} != {self.crc:#x}")
        if size != self.size & 0xFFFFFFFF:
            raise gzip.BadGzipFile("Incorrect length of data produced")
