"""WCCP GRE redirection (draft-wilson-wrec-wccp-v2, GRE protocol type 0x883E).

A router running the Web Cache Communication Protocol diverts chosen packets (often web traffic)
to a cache engine inside GRE: WCCPv2 puts a 4-byte redirect header first (reserved bits, D and A
flags, service id, alternate and primary bucket), WCCPv1 none.  The originals are diverted, not
duplicated: the client's traffic is steered through the cache and leaves it again, so this is a
steering tunnel (info), never a mirror, whatever its packets hold.
"""

from __future__ import annotations

from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head, ip_version_at

GRE_WCCP = 0x883E
REDIRECT_HEADER_LEN = 4
FLAG_D, FLAG_A = 0x08, 0x04  # dynamic service, alternate bucket used (in the first byte)
WCCP_CONTROL_PORT = 2048
REGISTERED: dict[tuple[str, int], str] = {("udp", WCCP_CONTROL_PORT): "wccp"}


WCCP = ProtocolSpec("wccp", "steering", sid=86, doc="tunnels.md", samples=("wccp-redirect.pcap",))


class WccpRedirectDecoder(Decoder):
    name = "wccp"
    emits = (WCCP,)
    kind = "tunnel"
    transport = "gre"
    gre_types = frozenset({GRE_WCCP})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        # WCCPv2's redirect header starts with reserved bits, so an IPv4/IPv6 version nibble in
        # the first byte means the WCCPv1 form (the packet right after GRE).
        if ip_version_at(payload, 0) and payload[0] >> 4 in (4, 6):
            off, version = 0, 1
        elif ip_version_at(payload, REDIRECT_HEADER_LEN):
            off, version = REDIRECT_HEADER_LEN, 2
        else:
            return None
        session: dict[str, int | str] = {}
        what = "WCCPv1 redirect: the packet follows the GRE header"
        if version == 2:
            session["service_id"] = payload[1]
            what = (
                f"WCCPv2 redirect header: service id {payload[1]}, "
                f"{'dynamic' if payload[0] & FLAG_D else 'well-known'} service, "
                f"{'alternate' if payload[0] & FLAG_A else 'primary'} bucket "
                f"{payload[3] if not payload[0] & FLAG_A else payload[2]}"
            )
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=f"{hex_head(payload, 4)}: {what}",
            session=session,
            carried=[Carried("ip", bytes(payload[off:]))],
            facts={"version": version, "steering": "WCCP redirection to a cache engine"},
            header_len=off,
        )


DECODERS: list[Decoder] = [WccpRedirectDecoder()]
