"""Fingerprints of IP packets on what a router does not change.

A copy of a packet (inside a mirror, or re-sent whole like iptables TEE) keeps the addresses,
the protocol, the IPv4 identification, the L4 header and the payload; routers change the TTL,
the IP checksum and the L2 header.  The fingerprint hashes the first group only, so a copy and
its original hash alike.  The vectorised version (native packets, a whole batch at once) and the
per-packet version (carried copies) must agree bit for bit; the tests hold them to it.

Sampling on a rank of the fingerprinted fields keeps the same packets on both sides, so memory
stays bounded without losing matches, and only the sampled packets are hashed.  On a quiet link
every packet is kept; as traffic grows the sample narrows to one packet in 2, 4, 8, 16.

The sample of a batch is taken by a compiled loop over its rows (``_copies.c``) where it is
built, otherwise (or with ``MIRRORWATCH_PURE_PYTHON=1``) by numpy over its columns; both give
the same rows, ranks and fingerprints.
"""

from __future__ import annotations

import struct
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from detector.compiled import PURE_PYTHON, built
from detector.decode.frames import InnerPacket
from detector.decode.headers import LINK_ETHERNET, gather
from detector.flows.table import mix64_into, word_pairs

if TYPE_CHECKING:
    from detector.capture.reader import PacketBatch
    from detector.decode.headers import Headers

# Bytes from the start of the L4 header that enter the fingerprint (ports, sequence numbers or
# lengths, and the start of the payload).
L4_BYTES = 24
RANK_BITS = 4
_MASK = (1 << 64) - 1
_M1 = 0x9E3779B97F4A7C15
_M2 = 0xBF58476D1CE4E5B9
_M3 = 0x94D049BB133111EB


def _mix(x: int) -> int:
    """The per-packet twin of detector.flows.table.mix64 (same constants, same steps)."""
    x = ((x ^ (x >> 30)) * _M2) & _MASK
    x = ((x ^ (x >> 27)) * _M3) & _MASK
    return x ^ (x >> 31)


# Per number of bytes kept (0-8): the mask of a big-endian word that keeps its first bytes.
_KEEP_BYTES = np.array([((1 << (8 * k)) - 1) << (64 - 8 * k) for k in range(9)], dtype=np.uint64)


