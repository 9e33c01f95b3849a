"""Juniper jmirror / JUNOSe LI mirror header (RADIUS- or DTCP-initiated content mirroring).

    0  MHV(2 bits) + mirror/intercept id (30 bits)
    4  session id
    8  intercepted IPv4/IPv6 packet
The header has no magic, so the packet after it must fill the datagram exactly (IPv4 checksum
right).  MHV 2 and 3 are not defined and are rejected.  Juniper sends it with UDP checksum 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from detector.prefilter_route import byte_values
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    Kind,
    PacketContext,
    ProtocolSpec,
    Transport,
    wireshark,
)
from detector.protocols.li_common import (
    MIRROR_HEADER,
    carried_kinds,
    hexbytes,
    ip_fills,
    mirror_header,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HEADER_LEN = MIRROR_HEADER.size
ID_MASK = 0x3FFF_FFFF


# 30030 is Wireshark's default, the usual port; 6502 was seen in one real capture.
JMIRROR = ProtocolSpec(
    "jmirror",
    "shim",
    sid=24,
    doc="jmirror.md",
    samples=("jmirror.pcap",),
    ports=(30030,),
    wireshark=wireshark("jmirror", "jmirror", 30030),
)


class JmirrorDecoder(Decoder):
    name: ClassVar[str] = "jmirror"
    emits = (JMIRROR,)
    kind: ClassVar[Kind] = "intercept"
    transport: ClassVar[Transport] = "udp"
    # 30030 is Wireshark's default; 6502 was seen in a real capture (dpkt issue #504).
    ports: ClassVar[frozenset[int]] = frozenset({30030, 6502})
    priority: ClassVar[int] = 60
    heuristic: ClassVar[bool] = True

    first_bytes = byte_values(0x80, 0)

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return ((head[:, 0] >> 6) <= 1) & carried_kinds(head, length, HEADER_LEN)[0]

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        found = mirror_header(payload)
        if found is None or not ip_fills(payload, HEADER_LEN):
            return None
        mhv, word, session_id = found
        intercept_id = word & ID_MASK
        version = payload[HEADER_LEN] >> 4
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(payload, HEADER_LEN)}: Juniper mirror header MHV {mhv}, "
                f"intercept id {intercept_id}, session id {session_id}; "
                f"an IPv{version} packet fills the rest"
            ),
            session={"intercept_id": intercept_id, "session_id": session_id, "mhv": mhv},
            carried=[Carried("ip", payload[HEADER_LEN:])],
            facts={"ip_version": version, "udp_checksum_zero": ctx.udp_checksum == 0},
            # Juniper's documented outer UDP checksum 0 is a second, independent hint.
            strength=0.7 if ctx.udp_checksum == 0 else 0.6,
            header_len=HEADER_LEN,
        )


DECODERS = [JmirrorDecoder()]
