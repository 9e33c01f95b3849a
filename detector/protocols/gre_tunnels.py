"""Routed GRE tunnels (IP 47): IPv4/IPv6 over GRE, PPTP's enhanced GRE carrying PPP, and GRE
keep-alives.  (GRE 0x6558 frames belong to the bridging/mirror decoders.)

The GRE header is parsed before these run; ``ctx`` holds its flags word, key and sequence.
A Cisco keep-alive is an IPv4 packet addressed back to the sender that itself holds a GRE
header with protocol type 0; the far end forwards it back as plain GRE with type 0 and nothing
after the header.  Enhanced GRE (RFC 2637): version 1, key = payload length (16) + call id (16),
optional acknowledgement number (A bit, 0x0080 in the flags word).
"""

from __future__ import annotations

from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head, ip_version_at, ppp_at

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
GRE_IP = 47
FLAG_ACK = 0x0080


def _key_session(ctx: PacketContext) -> dict[str, int | str]:
    return {} if ctx.gre_key is None else {"key": ctx.gre_key}


def _is_keepalive(data: bytes) -> bool:
    """An IPv4 packet holding GRE with protocol type 0 (and nothing after its header)."""
    if ip_version_at(data, 0) != 4 or data[9] != GRE_IP:
        return False
    gre = (data[0] & 0x0F) * 4
    return len(data) >= gre + 4 and data[gre + 2 : gre + 4] == b"\x00\x00"


GRE_IP_SPEC = ProtocolSpec("gre-ip", "tunnel", sid=60, doc="tunnels.md", samples=("gre-ip.pcap",))
GRE_PPP = ProtocolSpec("gre-ppp", "tunnel", sid=61, doc="tunnels.md", samples=("gre-ppp.pcap",))
GRE_KEEPALIVE = ProtocolSpec(
    "gre-keepalive", "tunnel", sid=63, doc="tunnels.md", samples=("gre-keepalive.pcap",)
)


class GreIpDecoder(Decoder):
    name = "gre-ip"
    emits = (GRE_IP_SPEC,)
    kind = "tunnel"
    transport = "gre"
    gre_types = frozenset({ETH_IPV4, ETH_IPV6})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        want = 4 if ctx.gre_proto == ETH_IPV4 else 6
        if ip_version_at(payload, 0) != want:
            return None
        keepalive = want == 4 and _is_keepalive(payload)
        return Decoded(
            protocol="gre-ip",
            kind="tunnel",
            header=f"{hex_head(payload, 4)}: IPv{want} packet after a GRE header with protocol "
            f"type 0x{ctx.gre_proto:04x}" + (" (keep-alive)" if keepalive else ""),
            session=_key_session(ctx),
            carried=[Carried(link="ip", data=bytes(payload))],
            facts={"keepalive": keepalive},
        )


class GreKeepaliveDecoder(Decoder):
    name = "gre-keepalive"
    emits = (GRE_KEEPALIVE,)
    kind = "tunnel"
    transport = "gre"
    gre_types = frozenset({0x0000})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if payload:
            return None
        return Decoded(
            protocol="gre-keepalive",
            kind="tunnel",
            header="GRE header with protocol type 0x0000 and no payload: a returned keep-alive",
            session=_key_session(ctx),
            facts={"keepalive": True},
            strength=0.6,
        )


class GrePppDecoder(Decoder):
    name = "gre-ppp"
    emits = (GRE_PPP,)
    kind = "tunnel"
    transport = "gre"
    gre_types = frozenset({0x880B})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        session: dict[str, int | str] = {}
        if ctx.gre_key is not None:
            plen, call_id = ctx.gre_key >> 16, ctx.gre_key & 0xFFFF
            session["call_id"] = call_id
            if plen < len(payload):  # the length covers the payload (more if cut short)
                return None
        if not payload and ctx.gre_flags & FLAG_ACK:
            carried: list[Carried] = []  # acknowledgement only
        elif ppp_at(payload, 0) >= 0:
            carried = [Carried(link="ppp", data=bytes(payload))]
        else:
            return None
        return Decoded(
            protocol="gre-ppp",
            kind="tunnel",
            header=f"{hex_head(payload, 4)}: PPP frame after an enhanced GRE (PPTP) "
            f"header" + (f", call id {session['call_id']}" if session else ""),
            session=session,
            carried=carried,
            facts={"seq": ctx.gre_seq} if ctx.gre_seq is not None else {},
            strength=1.0 if ctx.gre_key is not None else 0.7,
        )


DECODERS: list[Decoder] = [GreIpDecoder(), GreKeepaliveDecoder(), GrePppDecoder()]
