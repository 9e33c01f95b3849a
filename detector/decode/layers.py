"""Where the IP header sits: link layouts, shims after an EtherType, IPv6 extension headers.

The layouts are data, read by two interpreters that must agree byte for byte: the vectorised
block walk of :mod:`detector.decode.headers` (a whole batch at once) and the scalar walk below
(one frame: carried copies, samples, explanations).  Both end on a *type* in EtherType space:
0x0800 or 0x86DD means an IP header starts at the position reached (its version nibble decides
which), anything else means the frame carries no IP this walk can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
IP_ETHERTYPES = (ETH_IPV4, ETH_IPV6)

# Link types (www.tcpdump.org/linktypes.html)
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP = 0, 1, 101, 108
LINK_RAW_ALIASES = (12, 14, 101)
LINK_IPV4, LINK_IPV6 = 228, 229
LINK_SLL, LINK_SLL2 = 113, 276
LINK_PPP, LINK_PPP_HDLC, LINK_PPPOE, LINK_C_HDLC, LINK_PPP_DIR = 9, 50, 51, 104, 192

# How a link header names what follows it: an EtherType, a PPP protocol number, a BSD address
# family (NULL/LOOP), or nothing (the IP header follows, its version nibble says which).
TypeSpace = Literal["ethertype", "ppp", "family", "ip"]


@dataclass(repr=False, eq=False, slots=True)
class LinkLayout:
    """A pcap link type's header: where its type field sits and where the next layer starts."""

    name: str
    linktypes: tuple[int, ...]
    header: int  # bytes of link header before the next layer
    type_at: int  # offset of the 16-bit type field (the family's first byte for NULL/LOOP)
    space: TypeSpace
    # An optional HDLC address and control (ff 03) before everything, shifting it by 2.
    hdlc_prefix: bool = False


LINK_LAYOUTS: tuple[LinkLayout, ...] = (
    LinkLayout("ethernet", (LINK_ETHERNET,), header=14, type_at=12, space="ethertype"),
    LinkLayout("linux-sll", (LINK_SLL,), header=16, type_at=14, space="ethertype"),
    LinkLayout("linux-sll2", (LINK_SLL2,), header=20, type_at=0, space="ethertype"),
    LinkLayout("raw", (*LINK_RAW_ALIASES, LINK_IPV4, LINK_IPV6), header=0, type_at=0, space="ip"),
    LinkLayout("null", (LINK_NULL, LINK_LOOP), header=4, type_at=0, space="family"),
    LinkLayout("ppp", (LINK_PPP, LINK_PPP_HDLC), 2, 0, "ppp", hdlc_prefix=True),
    LinkLayout("pppoe", (LINK_PPPOE,), header=8, type_at=6, space="ppp"),
    LinkLayout("cisco-hdlc", (LINK_C_HDLC,), header=4, type_at=2, space="ethertype"),
    LinkLayout("ppp-direction", (LINK_PPP_DIR,), header=3, type_at=1, space="ppp"),
)
LAYOUT_OF: dict[int, LinkLayout] = {lt: lay for lay in LINK_LAYOUTS for lt in lay.linktypes}
KNOWN_LINKS = frozenset(LAYOUT_OF)

# PPP protocol numbers of IP (RFC 1332, RFC 5072).
PPP_TO_ETHERTYPE = {0x0021: ETH_IPV4, 0x0057: ETH_IPV6}
# BSD address families of IP in NULL/LOOP headers: AF_INET, and AF_INET6 as BSDs number it.
IP_FAMILIES = frozenset({2, 24, 28, 30})
# The version nibble after an MPLS label stack says what the stack carries.
NIBBLE_TO_ETHERTYPE = {4: ETH_IPV4, 6: ETH_IPV6}

# What the next type field of a shim holds: an EtherType, a PPP protocol, or (MPLS) the label's
# bottom-of-stack bit: clear, another label follows; set, the IP version nibble comes next.
NextSpace = Literal["ethertype", "ppp", "mpls"]


@dataclass(frozen=True, slots=True)
class Shim:
    """A header an EtherType announces that sits between the link header and IP."""

    name: str
    ethertypes: tuple[int, ...]
    length: int  # bytes of one such header
    next_at: int  # offset in it of the next type (MPLS: of the byte holding the S bit)
    space: NextSpace
    max_depth: int  # more of them in a row than this: not followed


SHIMS: tuple[Shim, ...] = (
    Shim("vlan", (0x8100, 0x88A8, 0x9100, 0x9200), 4, 2, "ethertype", max_depth=8),
    Shim("pppoe-session", (0x8864,), 8, 6, "ppp", max_depth=1),
    Shim("mpls", (0x8847, 0x8848), 4, 2, "mpls", max_depth=16),
)
SHIM_OF: dict[int, Shim] = {t: s for s in SHIMS for t in s.ethertypes}
VLAN_SHIM = SHIMS[0]
VLAN_ETHERTYPES = VLAN_SHIM.ethertypes
MPLS_ETHERTYPES = SHIMS[2].ethertypes
PPPOE_SESSION = SHIMS[1].ethertypes[0]
# A shim header per step; a walk ends after at most this many steps.
MAX_SHIM_STEPS = sum(s.max_depth for s in SHIMS)

