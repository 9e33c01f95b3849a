"""Pure-Python parsing of single frames and IP packets.

Used where per-packet work is affordable: validating what a candidate payload carries, reading
the inner packets of a mirror stream, explaining a sample.  The link and IPv6 extension header
walk interprets the layouts of :mod:`detector.decode.layers`, as the vectorised block walk of
:mod:`detector.decode.headers` does: for the same bytes both find the same columns.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from detector.decode.layers import (
    ETH_IPV4,
    ETH_IPV6,
    IP_ETHERTYPES,
    IP_PROTO_GRE,
    IPV6_FRAGMENT,
    LINK_ETHERNET,
    LINK_PPP,
    PORT_PROTOCOLS,
    SHIM_OF,
    TCP_DATA_OFFSET_AT,
    TRANSPORT_HEADER_LENGTH,
    be16_at,
    ipv6_chain,
    link_start,
    walk_shims,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# EtherTypes that plausibly start a copied frame's payload (used to accept an inner Ethernet
# frame as real): IP and the shims before it (VLAN tags, MPLS, PPPoE session), then ARP, PPPoE
# discovery, LLDP, MACsec, 802.1X, PTP, Cisco TTag, NSH...
PLAUSIBLE_ETHERTYPES = frozenset(
    {
        *IP_ETHERTYPES, *SHIM_OF, 0x0806, 0x8863, 0x88CC, 0x88E5, 0x888E, 0x88F7, 0x8988,
        0x894F, 0x8035, 0x88B5, 0x88B6, 0x8809, 0x22F3, 0x88E7, 0x8906, 0x8914, 0x6558, 0x22EB,
        0x88BE, 0x893A, 0x8902,
    }
)  # fmt: skip

# What a carried IPv4 header's checksum says.  A fact for the evidence, never a reason to reject
# a copy: frames copied before TX checksum offload carry 0, anonymised captures a stale value.
CHECKSUM_NONE = "none"  # IPv6, or no IPv4 header
CHECKSUM_RIGHT = "right"
CHECKSUM_ZERO = "zero"
CHECKSUM_WRONG = "wrong"

# IPv6 next headers seen in practice; anything else in a would-be IPv6 header is taken as noise
# where a format has no header of its own to vouch for what follows it.
IPV6_NEXT_HEADERS = frozenset(
    {0, 1, 2, 4, 6, 17, 41, 43, 44, 47, 50, 51, 58, 59, 60, 88, 89, 103, 112, 132, 135, 136, 139}
)


@dataclass(slots=True)
class InnerPacket:
    """Addresses and L4 facts of one frame or IP packet."""

    src_mac: str | None = None
    dst_mac: str | None = None
    ethertype: int = 0
    vlan: int | None = None
    ip_version: int = 0
    src: str | None = None
    dst: str | None = None
    proto: int = 0
    sport: int = 0
    dport: int = 0
    ip_id: int = 0
    ip_len: int = 0
    # Offset of the IP header inside the parsed bytes, and of the L4 payload (-1 if unknown).
    ip_offset: int = -1
    l4_offset: int = -1
    # True when this is a non-first fragment (no L4 header in it).
    fragment: bool = False
    # More fragments follow (a first fragment has this and not ``fragment``).
    more_fragments: bool = False
    # Offset of the transport payload (past the TCP/UDP/SCTP header), -1 if unknown.
    payload_offset: int = -1
    # Facts about the carried header (counted per stream, never used to reject a copy).
    checksum: str = CHECKSUM_NONE
    # The source MAC has its group bit set (anonymised captures, odd hardware).
    group_source_mac: bool = False


# Each byte's decimal digits: an IPv4 address written from them takes half the time of
# formatting its four numbers.
OCTET_TEXT = tuple(str(i) for i in range(256))
# The first five words of an IPv6 address that the C library writes with an IPv4 tail.
_V6_ZERO_HEAD = bytes(10)


def mac_str(b: bytes) -> str:
    # bytes.hex with a separator: the same text as joining each byte's two hex digits, for a
    # twentieth of the time (twice per carried frame).
    return b.hex(":")


def ipv4_str(a: int, b: int, c: int, d: int) -> str:
    """An IPv4 address's text from its four bytes."""
    text = OCTET_TEXT
    return f"{text[a]}.{text[b]}.{text[c]}.{text[d]}"


