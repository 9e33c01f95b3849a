"""IP directly inside IP: IPv4 in IPv4 (protocol 4, RFC 2003), IPv4 in IPv6 (4 under IPv6),
IPv6 in IPv4 (protocol 41, 6in4/6to4/ISATAP/6rd) and IPv6 in IPv6 (41 under IPv6).

The IP payload must be exactly the IP packet the protocol number names.
"""

from __future__ import annotations

from detector.decode.frames import ip_str
from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head, ip_version_at

# (inner version, outer is IPv6) -> tunnel name
NAMES = {(4, False): "ipip", (4, True): "4in6", (6, False): "6in4", (6, True): "6in6"}


IPIP = ProtocolSpec("ipip", "tunnel", sid=67, doc="tunnels.md", samples=("ipip.pcap",))
SIX_IN_4 = ProtocolSpec("6in4", "tunnel", sid=68, doc="tunnels.md", samples=("6in4.pcap",))
FOUR_IN_6 = ProtocolSpec("4in6", "tunnel", sid=69, doc="tunnels.md", samples=("4in6.pcap",))
# Reported before it had a number of its own: 710 is what EVE gave it then (500 + crc32 % 500).
SIX_IN_6 = ProtocolSpec("6in6", "tunnel", sid=710, doc="tunnels.md", samples=("6in6.pcap",))


class IpInIpDecoder(Decoder):
    name = "ip-in-ip"
    emits = (IPIP, SIX_IN_4, FOUR_IN_6, SIX_IN_6)
    kind = "tunnel"
    transport = "ip"
    ip_protos = frozenset({4, 41})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        inner = 4 if ctx.ip_proto == 4 else 6
        if ip_version_at(payload, 0) != inner:
            return None
        src, dst = (12, 16) if inner == 4 else (8, 24)
        width = 4 if inner == 4 else 16
        protocol = NAMES[(inner, ":" in ctx.src)]
        return Decoded(
            protocol=protocol,
            kind="tunnel",
            header=f"{hex_head(payload, 4)}: IPv{inner} packet from "
            f"{ip_str(bytes(payload[src : src + width]))} to "
            f"{ip_str(bytes(payload[dst : dst + width]))} inside IP protocol {ctx.ip_proto}",
            carried=[Carried(link="ip", data=bytes(payload))],
        )


DECODERS: list[Decoder] = [IpInIpDecoder()]
