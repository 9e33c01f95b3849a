"""NSH, Network Service Header (RFC 8300): service function chaining, EtherType/GRE 0x894F, and
inside VXLAN-GPE.

Base header: version (2 bits, 0), O, U, TTL (6), length (6 bits, 4-byte words), 4 unassigned
bits, MD type (1 fixed 16-byte context: length 6; 2 variable TLVs: length >= 2), next protocol
(1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH, 5 MPLS).  Then the service path header: SPI (24 bits) and
service index (8).  VXLAN-GPE numbers its next protocol the same way.
"""

from __future__ import annotations

from detector.decode.frames import ethernet_valid
from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.mpls_tunnel import carried_after_stack, label_stack
from detector.protocols.tunnel_common import hex_head, ip_version_at

NEXT_IPV4, NEXT_IPV6, NEXT_ETHERNET, NEXT_NSH, NEXT_MPLS = 1, 2, 3, 4, 5
NEXT_PROTOCOLS = (NEXT_IPV4, NEXT_IPV6, NEXT_ETHERNET, NEXT_NSH, NEXT_MPLS)
MD_TYPE_1_WORDS = 6


def parse_nsh(data: bytes, off: int) -> tuple[int, int, int, int] | None:
    """(service path id, service index, next protocol, offset of the payload) or None."""
    if len(data) < off + 8:
        return None
    words = data[off + 1] & 0x3F
    md_type, next_proto = data[off + 2], data[off + 3]
    if data[off] >> 6 or next_proto not in NEXT_PROTOCOLS:
        return None
    if not ((md_type == 1 and words == MD_TYPE_1_WORDS) or (md_type == 2 and words >= 2)):
        return None
    end = off + words * 4
    if end > len(data):
        return None
    spi = int.from_bytes(data[off + 4 : off + 7], "big")
    return spi, data[off + 7], next_proto, end


def carried_by_next_protocol(
    data: bytes, off: int, next_proto: int, depth: int = 0
) -> Carried | None:
    """What an NSH or VXLAN-GPE next-protocol value says follows at ``off``, if it is that."""
    if next_proto in (NEXT_IPV4, NEXT_IPV6):
        if ip_version_at(data, off) == (4 if next_proto == NEXT_IPV4 else 6):
            return Carried(link="ip", data=bytes(data[off:]))
    elif next_proto == NEXT_ETHERNET:
        if ethernet_valid(data, off, strict=True):
            return Carried(link="ethernet", data=bytes(data[off:]))
    elif next_proto == NEXT_MPLS:
        parsed = label_stack(data, off)
        if parsed is not None:
            return carried_after_stack(data, parsed[1])
    elif next_proto == NEXT_NSH and depth == 0:
        inner = parse_nsh(data, off)
        if inner is not None:
            return carried_by_next_protocol(data, inner[3], inner[2], depth + 1)
    return None


def decode_nsh(data: bytes, off: int, where: str) -> Decoded | None:
    parsed = parse_nsh(data, off)
    if parsed is None:
        return None
    spi, si, next_proto, end = parsed
    carried = carried_by_next_protocol(data, end, next_proto)
    if carried is None:
        return None
    return Decoded(
        protocol="nsh",
        kind="tunnel",
        header=f"{hex_head(data[off:], 8)}: NSH{where}, MD type {data[off + 2]}, "
        f"service path {spi}, index {si}, next protocol {next_proto}",
        session={"spi": spi},
        carried=[carried],
        facts={"si": si, "md_type": data[off + 2], "next_protocol": next_proto},
        header_len=len(data) - len(carried.data),
    )


# NSH steers packets along a chain of service functions.  The GRE decoder reports it as
# nsh; its own name keeps the number it was given.
NSH = ProtocolSpec("nsh", "steering", sid=79, doc="tunnels.md", samples=("nsh-gre.pcap",))
NSH_GRE = ProtocolSpec("nsh-gre", "steering", sid=83, doc="tunnels.md")


class NshGreDecoder(Decoder):
    name = "nsh-gre"
    emits = (NSH,)
    aliases = (NSH_GRE,)
    kind = "tunnel"
    transport = "gre"
    gre_types = frozenset({0x894F})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        return decode_nsh(payload, 0, " over GRE")


DECODERS: list[Decoder] = [NshGreDecoder()]
