"""Vectorised outer-header decoding of a whole batch: link layer → shims → IP → L4 → payload.

Every field is a numpy column over the batch.  The walk interprets the layouts declared in
:mod:`detector.decode.layers` (link headers, VLAN/PPPoE/MPLS shims, IPv6 extension headers) as
the scalar walk of :mod:`detector.decode.frames` does.  Two forms give the same columns bit for
bit: the compiled one (``_outer.c``, one pass over each row, the layouts handed to it as tables
built here from :mod:`detector.decode.layers`) where the extension was built, and the numpy one
otherwise (or with ``MIRRORWATCH_PURE_PYTHON=1``), stepping only the rows that still need a step,
so a batch of plain Ethernet/IP needs none.  Only IP fragments are flagged ``slow``: they go to
:mod:`detector.decode.slowpath` for reassembly.

Bytes a gather reads past the end of the batch's buffer are 0 in both forms; bytes past a
packet's end but within the buffer are those of the next record (``l4h`` is not zeroed).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.capture.reader import PacketBatch, WalkedColumns
from detector.compiled import PURE_PYTHON, built
from detector.decode.layers import (
    ETH_IPV4,
    EXT_AH,
    EXT_FIXED_8,
    IP_ETHERTYPES,
    IP_FAMILIES,
    IP_PROTO_GRE,
    IPV6_EXT_MIN,
    IPV6_EXT_RULES,
    IPV6_FRAGMENT,
    KNOWN_LINKS,
    LAYOUT_OF,
    LINK_ETHERNET,
    LINK_LAYOUTS,
    LINK_SLL,
    LINK_SLL2,
    MAX_IPV6_EXT,
    MAX_SHIM_STEPS,
    NIBBLE_TO_ETHERTYPE,
    PORT_PROTOCOLS,
    PPP_TO_ETHERTYPE,
    SHIMS,
    TCP_DATA_OFFSET_AT,
    TRANSPORT_HEADER_LENGTH,
    LinkLayout,
    Shim,
    ipv6_ext_length,
)
from detector.decode.lut import lut
from detector.protocols.base import PREFILTER_BYTES

__all__ = ["KNOWN_LINKS", "LINK_ETHERNET", "LINK_SLL", "LINK_SLL2"]

L4_WINDOW = 24
PROTO_TCP, PROTO_UDP = 6, 17
TCP_HEADER_MIN = 20  # taken when the data offset byte is not captured
# The layouts as lookup tables over a type or byte column.
IP_TYPE_LUT = lut(IP_ETHERTYPES, bits=16)
FAMILY_LUT = lut(IP_FAMILIES)
PORT_LUT = lut(PORT_PROTOCOLS)
PPP_LUT = np.zeros(1 << 16, dtype=np.int64)
PPP_LUT[list(PPP_TO_ETHERTYPE)] = list(PPP_TO_ETHERTYPE.values())
NIBBLE_LUT = np.zeros(16, dtype=np.int64)
NIBBLE_LUT[list(NIBBLE_TO_ETHERTYPE)] = list(NIBBLE_TO_ETHERTYPE.values())
# Shim number (index in SHIMS plus one) of each EtherType, 0 for none; per shim number its
# length and depth bound.
SHIM_NUMBER = np.zeros(1 << 16, dtype=np.uint8)
for _number, _shim in enumerate(SHIMS, 1):
    SHIM_NUMBER[list(_shim.ethertypes)] = _number
SHIM_LENGTH = np.array([0, *(s.length for s in SHIMS)], dtype=np.int64)
SHIM_DEPTH = np.array([0, *(s.max_depth for s in SHIMS)], dtype=np.int64)
EXT_RULE = np.zeros(256, dtype=np.int64)
EXT_RULE[list(IPV6_EXT_RULES)] = list(IPV6_EXT_RULES.values())
TRANSPORT_HEADER = np.zeros(256, dtype=np.int64)
TRANSPORT_HEADER[list(TRANSPORT_HEADER_LENGTH)] = list(TRANSPORT_HEADER_LENGTH.values())


def window(data: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """A (len, width) strided view: row i is data[i : i + width].  Gathering rows is a memcpy."""
    return np.lib.stride_tricks.as_strided(
        data, shape=(len(data) - width + 1, width), strides=(1, 1)
    )


def gather(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], width: int) -> np.ndarray:
    """Row i is data[starts[i] : starts[i] + width] (starts >= 0), 0 past the end of data."""
    last = len(data) - width
    if last < 0:
        data, last = np.concatenate([data, np.zeros(-last, dtype=np.uint8)]), 0
    rows = window(data, width)[np.minimum(starts, last)]
    late = np.flatnonzero(starts > last)
    if len(late):
        # Rows running off the end (no padding after the last record): the tail, then zeros.
        tail = np.zeros(2 * width, dtype=np.uint8)
        tail[:width] = data[last:]
        rows[late] = window(tail, width)[np.minimum(starts[late] - last, width)]
    return rows


def be16(m: np.ndarray, col: int) -> npt.NDArray[np.int64]:
    return (m[:, col].astype(np.int64) << 8) | m[:, col + 1]


def be32(m: np.ndarray, col: int) -> npt.NDArray[np.int64]:
    return (
        (m[:, col].astype(np.int64) << 24)
        | (m[:, col + 1].astype(np.int64) << 16)
        | (m[:, col + 2].astype(np.int64) << 8)
        | m[:, col + 3]
    )


@dataclass(repr=False, eq=False, slots=True)
class Headers:
    """Decoded outer headers of one batch, one row per packet."""

    n: int
    l3: npt.NDArray[np.int64]  # offset of the IP header within the packet, -1 if none
    ipver: npt.NDArray[np.int8]  # 4, 6, or 0 for non-IP / undecodable
    slow: npt.NDArray[np.bool_]  # needs the per-packet fallback
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
    l4h: np.ndarray  # (n, L4_WINDOW) bytes from the L4 header on (not zeroed past the end)

    def rows(self, a: int, b: int) -> Headers:
        """Rows a..b-1 (views)."""
        return Headers(n=b - a, **{f: getattr(self, f)[a:b] for f in _COLUMNS})


_COLUMNS = [f.name for f in fields(Headers) if f.name != "n"]


# How a layout names what follows, as the compiled walk numbers it.
_SPACE = {"ethertype": 0, "ppp": 1, "family": 2, "ip": 3, "mpls": 4}


def _tables(module: ModuleType) -> Any:
    """The layouts of :mod:`detector.decode.layers` as the compiled walk reads them, or None
    if they do not fit its tables (an extension header length that is not
    ``base + length byte * unit``): the numpy forms are used then."""
    extensions = []
    for nh, rule in IPV6_EXT_RULES.items():
        base = ipv6_ext_length(rule, 0)
        unit = ipv6_ext_length(rule, 1) - base
        if any(ipv6_ext_length(rule, b) != base + b * unit for b in range(256)):
            return None
        extensions.append((nh, base, unit))
    return module.tables(
        [
            (lt, int(lay.hdlc_prefix), lay.header, lay.type_at, _SPACE[lay.space])
            for lt, lay in LAYOUT_OF.items()
        ],
        [(s.length, s.next_at, _SPACE[s.space], s.max_depth) for s in SHIMS],
        SHIM_NUMBER.tobytes(),
        IP_TYPE_LUT.astype(np.uint8).tobytes(),
        PPP_LUT.astype(np.uint16).tobytes(),
        NIBBLE_LUT.astype(np.uint16).tobytes(),
        FAMILY_LUT.astype(np.uint8).tobytes(),
        PORT_LUT.astype(np.uint8).tobytes(),
        TRANSPORT_HEADER.tobytes(),
        extensions,
        (MAX_SHIM_STEPS, MAX_IPV6_EXT, IPV6_EXT_MIN, IPV6_FRAGMENT, ETH_IPV4, TCP_DATA_OFFSET_AT,
         TCP_HEADER_MIN, PROTO_TCP, PROTO_UDP, IP_PROTO_GRE),
    )  # fmt: skip


# The compiled forms and the tables of the layouts they read (None where not built).
OUTER: ModuleType | None = built("detector.decode._outer")
_TABLES = _tables(OUTER) if OUTER is not None else None
if _TABLES is None:
    OUTER = None
# Whether decode_headers, payload_heads and flows.table.row_keys use the compiled forms:
# where built, unless MIRRORWATCH_PURE_PYTHON=1.
use_compiled = OUTER is not None and not PURE_PYTHON


def in_use() -> str:
    """Which header decode is used, in words."""
    return "compiled" if use_compiled else "numpy"


def decode_headers_compiled(batch: PacketBatch) -> Headers:
    """:func:`decode_headers_numpy`'s columns, from one compiled pass over each row."""
    assert OUTER is not None, "the compiled header decode is not built"
    blocks = _blocks(len(batch))
    OUTER.decode(
        _TABLES,
        batch.data,
        np.ascontiguousarray(batch.offsets, dtype=np.int64),
        np.ascontiguousarray(batch.caplen, dtype=np.int64),
        np.ascontiguousarray(batch.linktype, dtype=np.int32),
        *blocks,
    )
    return _headers_of(len(batch), blocks)


