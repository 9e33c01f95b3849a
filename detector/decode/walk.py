"""The one walk from a captured frame to its L4 header: link type → L2 → VLAN/QinQ tags, MPLS
labels, PPPoE → IPv4 / IPv6 and its extension headers → TCP/UDP/SCTP/GRE fields.

Compiled by numba (cached on disk next to this file, or in the user's cache directory when the
package directory is read-only), it serves both paths: :func:`walk_block` decodes every packet of
a block into the columns the engine reads, and :func:`walk_packet` decodes one frame or IP
packet for the per-packet code (carried frames, fragments, explain).  Every read is checked
against the end of the packet first: compiled code has no IndexError, an unchecked read past the
end would read another record's bytes or fault.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from detector.jit import compiled

# How each link type reaches its network layer (www.tcpdump.org/linktypes.html): the one table
# of link-type offsets.  kind, then where the type field is and where its payload starts.
KIND_UNKNOWN, KIND_ETHERTYPE, KIND_RAW_IP, KIND_LOOP, KIND_PPP, KIND_PPP_AT = 0, 1, 2, 3, 4, 5
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP = 0, 1, 101, 108
LINK_IPV4, LINK_IPV6 = 228, 229
LINK_SLL, LINK_SLL2 = 113, 276
LINK_LAYOUTS: dict[int, tuple[int, int, int]] = {
    LINK_ETHERNET: (KIND_ETHERTYPE, 12, 14),
    LINK_SLL: (KIND_ETHERTYPE, 14, 16),  # Linux cooked v1
    LINK_SLL2: (KIND_ETHERTYPE, 0, 20),  # Linux cooked v2
    104: (KIND_ETHERTYPE, 2, 4),  # Cisco HDLC: address, control, EtherType
    LINK_NULL: (KIND_LOOP, 0, 4),  # BSD loopback: address family in host byte order
    LINK_LOOP: (KIND_LOOP, 0, 4),
    12: (KIND_RAW_IP, 0, 0),
    14: (KIND_RAW_IP, 0, 0),
    LINK_RAW: (KIND_RAW_IP, 0, 0),
    LINK_IPV4: (KIND_RAW_IP, 0, 0),
    LINK_IPV6: (KIND_RAW_IP, 0, 0),
    9: (KIND_PPP, 0, 2),  # PPP, with or without HDLC-like framing (ff 03)
    50: (KIND_PPP, 0, 2),  # PPP in HDLC framing
    51: (KIND_PPP_AT, 6, 8),  # PPPoE session without an Ethernet header
    192: (KIND_PPP_AT, 1, 3),  # PPP with a direction byte
}
KNOWN_LINKS = frozenset(LINK_LAYOUTS)
LINK_TABLE_SIZE = 512
_LINK_KIND = np.zeros(LINK_TABLE_SIZE, dtype=np.int64)
_LINK_TYPE_AT = np.zeros(LINK_TABLE_SIZE, dtype=np.int64)
_LINK_PAYLOAD_AT = np.zeros(LINK_TABLE_SIZE, dtype=np.int64)
for _lt, (_kind, _type_at, _payload_at) in LINK_LAYOUTS.items():
    _LINK_KIND[_lt], _LINK_TYPE_AT[_lt], _LINK_PAYLOAD_AT[_lt] = _kind, _type_at, _payload_at

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ETH_VLAN_TAGS = (0x8100, 0x88A8, 0x9100, 0x9200)
ETH_MPLS = (0x8847, 0x8848)
ETH_PPPOE_SESSION = 0x8864
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
MAX_VLAN_TAGS = 8
MAX_MPLS_LABELS = 16
MAX_IPV6_EXTENSIONS = 8
# IPv6 extension headers walked to reach the L4 header.  ESP and AH are not walked: they are
# the protocol of the packet (IPsec tunnels), as on IPv4.
IPV6_WALKED = (0, 43, 44, 60, 135, 139, 140, 253, 254)
_IPV6_WALKED = np.zeros(256, dtype=np.bool_)
_IPV6_WALKED[list(IPV6_WALKED)] = True
IPV6_FRAGMENT = 44
# Protocols with 16-bit source and destination ports first: TCP, UDP, SCTP, UDP-Lite.
PORT_PROTOS = (6, 17, 132, 136)
# Bytes from the L4 header on that the block pass copies per row (copy fingerprints read them).
L4_WINDOW = 24

# Fields of one walked packet, in the order walk_one returns them.
FIELDS = (
    "l3", "ipver", "proto", "ttl", "iplen", "ipid", "fragment", "later_fragment", "src0", "src1",
    "src2", "src3", "dst0", "dst1", "dst2", "dst3", "l4", "sport", "dport", "tcpflags",
    "tcpseq", "udpsum", "pay", "paylen", "ethertype", "vlan", "known_link",
)  # fmt: skip


@compiled()
def _u8(data: npt.NDArray[np.uint8], pos: int, end: int) -> int:
    return np.int64(data[pos]) if 0 <= pos < end else 0


@compiled()
def _be16(data: npt.NDArray[np.uint8], pos: int, end: int) -> int:
    if pos < 0 or pos + 2 > end:
        return 0
    return (np.int64(data[pos]) << 8) | np.int64(data[pos + 1])


@compiled()
def _be32(data: npt.NDArray[np.uint8], pos: int, end: int) -> int:
    if pos < 0 or pos + 4 > end:
        return 0
    return (
        (np.int64(data[pos]) << 24)
        | (np.int64(data[pos + 1]) << 16)
        | (np.int64(data[pos + 2]) << 8)
        | np.int64(data[pos + 3])
    )


@compiled()
def _is_vlan(etype: int) -> bool:
    return etype == 0x8100 or etype == 0x88A8 or etype == 0x9100 or etype == 0x9200


@compiled()
def _ppp_ethertype(ppp: int) -> int:
    if ppp == PPP_IPV4:
        return ETH_IPV4
    if ppp == PPP_IPV6:
        return ETH_IPV6
    return 0


@compiled()
def _after_ethertype(data: npt.NDArray[np.uint8], pos: int, end: int, etype: int):
    """Skip VLAN tags, then PPPoE or MPLS, from the payload at ``pos`` of a frame whose
    EtherType is ``etype``.  (payload offset, EtherType it carries, first VLAN id or -1)."""
    vlan = -1
    for _ in range(MAX_VLAN_TAGS):
        if not _is_vlan(etype) or pos + 4 > end:
            break
        if vlan < 0:
            vlan = _be16(data, pos, end) & 0x0FFF
        etype = _be16(data, pos + 2, end)
        pos += 4
    if etype == ETH_PPPOE_SESSION and pos + 8 <= end:
        etype = _ppp_ethertype(_be16(data, pos + 6, end))
        pos += 8
    elif etype == 0x8847 or etype == 0x8848:
        etype = 0
        for _ in range(MAX_MPLS_LABELS):
            if pos + 4 > end:
                return pos, 0, vlan
            bottom = _u8(data, pos + 2, end) & 1
            pos += 4
            if bottom:
                nibble = _u8(data, pos, end) >> 4
                if pos < end and nibble == 4:
                    etype = ETH_IPV4
                elif pos < end and nibble == 6:
                    etype = ETH_IPV6
                break
    return pos, etype, vlan


@compiled()
def _network_layer(data: npt.NDArray[np.uint8], start: int, end: int, linktype: int):
    """(offset of the IP header from ``start`` or -1, EtherType, first VLAN id or -1, known)."""
    if linktype < 0 or linktype >= LINK_TABLE_SIZE or _LINK_KIND[linktype] == KIND_UNKNOWN:
        return -1, 0, -1, False
    kind = _LINK_KIND[linktype]
    type_at = start + _LINK_TYPE_AT[linktype]
    pos = start + _LINK_PAYLOAD_AT[linktype]
    etype = 0
    vlan = -1
    if kind == KIND_ETHERTYPE:
        if pos > end:
            return -1, 0, -1, True
        pos, etype, vlan = _after_ethertype(data, pos, end, _be16(data, type_at, end))
    elif kind == KIND_RAW_IP:
        nibble = _u8(data, pos, end) >> 4
        etype = ETH_IPV4 if nibble == 4 else (ETH_IPV6 if nibble == 6 else 0)
    elif kind == KIND_LOOP:
        family = _u8(data, start, end)
        if family == 0:
            family = _u8(data, start + 3, end)  # big-endian writer
        if pos <= end and (family == 2 or family == 24 or family == 28 or family == 30):
            nibble = _u8(data, pos, end) >> 4
            etype = ETH_IPV4 if nibble == 4 else (ETH_IPV6 if nibble == 6 else 0)
    elif kind == KIND_PPP:
        if _u8(data, start, end) == 0xFF and _u8(data, start + 1, end) == 0x03:
            type_at += 2
            pos += 2
        etype = _ppp_ethertype(_be16(data, type_at, end))
    else:  # KIND_PPP_AT
        etype = _ppp_ethertype(_be16(data, type_at, end))
    if etype in (ETH_IPV4, ETH_IPV6) and pos < end:
        return pos - start, etype, vlan, True
    return -1, etype, vlan, True


@compiled()
def walk_one(data: npt.NDArray[np.uint8], start: int, caplen: int, linktype: int):
    """Walk the packet ``data[start : start + caplen]``; the FIELDS, in order (offsets from
    ``start``; IPv4 addresses in word 3).  ``linktype`` -1 means an IP packet with no link
    header (as raw IP)."""
    end = min(start + max(caplen, 0), len(data))
    if start < 0:
        end = -1
    lt = 101 if linktype == -1 else linktype
    l3, etype, vlan, known = _network_layer(data, start, end, lt)
    ipver = 0
    proto = ttl = iplen = ipid = 0
    fragment = later = False
    s0 = s1 = s2 = s3 = d0 = d1 = d2 = d3 = 0
    l4 = -1
    sport = dport = tcpflags = tcpseq = 0
    udpsum = -1
    pay = -1
    paylen = 0
    if l3 >= 0:
        ip = start + l3
        nibble = _u8(data, ip, end) >> 4
        if nibble == 4 and ip + 20 <= end:
            ihl = (_u8(data, ip, end) & 0x0F) * 4
            if ihl >= 20:
                ipver = 4
                iplen = _be16(data, ip + 2, end)
                ipid = _be16(data, ip + 4, end)
                flags = _be16(data, ip + 6, end)
                fragment = (flags & 0x3FFF) != 0
                later = (flags & 0x1FFF) != 0
                ttl = _u8(data, ip + 8, end)
                proto = _u8(data, ip + 9, end)
                s3 = _be32(data, ip + 12, end)
                d3 = _be32(data, ip + 16, end)
                l4 = l3 + ihl
        elif nibble == 6 and ip + 40 <= end:
            ipver = 6
            iplen = _be16(data, ip + 4, end) + 40
            ttl = _u8(data, ip + 7, end)
            s0, s1 = _be32(data, ip + 8, end), _be32(data, ip + 12, end)
            s2, s3 = _be32(data, ip + 16, end), _be32(data, ip + 20, end)
            d0, d1 = _be32(data, ip + 24, end), _be32(data, ip + 28, end)
            d2, d3 = _be32(data, ip + 32, end), _be32(data, ip + 36, end)
            nh = _u8(data, ip + 6, end)
            at = ip + 40
            for _ in range(MAX_IPV6_EXTENSIONS):
                if not _IPV6_WALKED[nh]:
                    break
                if at + 8 > end:
                    at = -1
                    break
                if nh == IPV6_FRAGMENT:
                    offset = _be16(data, at + 2, end)
                    fragment = (offset & 0xFFF9) != 0
                    later = (offset & 0xFFF8) != 0
                    ipid = _be32(data, at + 4, end)
                    nh, at = _u8(data, at, end), at + 8
                else:
                    nh, at = _u8(data, at, end), at + (_u8(data, at + 1, end) + 1) * 8
            proto = nh
            l4 = at - start if at >= 0 else -1
    if ipver and l4 >= 0 and not later:
        at = start + l4
        hlen = 0
        if proto == 6 or proto == 17 or proto == 132 or proto == 136:
            sport = _be16(data, at, end)
            dport = _be16(data, at + 2, end)
        if proto == 6:
            tcpflags = _u8(data, at + 13, end)
            tcpseq = _be32(data, at + 4, end)
            hlen = (_u8(data, at + 12, end) >> 4) * 4
        elif proto == 17:
            udpsum = _be16(data, at + 6, end) if at + 8 <= end else -1
            hlen = 8
        elif proto == 132:
            hlen = 12
        elif proto == 47:
            # GRE has no ports: its protocol type stands in for the destination port, so GRE
            # streams of different payload types between the same two routers stay apart.
            dport = _be16(data, at + 2, end)
        pay = l4 + hlen
        paylen = max(min(end - start, l3 + iplen) - pay, 0)
    return (
        l3, ipver, proto, ttl, iplen, ipid, fragment, later, s0, s1, s2, s3, d0, d1, d2, d3,
        l4, sport, dport, tcpflags, tcpseq, udpsum, pay, paylen, etype, vlan, known,
    )  # fmt: skip


@compiled()
def walk_block(
    data: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    caplen: npt.NDArray[np.int64],
    linktype: npt.NDArray[np.int32],
    ints: npt.NDArray[np.int64],
    src: npt.NDArray[np.uint32],
    dst: npt.NDArray[np.uint32],
    flags: npt.NDArray[np.bool_],
    ipver: npt.NDArray[np.int8],
    l4h: npt.NDArray[np.uint8],
) -> None:
    """Walk every packet of a block into columns: ``ints`` rows are l3, proto, ttl, iplen, ipid,
    l4, sport, dport, tcpflags, tcpseq, udpsum, pay, paylen; ``flags`` rows are fragment
    (needs reassembly) and unknown link; ``l4h`` the first L4_WINDOW bytes from the L4 header
    on, zero past the packet's end."""
    for i in range(len(offsets)):
        start = offsets[i]
        r = walk_one(data, start, caplen[i], linktype[i])
        ints[0, i] = r[0]
        ipver[i] = r[1]
        ints[1, i] = r[2]
        ints[2, i] = r[3]
        ints[3, i] = r[4]
        ints[4, i] = r[5]
        flags[0, i] = r[6] and r[1] != 0
        flags[1, i] = not r[26]
        src[i, 0], src[i, 1], src[i, 2], src[i, 3] = r[8], r[9], r[10], r[11]
        dst[i, 0], dst[i, 1], dst[i, 2], dst[i, 3] = r[12], r[13], r[14], r[15]
        l4 = r[16]
        ints[5, i] = l4
        ints[6, i] = r[17]
        ints[7, i] = r[18]
        ints[8, i] = r[19]
        ints[9, i] = r[20]
        ints[10, i] = r[21]
        ints[11, i] = r[22]
        ints[12, i] = r[23]
        if l4 >= 0 and r[1] != 0:
            end = min(start + caplen[i], len(data))
            at = start + l4
            for j in range(L4_WINDOW):
                l4h[i, j] = data[at + j] if at + j < end else 0
        else:
            for j in range(L4_WINDOW):
                l4h[i, j] = 0


class Walked(NamedTuple):
    """One packet walked by :func:`walk_packet` (offsets from the start of the bytes given)."""

    l3: int
    ipver: int
    proto: int
    ttl: int
    iplen: int
    ipid: int
    fragment: bool  # part of a fragmented datagram (needs reassembly)
    later_fragment: bool  # not the first fragment: no L4 header in it
    src0: int
    src1: int
    src2: int
    src3: int
    dst0: int
    dst1: int
    dst2: int
    dst3: int
    l4: int
    sport: int
    dport: int
    tcpflags: int
    tcpseq: int
    udpsum: int
    pay: int
    paylen: int
    ethertype: int
    vlan: int  # first VLAN id, -1 if untagged
    known_link: bool


RAW_IP = -1


def walk_packet(pkt: bytes | bytearray | memoryview, linktype: int, offset: int = 0) -> Walked:
    """Walk one frame of ``linktype`` (RAW_IP for a bare IP packet) starting at ``offset``."""
    data = np.frombuffer(pkt, dtype=np.uint8)
    # One compiled version serves bytes and bytearrays (and the blocks): read-only arrays.
    data.flags.writeable = False
    return Walked(*walk_one(data, offset, len(data) - offset, linktype))
