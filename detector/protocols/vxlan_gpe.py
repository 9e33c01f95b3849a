"""VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe), UDP 4790: VXLAN with a next-protocol byte.

Flags byte: 2 reserved bits, version (2 bits, 0), I (VNI valid), P (next protocol present),
B (BUM traffic), O (OAM).  Two reserved bytes, next protocol (1 IPv4, 2 IPv6, 3 Ethernet,
4 NSH, 5 MPLS), 24-bit VNI, a reserved byte.  The P bit is what tells it from plain VXLAN,
which the mirror decoders handle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from detector.decode.lut import lut
from detector.prefilter_route import byte_values
from detector.protocols.base import Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.nsh import NEXT_NSH, NEXT_PROTOCOLS, carried_by_next_protocol, decode_nsh
from detector.protocols.tunnel_common import hex_head

if TYPE_CHECKING:
    import numpy.typing as npt

HEADER_LEN = 8
FLAG_I, FLAG_P = 0x08, 0x04
# Reserved and version bits, and P: must read 0 0 0 0 . 1 . .
FLAGS_MASK, FLAGS_WANT = 0xF4, FLAG_P


_NEXT_LUT = lut(NEXT_PROTOCOLS)


VXLAN_GPE = ProtocolSpec(
    "vxlan-gpe", "tunnel", sid=78, doc="tunnels.md", samples=("vxlan-gpe-nsh.pcap",)
)


class VxlanGpeDecoder(Decoder):
    name = "vxlan-gpe"
    emits = (VXLAN_GPE,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({4790})

    first_bytes = byte_values(FLAGS_MASK, FLAGS_WANT)
    second_bytes = frozenset({0})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return (
            ((head[:, 0] & FLAGS_MASK) == FLAGS_WANT)
            & (head[:, 1] == 0)
            & (head[:, 2] == 0)
            & _NEXT_LUT[head[:, 3]]
            & (head[:, 7] == 0)
            & (length > HEADER_LEN)
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) <= HEADER_LEN:
            return None
        flags, next_proto = payload[0], payload[3]
        if flags & FLAGS_MASK != FLAGS_WANT or payload[1:3] != b"\x00\x00" or payload[7]:
            return None
        vni = int.from_bytes(payload[4:7], "big")
        session: dict[str, int | str] = {"vni": vni}
        facts: dict[str, object] = {"next_protocol": next_proto, "oam": bool(flags & 0x01)}
        if next_proto == NEXT_NSH:
            nsh = decode_nsh(payload, HEADER_LEN, " in VXLAN-GPE")
            if nsh is None:
                return None
            carried = nsh.carried[0]
            session["nsh_spi"] = nsh.session["spi"]
            facts["nsh_si"] = nsh.facts["si"]
        else:
            found = carried_by_next_protocol(payload, HEADER_LEN, next_proto)
            if found is None:
                return None
            carried = found
        return Decoded(
            protocol="vxlan-gpe",
            kind="tunnel",
            header=f"{hex_head(payload, 8)}: VXLAN-GPE flags 0x{flags:02x}, next protocol "
            f"{next_proto}, VNI {vni}",
            session=session,
            carried=[carried],
            facts=facts,
            header_len=len(payload) - len(carried.data),
        )


DECODERS: list[Decoder] = [VxlanGpeDecoder()]