def _l4_words_np(l4: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    return np.ascontiguousarray(l4[:, :L4_BYTES]).view(">u8").astype(np.uint64)


def _word_view(l4h: npt.NDArray[np.uint8]) -> np.ndarray:
    """The fingerprinted L4 bytes of every row as big-endian words, (n, L4_BYTES // 8): a view
    of the header window when its rows allow one, else a copy of those bytes."""
    if l4h.shape[1] % 8 == 0 and l4h.strides[1] == 1:
        return l4h.view(">u8")[:, : L4_BYTES // 8]
    return np.ascontiguousarray(l4h[:, :L4_BYTES]).view(">u8")


def rank_np(
    src: npt.NDArray[np.uint32],
    dst: npt.NDArray[np.uint32],
    ipid: npt.NDArray[np.int64],
    l4: npt.NDArray[np.uint8] | npt.NDArray[np.uint64],
) -> npt.NDArray[np.uint64]:
    """A cheap 4-bit rank of fingerprinted fields that every fingerprinted packet has (the
    first 8 L4 bytes, or those bytes read as one big-endian word, are always there): sampling
    keeps ranks below a bound, so copy and original are picked alike and only the picked ones
    are hashed."""
    u = np.uint64
    first = l4 if l4.dtype == u else np.ascontiguousarray(l4[:, :8]).view(">u8").astype(u)[:, 0]
    x = first ^ src[:, 3] ^ (dst[:, 3].astype(u) << u(32)) ^ ipid.astype(u)
    with np.errstate(over="ignore"):
        return (x * u(_M1)) >> u(64 - RANK_BITS)


def fingerprint_np(
    src: npt.NDArray[np.uint32],
    dst: npt.NDArray[np.uint32],
    proto: npt.NDArray[np.int64],
    ipid: npt.NDArray[np.int64],
    l4: npt.NDArray[np.uint8] | npt.NDArray[np.uint64],
) -> npt.NDArray[np.uint64]:
    """Fingerprints of many packets: address words (n, 4), protocol, IPv4 id, and (n, 24) bytes
    from the L4 header on (zero past the end of the packet), or those bytes already read as
    (n, 3) big-endian words."""
    words = l4 if l4.dtype == np.uint64 else _l4_words_np(l4)
    s01, s23 = word_pairs(src)
    d01, d23 = word_pairs(dst)
    # mix64's steps in place (one array through every round; uint64 arrays wrap silently).
    h = s01
    mix64_into(h)
    for x in (s23, d01, d23, (proto.astype(np.uint64) << _U16) | ipid.astype(np.uint64)):
        h ^= x
        mix64_into(h)
    for i in range(L4_BYTES // 8):
        h ^= words[:, i] * _UM1
        mix64_into(h)
    return h


_U16 = np.uint64(16)
_UM1 = np.uint64(_M1)


# The compiled loops of copy matching (None where not built), and whether they are used: where
# built, unless MIRRORWATCH_PURE_PYTHON=1.
COPIES: ModuleType | None = built("detector.flows._copies")
use_compiled = COPIES is not None and not PURE_PYTHON

# A batch's sampled rows, their ranks and fingerprints, and their destination and source MAC
# addresses as numbers (0 off Ethernet).
Sample = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]


def sample_natives_compiled(
    batch: PacketBatch, h: Headers, rows: npt.NDArray[np.int64], keep_below: int
) -> Sample:
    """:func:`sample_natives_numpy`'s sample, from one compiled pass over the rows (the link
    headers of the sampled ones read after it, fetched into the cache meanwhile)."""
    assert COPIES is not None, "the compiled copy loops are not built"
    out = np.empty((5, len(rows)), np.uint64)
    column = np.ascontiguousarray
    m = COPIES.sample(
        column(rows, dtype=np.int64),
        column(h.fragment, dtype=np.bool_),
        *(column(c, dtype=np.int64) for c in (h.l4, h.l3, h.iplen, batch.caplen, h.ipid, h.proto)),
        column(h.src, dtype=np.uint32),
        column(h.dst, dtype=np.uint32),
        column(h.l4h, dtype=np.uint8),
        column(batch.data, dtype=np.uint8),
        column(batch.offsets, dtype=np.int64),
        column(batch.linktype, dtype=np.int32),
        out,
        h.l4h.shape[1],
        keep_below,
        LINK_ETHERNET,
    )
    signed = out.view(np.int64)
    return signed[0, :m], out[1, :m], out[2, :m], signed[3, :m], signed[4, :m]


def sample_natives_numpy(
    batch: PacketBatch, h: Headers, rows: npt.NDArray[np.int64], keep_below: int
) -> Sample:
    """Of a batch's IP ``rows``, those in the sample (whole enough to fingerprint, rank below
    ``keep_below``), with their ranks, fingerprints and MAC addresses: what ``rank_np``,
    ``fingerprint_np`` and ``l2_words`` give for them, with the L4 bytes past each packet's end
    read as zero.  The rank is worked out over the batch's columns as they are (no gathered
    copy of every row); only the sampled rows are gathered and hashed."""
    words = _word_view(h.l4h)
    rank = rank_np(h.src, h.dst, h.ipid, words[:, 0].astype(np.uint64))
    l4len = np.minimum(batch.caplen, h.l3 + h.iplen) - h.l4
    keep = (rank < np.uint64(keep_below)) & (l4len >= 8) & (h.l4 >= 0) & ~h.fragment
    r = rows[keep[rows]]
    # Bytes past the packet's end (of the next record) are blanked before hashing.
    mine = words[r].astype(np.uint64)
    lengths = np.clip(l4len[r, None] - 8 * np.arange(L4_BYTES // 8), 0, 8)
    mine &= _KEEP_BYTES[lengths]
    fps = fingerprint_np(h.src[r], h.dst[r], h.proto[r], h.ipid[r], mine)
    return r, rank[r], fps, *l2_words(batch, r)


# The form the engine uses.
sample_natives = sample_natives_compiled if use_compiled else sample_natives_numpy


def l2_words(
    batch: PacketBatch, rows: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The destination and source MAC addresses of the batch ``rows`` as big-endian numbers (0
    where the link is not Ethernet, bytes past the end of the data read as zero), for telling
    a copy's L2 destination from its original's."""
    if len(rows) and int(batch.offsets[rows].min()) < 0:
        raise IndexError("a row starts before the batch's data")
    # The two MAC addresses, each widened to a big-endian 64-bit word.
    macs = np.zeros((len(rows), 2, 8), np.uint8)
    macs[:, :, 2:] = gather(batch.data, batch.offsets[rows], 12).reshape(-1, 2, 6)
    ethernet = (batch.linktype[rows] == LINK_ETHERNET)[:, None]
    l2 = np.where(ethernet, macs.view(">u8")[..., 0], 0)
    return l2[:, 0].astype(np.int64), l2[:, 1].astype(np.int64)


def _words(addr: bytes) -> tuple[int, int, int, int]:
    if len(addr) == 4:
        return (0, 0, 0, struct.unpack("!I", addr)[0])
    w = struct.unpack("!4I", addr)
    return (w[0], w[1], w[2], w[3])


def sampled_fingerprint(data: bytes, inner: InnerPacket, keep_below: int) -> int | None:
    """Fingerprint of one parsed IP packet (``inner`` from detector.decode.frames) when its rank
    is below ``keep_below`` (in the sample), else None; None also when too little of it is there
    to fingerprint."""
    if inner.ip_offset < 0 or inner.l4_offset < 0 or inner.fragment:
        return None
    off = inner.ip_offset
    if inner.ip_version == 4:
        src, dst = data[off + 12 : off + 16], data[off + 16 : off + 20]
    else:
        src, dst = data[off + 8 : off + 24], data[off + 24 : off + 40]
    end = min(len(data), off + inner.ip_len)
    l4 = bytes(data[inner.l4_offset : min(end, inner.l4_offset + L4_BYTES)])
    if len(l4) < 8:
        return None
    ipid = inner.ip_id if inner.ip_version == 4 else 0
    # The rank from the first L4 word and the low address words first: most packets are not
    # in the sample, and need no more.
    low = int.from_bytes(src[-4:], "big"), int.from_bytes(dst[-4:], "big")
    x = int.from_bytes(l4[:8], "big") ^ low[0] ^ (low[1] << 32) ^ ipid
    if ((x * _M1) & _MASK) >> (64 - RANK_BITS) >= keep_below:
        return None
    words = [w for (w,) in struct.iter_unpack("!Q", l4.ljust(L4_BYTES, b"\0"))]
    s, d = _words(bytes(src)), _words(bytes(dst))
    h = _mix((s[0] << 32) | s[1])
    h = _mix(h ^ ((s[2] << 32) | s[3]))
    h = _mix(h ^ ((d[0] << 32) | d[1]))
    h = _mix(h ^ ((d[2] << 32) | d[3]))
    h = _mix(h ^ ((inner.proto << 16) | ipid))
    for w in words:
        h = _mix(h ^ ((w * _M1) & _MASK))
    return h