# The blocks the compiled decode fills: int64 columns, byte columns, addresses, L4 windows.
_DecodeBlocks = tuple[
    npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.uint32], np.ndarray
]


def _blocks(rows: int) -> _DecodeBlocks:
    return (
        np.empty((13, rows), dtype=np.int64),
        np.empty((4, rows), dtype=np.uint8),
        np.empty((2, rows, 4), dtype=np.uint32),
        np.empty((rows, L4_WINDOW), dtype=np.uint8),
    )


def _headers_of(n: int, blocks: _DecodeBlocks) -> Headers:
    """The Headers of the first ``n`` rows of the compiled decode's blocks (views)."""
    ints, flags, addrs, l4h = blocks
    l3, proto, ttl, iplen, ipid, l4, sport, dport, tcpflags, tcpseq, udpsum, pay, paylen = ints[
        :, :n
    ]
    ipver, slow, unknown_link, fragment = flags[:, :n]
    return Headers(
        n=n, l3=l3, ipver=ipver.view(np.int8), slow=slow.view(np.bool_),
        unknown_link=unknown_link.view(np.bool_), proto=proto, ttl=ttl, iplen=iplen,
        fragment=fragment.view(np.bool_), ipid=ipid, src=addrs[0, :n], dst=addrs[1, :n], l4=l4,
        sport=sport, dport=dport, tcpflags=tcpflags, tcpseq=tcpseq, udpsum=udpsum, pay=pay,
        paylen=paylen, l4h=l4h[:n],
    )  # fmt: skip