# IPv6 extension headers the walk steps over, by how their length is written (RFC 8200 4.1,
# RFC 4302 for AH).  ESP (50) and no-next-header (59) end the walk: nothing readable follows.
EXT_UNITS_OF_8 = 1  # (Hdr Ext Len + 1) * 8: hop-by-hop, routing, destination options, ...
EXT_FIXED_8 = 2  # the fragment header
EXT_AH = 3  # (Payload Len + 2) * 4
IPV6_EXT_RULES = {
    0: EXT_UNITS_OF_8,  # hop-by-hop options
    43: EXT_UNITS_OF_8,  # routing
    44: EXT_FIXED_8,  # fragment
    51: EXT_AH,  # authentication header
    60: EXT_UNITS_OF_8,  # destination options
    135: EXT_UNITS_OF_8,  # mobility
    139: EXT_UNITS_OF_8,  # HIP
    140: EXT_UNITS_OF_8,  # shim6
    253: EXT_UNITS_OF_8,  # experimentation (RFC 3692)
    254: EXT_UNITS_OF_8,
}
IPV6_FRAGMENT = 44
MAX_IPV6_EXT = 8  # extension headers followed before the walk gives up
# Every extension header is at least 8 bytes: that much must be captured to step over one.
IPV6_EXT_MIN = 8


def ipv6_ext_length(rule: int, len_byte: int) -> int:
    """Bytes of an extension header of ``rule`` whose length byte (its second) is ``len_byte``."""
    if rule == EXT_FIXED_8:
        return 8
    if rule == EXT_AH:
        return (len_byte + 2) * 4
    return (len_byte + 1) * 8


def ipv6_chain(data: bytes, off: int) -> tuple[list[tuple[int, int]], int, int]:
    """The extension headers after the IPv6 header at ``off``: ((type, offset) of each stepped
    over, the next header after them, where it starts).  It starts at -1 when an extension
    header is cut short; the walk ends on a header no rule steps over or after MAX_IPV6_EXT."""
    chain: list[tuple[int, int]] = []
    nh, pos = data[off + 6], off + 40
    for _ in range(MAX_IPV6_EXT):
        rule = IPV6_EXT_RULES.get(nh)
        if rule is None:
            break
        if len(data) < pos + IPV6_EXT_MIN:
            return chain, nh, -1
        chain.append((nh, pos))
        nh, pos = data[pos], pos + ipv6_ext_length(rule, data[pos + 1])
    return chain, nh, pos


# Transport protocols with 16-bit ports first: TCP, UDP, SCTP, UDP-Lite.
PORT_PROTOCOLS = (6, 17, 132, 136)
# Fixed transport header lengths (UDP, UDP-Lite, the SCTP common header); TCP says its own in
# its data offset, the high nibble of its byte 12 (20 bytes when that byte is not captured).
TRANSPORT_HEADER_LENGTH = {17: 8, 136: 8, 132: 12}
TCP_DATA_OFFSET_AT = 12
IP_PROTO_GRE = 47


def be16_at(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


def link_start(data: bytes, linktype: int, off: int = 0) -> tuple[int, int]:
    """(position after the link header, type in EtherType space) of a frame of ``linktype``
    starting at ``off``; type 0 when the header is cut short or names no known next layer."""
    lay = LAYOUT_OF.get(linktype)
    if lay is None:
        return -1, 0
    pos = off
    if lay.hdlc_prefix and len(data) >= off + 2 and data[off] == 0xFF and data[off + 1] == 0x03:
        pos += 2
    if len(data) < pos + lay.header:
        return -1, 0
    at = pos + lay.type_at
    pos += lay.header
    if lay.space == "ip":
        return pos, ETH_IPV4
    if lay.space == "family":
        fam = data[at] if data[at] else data[at + 3]  # host byte order of the writer
        return pos, ETH_IPV4 if fam in IP_FAMILIES else 0
    etype = be16_at(data, at)
    if lay.space == "ppp":
        etype = PPP_TO_ETHERTYPE.get(etype, 0)
    return pos, etype


def shim_next(shim: Shim, data: bytes, pos: int, etype: int) -> int:
    """The type after one ``shim`` header at ``pos`` (wholly captured) announced by ``etype``."""
    if shim.space == "ethertype":
        return be16_at(data, pos + shim.next_at)
    if shim.space == "ppp":
        return PPP_TO_ETHERTYPE.get(be16_at(data, pos + shim.next_at), 0)
    if not data[pos + shim.next_at] & 1:
        return etype  # not the bottom of the stack: another label
    after = pos + shim.length
    return NIBBLE_TO_ETHERTYPE.get(data[after] >> 4, 0) if len(data) > after else 0


def walk_shims(data: bytes, pos: int, etype: int) -> tuple[int, int, tuple[int, ...]]:
    """Step over the shims from ``pos`` on: (position reached, its type, VLAN ids outermost
    first).  A shim cut short or deeper than its bound ends the walk on the shim's type."""
    run, prev = 0, None  # headers of this shim in a row so far (a shim never comes back)
    vlans: tuple[int, ...] = ()
    while (shim := SHIM_OF.get(etype)) is not None:
        run = run if shim is prev else 0
        if len(data) < pos + shim.length or run >= shim.max_depth:
            break
        run, prev = run + 1, shim
        if shim is VLAN_SHIM:
            vlans += (be16_at(data, pos) & 0x0FFF,)
        etype = shim_next(shim, data, pos, etype)
        pos += shim.length
    return pos, etype, vlans


def ip_offset(data: bytes, linktype: int, off: int = 0) -> int:
    """Where the IP header of a frame of ``linktype`` starts, or -1 when the walk reaches none."""
    pos, etype = link_start(data, linktype, off)
    if pos < 0:
        return -1
    pos, etype, _ = walk_shims(data, pos, etype)
    return pos if etype in IP_ETHERTYPES else -1


def vlan_ids(data: bytes, linktype: int, off: int = 0) -> tuple[int, ...]:
    """VLAN ids of a frame of ``linktype`` at ``off``, outermost first."""
    pos, etype = link_start(data, linktype, off)
    return walk_shims(data, pos, etype)[2] if pos >= 0 else ()
