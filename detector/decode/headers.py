"""Vectorised outer-header decoding of a whole batch: link layer → IP → L4 → payload window.

Every field is a numpy column over the batch.  Rows the vectorised code does not handle (MPLS,
PPPoE, IPv6 extension headers, IP fragments, PPP and other rare link types) are flagged ``slow``
and finished by :mod:`detector.decode.slowpath`, which writes the same columns back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.capture.reader import PacketBatch
from detector.decode.lut import lut
from detector.protocols.base import PREFILTER_BYTES

# Link types (www.tcpdump.org/linktypes.html)
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP = 0, 1, 101, 108
LINK_RAW_ALIASES = (12, 14, 101)
LINK_IPV4, LINK_IPV6 = 228, 229
LINK_SLL, LINK_SLL2 = 113, 276
# Handled only by the per-packet fallback.
LINK_SLOW = frozenset({9, 50, 51, 104, 192})  # PPP, PPP-HDLC, PPPoE, C-HDLC, PPP with direction
KNOWN_LINKS = frozenset(
    {LINK_NULL, LINK_ETHERNET, LINK_LOOP, LINK_IPV4, LINK_IPV6, LINK_SLL, LINK_SLL2}
    | set(LINK_RAW_ALIASES)
    | LINK_SLOW
)

VLAN_TYPES = (0x8100, 0x88A8, 0x9100, 0x9200)
SLOW_ETHERTYPES = (0x8847, 0x8848, 0x8864)  # MPLS unicast/multicast, PPPoE session
IPV6_SLOW_NH = (0, 43, 44, 60, 135, 139, 140)
L4_WINDOW = 24
VLAN_LUT = lut(VLAN_TYPES, bits=16)
SLOW_LUT = lut(SLOW_ETHERTYPES, bits=16)
IPV6_SLOW_LUT = lut(IPV6_SLOW_NH)


def window(data: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """A (len, width) strided view: row i is data[i : i + width].  Gathering rows is a memcpy."""
    return np.lib.stride_tricks.as_strided(
        data, shape=(len(data) - width + 1, width), strides=(1, 1)
    )


def gather(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], width: int) -> np.ndarray:
    idx = np.minimum(starts, len(data) - width)
    return window(data, width)[idx]


def be16(m: np.ndarray, col: int) -> npt.NDArray[np.int64]:
    return (m[:, col].astype(np.int64) << 8) | m[:, col + 1]


def be32(m: np.ndarray, col: int) -> npt.NDArray[np.int64]:
    return (
        (m[:, col].astype(np.int64) << 24)
        | (m[:, col + 1].astype(np.int64) << 16)
        | (m[:, col + 2].astype(np.int64) << 8)
        | m[:, col + 3]
    )


@dataclass(slots=True)
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


def decode_headers(batch: PacketBatch) -> Headers:
    n = len(batch)
    data = batch.data
    start = batch.offsets
    caplen = batch.caplen
    lt = batch.linktype
    l2 = gather(data, start, 24)

    l3 = np.full(n, -1, dtype=np.int64)
    ethertype = np.zeros(n, dtype=np.int64)
    slow = np.zeros(n, dtype=np.bool_)
    single_link = int(lt[0]) if n and (lt == lt[0]).all() else None

    def rows(code: int | tuple[int, ...]) -> npt.NDArray[np.bool_]:
        if single_link is not None:
            hit = single_link == code if isinstance(code, int) else single_link in code
            return np.full(n, hit, dtype=np.bool_)
        return np.isin(lt, code)

    eth = rows(LINK_ETHERNET)
    if eth.any():
        et = be16(l2, 12)
        off = np.full(n, 14, dtype=np.int64)
        for tagcol in (16, 20):  # up to two VLAN tags vectorised; deeper stacks go slow
            tagged = eth & VLAN_LUT[et]
            if not tagged.any():
                break
            et = np.where(tagged, be16(l2, tagcol), et)
            off = np.where(tagged, off + 4, off)
        still = eth & VLAN_LUT[et]
        slow |= still | (eth & SLOW_LUT[et])
        ethertype = np.where(eth, et, ethertype)
        l3 = np.where(eth & ((et == 0x0800) | (et == 0x86DD)), off, l3)
    sll = rows(LINK_SLL)
    if sll.any():
        et = be16(l2, 14)
        ethertype = np.where(sll, et, ethertype)
        l3 = np.where(sll & ((et == 0x0800) | (et == 0x86DD)), 16, l3)
        slow |= sll & (VLAN_LUT[et] | SLOW_LUT[et])
    sll2 = rows(LINK_SLL2)
    if sll2.any():
        et = be16(l2, 0)
        ethertype = np.where(sll2, et, ethertype)
        l3 = np.where(sll2 & ((et == 0x0800) | (et == 0x86DD)), 20, l3)
        slow |= sll2 & (VLAN_LUT[et] | SLOW_LUT[et])
    raw = rows((*LINK_RAW_ALIASES, LINK_IPV4, LINK_IPV6))
    if raw.any():
        nib = l2[:, 0] >> 4
        l3 = np.where(raw & ((nib == 4) | (nib == 6)), 0, l3)
    loop = rows((LINK_NULL, LINK_LOOP))
    if loop.any():
        le = l2[:, 0].astype(np.int64)  # little-endian family (host order on x86 writers)
        bef = l2[:, 3].astype(np.int64)
        fam = np.where(l2[:, 0] != 0, le, bef)
        l3 = np.where(loop & np.isin(fam, (2, 24, 28, 30)), 4, l3)
    slow |= rows(tuple(LINK_SLOW))
    unknown_link = (
        ~np.isin(lt, tuple(KNOWN_LINKS))
        if single_link is None
        else (np.full(n, single_link not in KNOWN_LINKS, dtype=np.bool_))
    )

    # IP header window (40 bytes covers IPv6 and IPv4 without options up to the addresses).
    has_l3 = (l3 >= 0) & ~slow
    ip = gather(data, start + np.maximum(l3, 0), 40)
    nib = ip[:, 0] >> 4
    v4 = has_l3 & (nib == 4) & (caplen >= l3 + 20)
    v6 = has_l3 & (nib == 6) & (caplen >= l3 + 40)
    ihl = (ip[:, 0] & 0x0F).astype(np.int64) * 4
    v4 &= ihl >= 20
    ipver = np.where(v4, 4, np.where(v6, 6, 0)).astype(np.int8)

    iplen = np.where(v4, be16(ip, 2), np.where(v6, be16(ip, 4) + 40, 0))
    fragoff = be16(ip, 6)
    fragment = v4 & ((fragoff & 0x3FFF) != 0)
    proto = np.where(v4, ip[:, 9], np.where(v6, ip[:, 6], 0)).astype(np.int64)
    ttl = np.where(v4, ip[:, 8], np.where(v6, ip[:, 7], 0)).astype(np.int64)
    ipid = np.where(v4, be16(ip, 4), 0)
    slow |= fragment | (v6 & IPV6_SLOW_LUT[proto])

    src = np.zeros((n, 4), dtype=np.uint32)
    dst = np.zeros((n, 4), dtype=np.uint32)
    be = ip.view(">u4") if ip.flags.c_contiguous else np.ascontiguousarray(ip).view(">u4")
    # be is (n, 10) words: IPv4 src/dst are words 3 and 4; IPv6 src 2-5, dst 6-9.
    src[:, 3] = np.where(v4, be[:, 3], be[:, 5])
    dst[:, 3] = np.where(v4, be[:, 4], be[:, 9])
    src[:, :3] = np.where(v6[:, None], be[:, 2:5], 0)
    dst[:, :3] = np.where(v6[:, None], be[:, 6:9], 0)

    l4 = np.where(v4, l3 + ihl, np.where(v6, l3 + 40, -1))
    ok = (ipver > 0) & ~slow
    # 24 bytes: the L4 header fields used here, and the bytes copy fingerprints read.
    l4h = gather(data, start + np.maximum(l4, 0), L4_WINDOW)
    tcp = ok & (proto == 6)
    udp = ok & (proto == 17)
    ports = tcp | udp | (ok & (proto == 132))
    sport = np.where(ports, be16(l4h, 0), 0)
    dport = np.where(ports, be16(l4h, 2), 0)
    # GRE has no ports: its protocol type stands in for the destination port, so GRE streams of
    # different payload types between the same two routers stay apart.
    gre = ok & (proto == 47)
    dport = np.where(gre, be16(l4h, 2), dport)
    tcpflags = np.where(tcp, l4h[:, 13], 0).astype(np.int64)
    tcpseq = np.where(tcp, be32(l4h, 4), 0)
    udpsum = np.where(udp, be16(l4h, 6), -1)
    hlen = np.where(tcp, (l4h[:, 12] >> 4).astype(np.int64) * 4, np.where(udp, 8, 0))
    hlen = np.where(ok & (proto == 132), 12, hlen)
    pay = np.where(ok, l4 + hlen, -1)
    ip_end = np.minimum(caplen, l3 + iplen)
    paylen = np.where(ok, np.maximum(ip_end - pay, 0), 0)
    return Headers(
        n=n, l3=l3, ipver=ipver, slow=slow, unknown_link=unknown_link, proto=proto, ttl=ttl,
        iplen=iplen, fragment=fragment, ipid=ipid, src=src, dst=dst, l4=l4, sport=sport,
        dport=dport, tcpflags=tcpflags, tcpseq=tcpseq, udpsum=udpsum, pay=pay, paylen=paylen,
        l4h=l4h,
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