# How far past a packet's first byte the header decode may read, whatever the bytes say: the
# longest link header, every shim, an IPv6 header with the longest extension chain, and the
# transport window.  A row is decoded the same once this much past its start is in the buffer.
DECODE_REACH = (
    2
    + max(max(lay.header, lay.type_at + 4) for lay in LAYOUT_OF.values())
    + MAX_SHIM_STEPS * max(max(s.length, s.next_at + 2) for s in SHIMS)
    + max(60, 40 + MAX_IPV6_EXT * max(ipv6_ext_length(r, 255) for r in IPV6_EXT_RULES.values()))
    + L4_WINDOW
)
# Fewer rows than this are left for the next call (each call costs a few microseconds).
_EARLY_ROWS = 64


class EarlyDecode:
    """The compiled header decode of a batch's rows as a reader walks them, while their bytes
    are still in the processor's cache (:class:`detector.capture.reader.RowsWalked`): decoded
    after a whole 16 MiB block, every header is fetched from memory again.  A row is decoded
    once :data:`DECODE_REACH` bytes past its start have been read, so it reads the same bytes as
    a decode of the whole batch; the batch's rows left are decoded when it is complete."""

    def __init__(self) -> None:
        self.blocks: _DecodeBlocks | None = None
        self.done = 0  # rows decoded
        # The blocks of the last batch: filled again once nothing looks into them (new blocks
        # for every batch cost a page fault per 4 KiB touched, ~1,000 per batch).
        self.spare: _DecodeBlocks | None = None

    def begin(self, capacity: int) -> None:
        spare, self.spare = self.spare, None
        if spare is None or len(spare[3]) != capacity or not _unused(spare):
            spare = _blocks(capacity)
        self.blocks = spare
        self.done = 0

    def walked(self, columns: WalkedColumns, rows: int, end: int) -> None:
        if self.blocks is None:
            return
        # Offsets rise row by row: the rows whose reach lies within what has been read.
        at = columns.offsets[self.done : rows]
        ready = self.done + int(np.searchsorted(at, end - DECODE_REACH, side="right"))
        if ready - self.done >= _EARLY_ROWS:
            assert OUTER is not None
            OUTER.decode(_TABLES, *columns, *self.blocks, self.done, ready)
            self.done = ready

    def finish(self, batch: PacketBatch) -> Headers | None:
        blocks, self.blocks = self.blocks, None
        n = len(batch)
        if blocks is None or len(blocks[3]) < n:
            return None
        if self.done < n:
            assert OUTER is not None
            OUTER.decode(_TABLES, batch.data, batch.offsets, batch.caplen, batch.linktype,
                         *blocks, self.done, n)  # fmt: skip
        self.spare = blocks
        return _headers_of(n, blocks)