def ip_str(b: bytes) -> str:
    if len(b) == 4:
        return ipv4_str(*b)
    if len(b) == 16 and b[:10] != _V6_ZERO_HEAD:
        # The C library writes ipaddress's text an eighth of the time; only where the first
        # five words are zero does it write an IPv4 tail (::1.2.3.4, ::ffff:1.2.3.4) instead.
        from _socket import AF_INET6, inet_ntop  # loaded by the first IPv6 address

        return inet_ntop(AF_INET6, b)
    return str(ipaddress.IPv6Address(b))


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071 16-bit one's-complement sum, folded (the IPv4 header checksum arithmetic)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_complement_sum_np(words: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The same sum over rows of 16-bit words (n, k), vectorised for prefilters."""
    total = words.sum(axis=1)
    for _ in range(3):
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_checksum_ok(hdr: bytes) -> bool:
    """RFC 791: the sum over the header, checksum included, is 0xffff."""
    return len(hdr) % 2 == 0 and ones_complement_sum(hdr) == 0xFFFF


def ipv4_checksum_state(data: bytes, off: int = 0) -> str:
    """right / zero / wrong for the IPv4 header at ``off`` (structure already checked)."""
    ihl = (data[off] & 0x0F) * 4
    if ipv4_checksum_ok(bytes(data[off : off + ihl])):
        return CHECKSUM_RIGHT
    if data[off + 10] == 0 and data[off + 11] == 0:
        return CHECKSUM_ZERO
    return CHECKSUM_WRONG


def ip_version_at(
    data: bytes, off: int = 0, *, exact_len: bool = False, strict: bool = False
) -> int:
    """The one test of "an IP packet starts at ``off``": 4 or 6, else 0.

    Structure: version, IHL ≥ 5, a whole header, a total length not shorter than the header
    (IPv4); a whole 40-byte header (IPv6).  ``exact_len`` requires the stated length to end
    exactly at the end of ``data`` (a packet that fills its container); otherwise it may be cut
    short by a snap length.  ``strict`` is for formats with no header of their own to vouch for
    what they carry (magic-less shims, the unknown encapsulation, tunnels): the IPv4 checksum
    must be right, an IPv6 packet must have a plausible next header and hop limit and a payload
    length that covers what follows.
    """
    if len(data) - off < 20:
        return 0
    ver = data[off] >> 4
    if ver == 4:
        ihl = (data[off] & 0x0F) * 4
        if ihl < 20 or len(data) - off < ihl:
            return 0
        total = (data[off + 2] << 8) | data[off + 3]
        if total < ihl or (exact_len and total != len(data) - off):
            return 0
        if strict and not ipv4_checksum_ok(bytes(data[off : off + ihl])):
            return 0
        return 4
    if ver == 6 and len(data) - off >= 40:
        plen = (data[off + 4] << 8) | data[off + 5]
        if exact_len and plen + 40 != len(data) - off:
            return 0
        if strict and (
            data[off + 6] not in IPV6_NEXT_HEADERS
            or data[off + 7] == 0
            or plen + 40 < len(data) - off
        ):
            return 0
        return 6
    return 0


def ip_fills(data: bytes, off: int) -> bool:
    """A real IP packet at ``off`` whose stated length is exactly what follows (no cut-short
    capture), checked strictly: the evidence of formats without a magic number."""
    return ip_version_at(data, off, exact_len=True, strict=True) != 0


def ipv4_valid(
    data: bytes, off: int = 0, *, exact_len: bool = False, checksum: bool = False
) -> bool:
    """An IPv4 packet starts at ``off`` (see :func:`ip_version_at`)."""
    return (
        len(data) - off >= 20
        and data[off] >> 4 == 4
        and bool(ip_version_at(data, off, exact_len=exact_len, strict=checksum))
    )


def ipv6_valid(data: bytes, off: int = 0, *, exact_len: bool = False) -> bool:
    """An IPv6 packet starts at ``off`` (see :func:`ip_version_at`)."""
    return (
        len(data) - off >= 40
        and data[off] >> 4 == 6
        and bool(ip_version_at(data, off, exact_len=exact_len))
    )


