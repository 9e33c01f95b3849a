"""GRE-in-UDP (RFC 8086), UDP 4754: a GRE header (version 0) as the UDP payload.

Flags C (checksum + reserved), K (key), S (sequence) each add 4 bytes; the other reserved bits
and the version must be 0.  The protocol type says what follows, and that is checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from detector.decode.lut import lut
from detector.prefilter_route import byte_values
from detector.protocols.base import Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.li_common import be16
from detector.protocols.nsh import (
    NEXT_ETHERNET,
    NEXT_IPV4,
    NEXT_IPV6,
    NEXT_MPLS,
    NEXT_NSH,
    carried_by_next_protocol,
)
from detector.protocols.tunnel_common import hex_head

if TYPE_CHECKING:
    import numpy.typing as npt

FLAG_C, FLAG_K, FLAG_S = 0x8000, 0x2000, 0x1000
# Routing present, strict source route, recursion, reserved0 and version: all zero.
MUST_BE_ZERO = 0x4FFF
# Protocol types handled, as the next-protocol numbers NSH and VXLAN-GPE use for the same things.
AS_NEXT_PROTOCOL = {
    0x0800: NEXT_IPV4,
    0x86DD: NEXT_IPV6,
    0x6558: NEXT_ETHERNET,
    0x894F: NEXT_NSH,
    0x8847: NEXT_MPLS,
    0x8848: NEXT_MPLS,
}
PROTOCOL_TYPES = tuple(AS_NEXT_PROTOCOL)


_TYPES_LUT = lut(PROTOCOL_TYPES, bits=16)


GRE_UDP = ProtocolSpec("gre-udp", "tunnel", sid=62, doc="tunnels.md", samples=("gre-udp.pcap",))


class GreUdpDecoder(Decoder):
    name = "gre-udp"
    emits = (GRE_UDP,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({4754})

    first_bytes = byte_values(0x4F, 0)
    second_bytes = frozenset({0})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return (
            ((head[:, 0] & 0x4F) == 0)
            & (head[:, 1] == 0)
            & _TYPES_LUT[be16(head, 2)]
            & (length >= 24)
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < 24:  # GRE header + the smallest IP header
            return None
        flags, proto = (payload[0] << 8) | payload[1], (payload[2] << 8) | payload[3]
        if flags & MUST_BE_ZERO or proto not in PROTOCOL_TYPES:
            return None
        off = 4
        session: dict[str, int | str] = {"gre_proto": proto}
        if flags & FLAG_C:
            off += 4
        if flags & FLAG_K:
            session["key"] = int.from_bytes(payload[off : off + 4], "big")
            off += 4
        facts: dict[str, object] = {}
        if flags & FLAG_S:
            facts["seq"] = int.from_bytes(payload[off : off + 4], "big")
            off += 4
        carried = carried_by_next_protocol(payload, off, AS_NEXT_PROTOCOL[proto])
        if carried is None:
            return None
        return Decoded(
            protocol="gre-udp",
            kind="tunnel",
            header=f"{hex_head(payload, 4)}: GRE-in-UDP, flags 0x{flags:04x}, "
            f"protocol type 0x{proto:04x}",
            session=session,
            carried=[carried],
            facts=facts,
            header_len=len(payload) - len(carried.data),
        )


DECODERS: list[Decoder] = [GreUdpDecoder()]
