"""The record chain walks: compiled (``_walk.c``) where the extension was built, Python otherwise.

Each record's offset depends on the previous record's length, so this is the one per-packet loop
of the reader.  Both forms take the same arguments, fill the same preallocated columns and stop at
the same record (damaged, oversized, zero-length, partial, or the batch full); the reader decides
what to do there.  ``MIRRORWATCH_PURE_PYTHON=1`` in the environment makes the reader use the
Python forms even where the compiled ones are built.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from detector.compiled import PURE_PYTHON, built

Column = npt.NDArray[np.int64]
Seconds = npt.NDArray[np.float64]


# The compiled walks, or None; the reader looks here each time it opens an input.
compiled: ModuleType | None = None if PURE_PYTHON else built("detector.capture._walk")

_U32 = {False: struct.Struct("<I").unpack_from, True: struct.Struct(">I").unpack_from}
_HEAD = {False: struct.Struct("<II").unpack_from, True: struct.Struct(">II").unpack_from}
_RECORD = {
    big: np.dtype([(n, (">" if big else "<") + "u4") for n in ("sec", "frac", "incl", "orig")])
    for big in (False, True)
}


def pcap_chain(
    buf: bytearray,
    pos: int,
    end: int,
    rec_hdr: int,
    limit: int,
    big: bool,
    unit: float,
    n: int,
    stop_n: int,
    offsets: Column,
    caplen: Column,
    wirelen: Column,
    ts: npt.NDArray[np.float64],
) -> tuple[int, int]:
    """Follow whole, sound pcap records of ``buf[pos:end]`` while fewer than ``stop_n`` rows are
    filled; record k goes to row ``n + k`` of the columns (offset of its data, captured length,
    original length at least the captured one, seconds).  Where the walk stopped, rows filled."""
    u32 = _U32[big]
    starts: list[int] = []
    append = starts.append
    stop, room = end - rec_hdr, stop_n - n
    while pos <= stop and len(starts) < room:
        incl = u32(buf, pos + 8)[0]
        nxt = pos + rec_hdr + incl
        if nxt > end or incl > limit or not incl:
            break
        append(pos)
        pos = nxt
    if not starts:
        return pos, n
    # The record headers, gathered at once.
    data = np.frombuffer(buf, dtype=np.uint8)
    at = np.asarray(starts, dtype=np.int64)
    window = np.lib.stride_tricks.as_strided(data, shape=(len(data) - 15, 16), strides=(1, 1))
    fields = window[at].copy().view(_RECORD[big]).reshape(-1)
    rows = slice(n, n + len(starts))
    offsets[rows] = at + rec_hdr
    caplen[rows] = fields["incl"]
    wirelen[rows] = np.maximum(fields["orig"], fields["incl"])
    ts[rows] = fields["sec"].astype(np.float64) + fields["frac"].astype(np.float64) * unit
    return pos, rows.stop


def pcapng_chain(
    buf: bytearray,
    pos: int,
    end: int,
    big: bool,
    max_block: int,
    n: int,
    stop_n: int,
    offsets: Column,
) -> tuple[int, int]:
    """Follow whole enhanced packet blocks (of 32 to ``max_block`` bytes, a multiple of 4) of
    ``buf[pos:end]`` while fewer than ``stop_n`` rows are filled; the start of block k goes to
    row ``n + k`` of ``offsets``.  Where the walk stopped, rows filled."""
    head = _HEAD[big]
    starts: list[int] = []
    append = starts.append
    last, room = end - 12, stop_n - n
    while pos <= last and len(starts) < room:
        btype, blen = head(buf, pos)
        nxt = pos + blen
        if btype != 6 or blen < 32 or blen > max_block or blen & 3 or nxt > end:
            break
        append(pos)
        pos = nxt
    offsets[n : n + len(starts)] = starts
    return pos, n + len(starts)


def plausible_length(
    buf: bytes | bytearray,
    p: int,
    end: int,
    unpack: Callable[..., tuple[int, ...]],
    limit: int,
    rec_hdr: int,
    max_orig: int,
) -> int | None:
    """Captured length of the pcap record whose header starts at ``p``, if the header is
    plausible (all before ``end``, lengths within bounds, captured not above original)."""
    if p + rec_hdr > end:
        return None
    incl = unpack(buf, p + 8)[0]
    orig = unpack(buf, p + 12)[0]
    return incl if 0 < incl <= limit and incl <= orig <= max_orig else None


def pcap_resync(
    buf: bytearray, start: int, end: int, rec_hdr: int, limit: int, big: bool, max_orig: int
) -> int:
    """The first offset from ``start`` on where a plausible record header is followed by
    another (or by ``end``), -1 if none starts before ``end - 2 * rec_hdr``: where a broken
    chain picks up."""
    u32 = _U32[big]
    for p in range(start, max(start, end - 2 * rec_hdr)):
        incl = plausible_length(buf, p, end, u32, limit, rec_hdr, max_orig)
        if incl is not None:
            nxt = p + rec_hdr + incl
            after = plausible_length(buf, nxt, end, u32, limit, rec_hdr, max_orig)
            if nxt == end or after is not None:
                return p
    return -1


class Walks(NamedTuple):
    pcap_chain: Callable[..., tuple[int, int]]
    pcapng_chain: Callable[..., tuple[int, int]]
    pcap_resync: Callable[..., int]


def chains() -> Walks:
    """The walks in use: the compiled ones where built."""
    if compiled is not None:
        return Walks(compiled.pcap_chain, compiled.pcapng_chain, compiled.pcap_resync)
    return Walks(pcap_chain, pcapng_chain, pcap_resync)


def in_use() -> str:
    """Which walks the reader uses, in words."""
    return "compiled" if compiled is not None else "Python"