def ethernet_valid(data: bytes, off: int = 0, *, strict: bool = False) -> bool:
    """Plausible Ethernet II / 802.3 frame at ``off``: a known EtherType (with the IP header it
    announces, or what a snap length left of it), or an 802.3 length field that fits.

    ``strict`` adds what only formats without a header of their own need: a source MAC without
    the group bit and a right IPv4 checksum.  Everywhere else those are facts, counted in the
    evidence (:class:`InnerPacket`).
    """
    if len(data) - off < 14:
        return False
    if strict and data[off + 6] & 0x01:
        return False
    ip, etype = link_start(data, LINK_ETHERNET, off)
    if etype in PLAUSIBLE_ETHERTYPES:
        if etype in (ETH_IPV4, ETH_IPV6):
            want = 4 if etype == ETH_IPV4 else 6
            if len(data) - ip < (20 if want == 4 else 40) and not strict:
                # Cut by a small snap length: what is left must still start like the header.
                return len(data) == ip or data[ip] >> 4 == want
            return ip_version_at(data, ip, strict=strict) == want
        return True
    # 802.3 length field followed by LLC (STP, CDP, ...).
    return etype <= 1500 and etype <= len(data) - ip + 4


def parse_ip(data: bytes, off: int = 0) -> InnerPacket | None:
    """Parse an IPv4 or IPv6 packet starting at ``off``; None when it is not one."""
    if len(data) - off < 1:
        return None
    ver = ip_version_at(data, off)
    pkt = InnerPacket(ip_version=ver, ip_offset=off)
    if ver == 4:
        pkt.checksum = ipv4_checksum_state(data, off)
        pkt.ip_len = be16_at(data, off + 2)
        pkt.ip_id = be16_at(data, off + 4)
        flags = be16_at(data, off + 6)
        pkt.proto = data[off + 9]
        pkt.src = ip_str(bytes(data[off + 12 : off + 16]))
        pkt.dst = ip_str(bytes(data[off + 16 : off + 20]))
        pkt.fragment = flags & 0x1FFF != 0
        pkt.more_fragments = bool(flags & 0x2000)
        pkt.l4_offset = off + (data[off] & 0x0F) * 4
    elif ver == 6:
        pkt.ip_len = be16_at(data, off + 4) + 40
        pkt.src = ip_str(bytes(data[off + 8 : off + 24]))
        pkt.dst = ip_str(bytes(data[off + 24 : off + 40]))
        if not _ipv6_extensions(data, off, pkt):
            return pkt  # an extension header cut short: no transport header to read
    else:
        return None
    _transport(data, pkt)
    return pkt


def _ipv6_extensions(data: bytes, off: int, pkt: InnerPacket) -> bool:
    """Step over the extension headers so the transport header is read from the right place:
    sets ``proto`` and ``l4_offset`` (and the fragment facts); False when one is cut short."""
    chain, nh, l4 = ipv6_chain(data, off)
    for kind, at in chain:
        if kind == IPV6_FRAGMENT:
            pkt.ip_id = struct.unpack_from("!I", data, at + 4)[0]
            pkt.fragment = be16_at(data, at + 2) & 0xFFF8 != 0
            pkt.more_fragments = bool(data[at + 3] & 1)
    if l4 < 0:
        return False
    pkt.proto, pkt.l4_offset = nh, l4
    return True


def _transport(data: bytes, pkt: InnerPacket) -> None:
    """Ports and the payload offset from the transport header at ``pkt.l4_offset`` (none in a
    non-first fragment).  GRE has no ports: its protocol type stands in for the destination
    port, so GRE streams of different payload types between the same two routers stay apart."""
    l4 = pkt.l4_offset
    if pkt.fragment:
        return
    if len(data) >= l4 + 4:
        if pkt.proto in PORT_PROTOCOLS:
            pkt.sport, pkt.dport = struct.unpack_from("!HH", data, l4)
        elif pkt.proto == IP_PROTO_GRE:
            pkt.dport = be16_at(data, l4 + 2)
    pkt.payload_offset = l4 + transport_header_length(data, pkt.proto, l4)


