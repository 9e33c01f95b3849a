"""Outer-header decoding of a whole batch: link layer → IP → L4 → payload window, as columns.

The walk itself is :func:`detector.decode.walk.walk_block` (compiled, one loop over the block,
shared with the per-packet code); this module gives its results the column names the engine
reads.  Rows flagged ``slow`` are fragments, which :mod:`detector.decode.slowpath` reassembles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.capture.reader import PacketBatch
from detector.decode.walk import (
    KNOWN_LINKS,
    L4_WINDOW,
    LINK_ETHERNET,
    LINK_SLL,
    LINK_SLL2,
    walk_block,
)
from detector.protocols.base import PREFILTER_BYTES

__all__ = ["KNOWN_LINKS", "L4_WINDOW", "LINK_ETHERNET", "LINK_SLL", "LINK_SLL2"]


def window(data: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """A (len, width) strided view: row i is data[i : i + width].  Gathering rows is a memcpy."""
    return np.lib.stride_tricks.as_strided(
        data, shape=(len(data) - width + 1, width), strides=(1, 1)
    )


def gather(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], width: int) -> np.ndarray:
    idx = np.minimum(starts, len(data) - width)
    return window(data, width)[idx]


@dataclass(slots=True)
class Headers:
    """Decoded outer headers of one batch, one row per packet."""

    n: int
    l3: npt.NDArray[np.int64]  # offset of the IP header within the packet, -1 if none
    ipver: npt.NDArray[np.int8]  # 4, 6, or 0 for non-IP / undecodable
    slow: npt.NDArray[np.bool_]  # a fragment, for the per-packet reassembly
    unknown_link: npt.NDArray[np.bool_]
    proto: npt.NDArray[np.int64]
    ttl: npt.NDArray[np.int64]
    iplen: npt.NDArray[np.int64]  # IP total length as declared
    fragment: npt.NDArray[np.bool_]
    ipid: npt.NDArray[np.int64]
    src: npt.NDArray[np.uint32]  # (n, 4) address words; IPv4 in word 3, words 0-2 zero
    dst: npt.NDArray[np.uint32]
    l4: npt.NDArray[np.int64]
    sport: npt.NDArray[np.int64]
    dport: npt.NDArray[np.int64]
    tcpflags: npt.NDArray[np.int64]
    tcpseq: npt.NDArray[np.int64]
    udpsum: npt.NDArray[np.int64]
    pay: npt.NDArray[np.int64]  # offset of the L4 payload within the packet
    paylen: npt.NDArray[np.int64]  # captured payload bytes (bounded by the IP length)
    l4h: np.ndarray  # (n, L4_WINDOW) bytes from the L4 header on, zero past the packet's end


def decode_headers(batch: PacketBatch) -> Headers:
    n = len(batch)
    ints = np.empty((13, n), dtype=np.int64)
    flags = np.empty((2, n), dtype=np.bool_)
    ipver = np.empty(n, dtype=np.int8)
    src = np.empty((n, 4), dtype=np.uint32)
    dst = np.empty((n, 4), dtype=np.uint32)
    l4h = np.empty((n, L4_WINDOW), dtype=np.uint8)
    data = batch.data.view()
    data.flags.writeable = False  # the type walk_packet compiles for too
    walk_block(data, batch.offsets, batch.caplen, batch.linktype, ints, src, dst, flags, ipver, l4h)
    l3, proto, ttl, iplen, ipid, l4, sport, dport, tcpflags, tcpseq, udpsum, pay, paylen = ints
    fragment = flags[0]
    return Headers(
        n=n, l3=l3, ipver=ipver, slow=fragment.copy(), unknown_link=flags[1], proto=proto,
        ttl=ttl, iplen=iplen, fragment=fragment, ipid=ipid, src=src, dst=dst, l4=l4,
        sport=sport, dport=dport, tcpflags=tcpflags, tcpseq=tcpseq, udpsum=udpsum, pay=pay,
        paylen=paylen, l4h=l4h,
    )  # fmt: skip


def payload_heads(
    batch: PacketBatch, h: Headers, rows: npt.NDArray[np.int64]
) -> tuple[np.ndarray, npt.NDArray[np.int64]]:
    """(len(rows), PREFILTER_BYTES) payload windows, zeroed past each payload's end."""
    head = gather(batch.data, batch.offsets[rows] + h.pay[rows], PREFILTER_BYTES)
    length = h.paylen[rows]
    short = np.nonzero(length < PREFILTER_BYTES)[0]
    if len(short):
        # Only payloads shorter than the window have bytes of the next record to blank out.
        part = head[short]
        part[np.arange(PREFILTER_BYTES)[None, :] >= length[short, None]] = 0
        head[short] = part
    return head, length