def _unused(blocks: _DecodeBlocks) -> bool:
    """No array but ``blocks`` itself refers to its arrays (no view of them is left)."""
    # Each is referred to by the tuple, and by getrefcount's own argument.
    return all(sys.getrefcount(blocks[k]) == 2 for k in range(len(blocks)))


def early_decode() -> EarlyDecode | None:
    """A decode of rows as they are read, where the compiled decode is in use."""
    return EarlyDecode() if use_compiled else None


def decode_headers_numpy(batch: PacketBatch) -> Headers:
    """The outer headers of ``batch`` by numpy column operations, one layer at a time."""
    n = len(batch)
    lt = batch.linktype
    single_link = int(lt[0]) if n and (lt == lt[0]).all() else None
    if single_link is not None:
        unknown_link = np.full(n, single_link not in KNOWN_LINKS, dtype=np.bool_)
    else:
        unknown_link = ~np.isin(lt, tuple(KNOWN_LINKS))
    pos, etype = _link_layer(batch, single_link)
    _walk_shims(batch, pos, etype)
    ip = _ip_layer(batch, np.where(IP_TYPE_LUT[etype], pos, -1))  # type 0 where pos is -1
    h = _transport_layer(batch, ip)
    h.unknown_link = unknown_link
    return h


def _link_layer(
    batch: PacketBatch, single_link: int | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(position after the link header or -1, type in EtherType space) of every row."""
    if single_link is not None:
        lay = LAYOUT_OF.get(single_link)
        if lay is None:
            return np.full(len(batch), -1, dtype=np.int64), np.zeros(len(batch), dtype=np.int64)
        return _link_start(lay, batch.data, batch.offsets, batch.caplen)
    pos = np.full(len(batch), -1, dtype=np.int64)
    etype = np.zeros(len(batch), dtype=np.int64)
    for lay in LINK_LAYOUTS:
        sel = np.isin(batch.linktype, lay.linktypes)
        if sel.any():
            p, t = _link_start(lay, batch.data, batch.offsets[sel], batch.caplen[sel])
            pos[sel], etype[sel] = p, t
    return pos, etype


def _link_start(
    lay: LinkLayout,
    data: npt.NDArray[np.uint8],
    start: npt.NDArray[np.int64],
    caplen: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The block twin of :func:`detector.decode.layers.link_start` for rows of one layout: it
    reads only the bytes the layout names (a type field sits at a fixed place)."""
    base: int | npt.NDArray[np.int64] = 0
    if lay.hdlc_prefix:
        framed = (caplen >= 2) & (_byte(data, start) == 0xFF) & (_byte(data, start + 1) == 0x03)
        base = framed * 2
    fits = caplen >= base + lay.header
    pos = np.where(fits, base + lay.header, -1)
    at = start + base + lay.type_at
    if lay.space == "ip":  # IP follows: its version nibble says which
        return pos, np.where(fits, ETH_IPV4, 0)
    if lay.space == "family":
        first = _byte(data, at).astype(np.int64)  # host byte order of the writer
        fam = np.where(first != 0, first, _byte(data, at + 3))
        return pos, np.where(fits & FAMILY_LUT[fam], ETH_IPV4, 0)
    etype = (_byte(data, at).astype(np.int64) << 8) | _byte(data, at + 1)
    if lay.space == "ppp":
        etype = PPP_LUT[etype]
    return pos, np.where(fits, etype, 0)


def _byte(data: npt.NDArray[np.uint8], at: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """The byte at each of ``at`` (bounded to the buffer: rows too short read a wrong byte,
    which ``fits`` then discards; an empty buffer reads zeros)."""
    if not len(data):
        return np.zeros(len(at), dtype=np.uint8)
    return data[np.minimum(at, len(data) - 1)]


def _walk_shims(
    batch: PacketBatch, pos: npt.NDArray[np.int64], etype: npt.NDArray[np.int64]
) -> None:
    """Step ``pos`` and ``etype`` over VLAN tags, PPPoE and MPLS labels, in place, one header per
    step on the rows that still stand on a shim (the block twin of ``layers.walk_shims``)."""
    idx = np.nonzero(SHIM_NUMBER[etype] > 0)[0]  # type 0 where pos is -1
    if not len(idx):
        return
    p, t, start, cap = pos[idx], etype[idx], batch.offsets[idx], batch.caplen[idx]
    run = np.zeros(len(idx), dtype=np.int64)  # headers of this shim in a row so far
    prev = np.zeros(len(idx), dtype=np.int64)
    for _ in range(MAX_SHIM_STEPS):
        number = SHIM_NUMBER[t]
        run = np.where(number == prev, run, 0)
        room = cap - p
        go = (number > 0) & (room >= SHIM_LENGTH[number]) & (run < SHIM_DEPTH[number])
        if not go.all():
            stop = ~go
            pos[idx[stop]], etype[idx[stop]] = p[stop], t[stop]
            idx, p, t, run, number = idx[go], p[go], t[go], run[go], number[go]
            start, cap, room = start[go], cap[go], room[go]
            if not len(idx):
                return
        t = _shim_next(gather(batch.data, start + p, 8), number, t, room)
        p = p + SHIM_LENGTH[number]
        run, prev = run + 1, number
    pos[idx], etype[idx] = p, t


def _shim_next(
    w: np.ndarray,
    number: npt.NDArray[np.int64],
    etype: npt.NDArray[np.int64],
    room: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """The type after one shim header (its bytes ``w``) per row, by the shim's next space."""
    first = int(number[0])
    if (number == first).all():  # the usual step: every row on the same kind of shim
        return _next_type(SHIMS[first - 1], w, etype, room)
    out = etype.copy()
    for k, shim in enumerate(SHIMS, 1):
        sel = number == k
        if sel.any():
            out[sel] = _next_type(shim, w[sel], etype[sel], room[sel])
    return out


def _next_type(
    shim: Shim, w: np.ndarray, etype: npt.NDArray[np.int64], room: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The block twin of ``layers.shim_next`` for rows on one kind of shim."""
    if shim.space == "ethertype":
        return be16(w, shim.next_at)
    if shim.space == "ppp":
        return PPP_LUT[be16(w, shim.next_at)]
    bottom = (w[:, shim.next_at] & 1) == 1
    after = np.where(room > shim.length, NIBBLE_LUT[w[:, shim.length] >> 4], 0)
    return np.where(bottom, after, etype)


@dataclass(repr=False, eq=False, slots=True)
class _Ip:
    """The IP layer of a batch, before the transport header is read."""

    l3: npt.NDArray[np.int64]
    ipver: npt.NDArray[np.int8]
    ip: np.ndarray  # (n, 40) bytes from the IP header on
    iplen: npt.NDArray[np.int64]  # IP total length as declared
    proto: npt.NDArray[np.int64]
    l4: npt.NDArray[np.int64]
    nonfirst: npt.NDArray[np.bool_]  # a fragment other than the first (no transport header)
    more: npt.NDArray[np.bool_]  # more fragments follow


def _ip_layer(batch: PacketBatch, l3: npt.NDArray[np.int64]) -> _Ip:
    """Which rows hold an IP header at ``l3`` (the test of ``frames.ip_version_at``), their
    protocol and transport offset, IPv6 extension headers stepped over."""
    caplen = batch.caplen
    ip = gather(batch.data, batch.offsets + np.maximum(l3, 0), 40)
    nib = ip[:, 0] >> 4
    room = np.where(l3 >= 0, caplen - l3, 0)
    ihl = (ip[:, 0] & 0x0F).astype(np.int64) * 4
    total = be16(ip, 2)
    v4 = (nib == 4) & (room >= 20) & (ihl >= 20) & (room >= ihl) & (total >= ihl)
    v6 = (nib == 6) & (room >= 40)
    ipver = np.where(v4, 4, np.where(v6, 6, 0)).astype(np.int8)
    l3 = np.where(ipver > 0, l3, -1)
    iplen = np.where(v4, total, np.where(v6, be16(ip, 4) + 40, 0))
    flags = np.where(v4, be16(ip, 6), 0)
    proto = np.where(v4, ip[:, 9], np.where(v6, ip[:, 6], 0)).astype(np.int64)
    l4 = np.where(v4, l3 + ihl, np.where(v6, l3 + 40, -1))
    found = _Ip(l3, ipver, ip, iplen, proto, l4, (flags & 0x1FFF) != 0, (flags & 0x2000) != 0)
    ext = np.nonzero(v6 & (EXT_RULE[proto] > 0))[0]
    if len(ext):
        _ipv6_extensions(batch, found, ext)
    return found


def _ipv6_extensions(batch: PacketBatch, ip: _Ip, idx: npt.NDArray[np.int64]) -> None:
    """Step over IPv6 extension headers on rows ``idx``, one header per step (the block twin of
    ``frames._ipv6_extensions``); a header cut short leaves no protocol and no transport."""
    for _ in range(MAX_IPV6_EXT):
        if not len(idx):
            return
        p = ip.l4[idx]
        cut = batch.caplen[idx] < p + IPV6_EXT_MIN
        ip.proto[idx[cut]], ip.l4[idx[cut]] = 0, -1
        idx, p = idx[~cut], p[~cut]
        w = gather(batch.data, batch.offsets[idx] + p, 4)
        nh = ip.proto[idx]
        frag = nh == IPV6_FRAGMENT
        ip.nonfirst[idx[frag]] = (be16(w[frag], 2) & 0xFFF8) != 0
        ip.more[idx[frag]] = (w[frag, 3] & 1) == 1
        rule = EXT_RULE[nh]
        size_byte = w[:, 1].astype(np.int64)
        size = np.where(rule == EXT_AH, (size_byte + 2) * 4, (size_byte + 1) * 8)
        size = np.where(rule == EXT_FIXED_8, 8, size)
        ip.proto[idx], ip.l4[idx] = w[:, 0], p + size
        idx = idx[EXT_RULE[w[:, 0]] > 0]


def _transport_layer(batch: PacketBatch, found: _Ip) -> Headers:
    """Addresses, ports, TCP/UDP facts and the payload window from the IP layer."""
    n, caplen, ip, ipver = len(batch), batch.caplen, found.ip, found.ipver
    l3, l4, proto = found.l3, found.l4, found.proto
    v4, v6 = ipver == 4, ipver == 6
    # (n, 10) address-sized words in host order (one byte swap for all): IPv4 src/dst are
    # words 3 and 4; IPv6 src 2-5, dst 6-9.
    be = ip.view(">u4") if ip.flags.c_contiguous else np.ascontiguousarray(ip).view(">u4")
    words = be.astype(np.uint32)
    src = np.where(v6[:, None], words[:, 2:6], 0).astype(np.uint32)
    src[:, 3] = np.where(v4, words[:, 3], src[:, 3])
    dst = np.where(v6[:, None], words[:, 6:10], 0).astype(np.uint32)
    dst[:, 3] = np.where(v4, words[:, 4], dst[:, 3])
    iplen = found.iplen
    has_l4 = (l4 >= 0) & ~found.nonfirst
    # 24 bytes: the L4 header fields used here, and the bytes copy fingerprints read.
    l4h = gather(batch.data, batch.offsets + np.maximum(l4, 0), L4_WINDOW)
    room = caplen - l4
    has_ports = has_l4 & (room >= 4)
    ports = has_ports & PORT_LUT[proto]
    sport = np.where(ports, be16(l4h, 0), 0)
    # GRE has no ports: its protocol type stands in for the destination port.
    gre = has_ports & (proto == IP_PROTO_GRE)
    dport = np.where(ports | gre, be16(l4h, 2), 0)
    tcp = has_l4 & (proto == 6)
    full_tcp = tcp & (room >= 20)
    udp = has_l4 & (proto == 17) & (room >= 8)
    hlen = np.where(
        room > TCP_DATA_OFFSET_AT, (l4h[:, TCP_DATA_OFFSET_AT] >> 4).astype(np.int64) * 4, 20
    )
    hlen = np.where(tcp, hlen, TRANSPORT_HEADER[proto])
    pay = np.where(has_l4, l4 + hlen, -1)
    fragment = found.nonfirst | found.more
    return Headers(
        n=n, l3=l3, ipver=ipver, slow=fragment.copy(), unknown_link=np.zeros(n, dtype=np.bool_),
        proto=proto, ttl=np.where(v4, ip[:, 8], np.where(v6, ip[:, 7], 0)).astype(np.int64),
        iplen=iplen, fragment=fragment, ipid=np.where(v4, be16(ip, 4), 0), src=src, dst=dst,
        l4=l4, sport=sport, dport=dport,
        tcpflags=np.where(full_tcp, l4h[:, 13], 0).astype(np.int64),
        tcpseq=np.where(full_tcp, be32(l4h, 4), 0), udpsum=np.where(udp, be16(l4h, 6), -1),
        pay=pay, paylen=np.where(has_l4, np.maximum(np.minimum(caplen, l3 + iplen) - pay, 0), 0),
        l4h=l4h,
    )  # fmt: skip


def payload_heads_compiled(
    batch: PacketBatch, h: Headers, rows: npt.NDArray[np.int64]
) -> tuple[np.ndarray, npt.NDArray[np.int64]]:
    """:func:`payload_heads_numpy`, each window copied and blanked in one compiled pass."""
    assert OUTER is not None, "the compiled header decode is not built"
    length = h.paylen[rows]
    head = np.empty((len(rows), PREFILTER_BYTES), dtype=np.uint8)
    OUTER.payload_heads(batch.data, batch.offsets[rows] + h.pay[rows], length, head)
    return head, length


def payload_heads_numpy(
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


# The forms the engine uses: compiled where built, unless MIRRORWATCH_PURE_PYTHON=1.
decode_headers = decode_headers_compiled if use_compiled else decode_headers_numpy
payload_heads = payload_heads_compiled if use_compiled else payload_heads_numpy