def transport_header_length(data: bytes, proto: int, l4: int) -> int:
    """Bytes of the TCP (its data offset, when captured), UDP, UDP-Lite or SCTP common header."""
    if proto == 6:
        at = l4 + TCP_DATA_OFFSET_AT
        return (data[at] >> 4) * 4 if len(data) > at else 20
    return TRANSPORT_HEADER_LENGTH.get(proto, 0)


def parse_ethernet(data: bytes, off: int = 0) -> InnerPacket | None:
    """Parse an Ethernet frame (VLAN tags, MPLS and PPPoE skipped) down to its IP header."""
    if len(data) - off < 14:
        return None
    pos, etype = link_start(data, LINK_ETHERNET, off)
    pos, etype, vlans = walk_shims(data, pos, etype)
    inner: InnerPacket | None = None
    if etype in (ETH_IPV4, ETH_IPV6):
        inner = parse_ip(data, pos)
    if inner is None:
        inner = InnerPacket()
    inner.dst_mac = mac_str(bytes(data[off : off + 6]))
    inner.src_mac = mac_str(bytes(data[off + 6 : off + 12]))
    inner.ethertype, inner.vlan = etype, vlans[0] if vlans else None
    inner.group_source_mac = bool(data[off + 6] & 0x01)
    return inner


def parse_frame(data: bytes, linktype: int) -> InnerPacket | None:
    """Parse a captured frame of a pcap link type down to its IP header and transport ports:
    the scalar twin of the block walk (:func:`detector.decode.headers.decode_headers`)."""
    if linktype == LINK_ETHERNET:
        return parse_ethernet(data)
    pos, etype = link_start(data, linktype)
    if pos < 0:
        return None
    pos, etype, _ = walk_shims(data, pos, etype)
    return parse_ip(data, pos) if etype in (ETH_IPV4, ETH_IPV6) else None


def carried_frame(link: str, data: bytes) -> InnerPacket | None:
    """Check the structure of a frame or IP packet a format says it carries and parse it, once:
    the value serves validation, evidence and copy fingerprints.  None when it is not what the
    format says (checksums and MAC bits are recorded in it, never a reason for None)."""
    if link == "ethernet":
        return parse_ethernet(data) if ethernet_valid(data) else None
    if link == "ip":
        return parse_ip(data)
    return None


def parse_carried(link: str, data: bytes) -> InnerPacket | None:
    """Parse a carried frame by the link type its container declared."""
    if link == "ethernet":
        return parse_ethernet(data)
    if link == "ip":
        return parse_ip(data)
    if link == "ppp":
        return parse_frame(data, LINK_PPP)
    if link == "ieee80211":
        return parse_ieee80211(data)
    return None


def parse_ieee80211(data: bytes) -> InnerPacket | None:
    """Addresses of an 802.11 data frame (and its IP packet when LLC/SNAP carries one)."""
    if len(data) < 24:
        return None
    fc0, fc1 = data[0], data[1]
    ftype = (fc0 >> 2) & 0x3
    if ftype == 3:
        return None
    to_ds, from_ds = fc1 & 0x1, (fc1 >> 1) & 0x1
    a1, a2, a3 = (mac_str(bytes(data[i : i + 6])) for i in (4, 10, 16))
    pkt = InnerPacket()
    if ftype != 2:
        pkt.dst_mac, pkt.src_mac = a1, a2
        return pkt
    # Destination/source address by the DS bits (IEEE 802.11 table 9-26).
    dst, src = {(0, 0): (a1, a2), (0, 1): (a1, a3), (1, 0): (a3, a2), (1, 1): (a3, a2)}[
        (to_ds, from_ds)
    ]
    pkt.dst_mac, pkt.src_mac = dst, src
    hdr = 30 if (to_ds and from_ds) else 24
    if (fc0 >> 4) & 0x8:  # QoS data subtype
        hdr += 2
    if len(data) >= hdr + 8 and data[hdr : hdr + 3] == b"\xaa\xaa\x03":
        etype = (data[hdr + 6] << 8) | data[hdr + 7]
        pkt.ethertype = etype
        if etype in (ETH_IPV4, ETH_IPV6):
            ip = parse_ip(data, hdr + 8)
            if ip is not None:
                ip.src_mac, ip.dst_mac, ip.ethertype = src, dst, etype
                return ip
    return pkt
