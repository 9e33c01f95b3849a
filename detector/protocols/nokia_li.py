"""Nokia / Alcatel-Lucent SR OS routable lawful-intercept shim (IP/UDP/shim).

    0  MHV(2 bits); MHV 0: intercept id (30 bits); MHV 1: direction bit + intercept id (29 bits)
    4  session id
    8  intercepted Ethernet frame (or IP packet with an "l3-only" configuration)
Layout as parsed by OpenLI's alushim_parser.  Without a magic number, the carried frame must hold
an IP packet ending where the datagram ends (allowing Ethernet padding and FCS).  The IP-only form
is byte-for-byte a jmirror packet, which runs first; this decoder takes what that one refuses.
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
)
from detector.protocols.li_common import (
    MIRROR_HEADER,
    carried_kinds,
    hexbytes,
    inner_link,
    mirror_header,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HEADER_LEN = MIRROR_HEADER.size
# MHV 1 direction bit: 0 ingress (from the subscriber), 1 egress (to the subscriber).
DIRECTION = {0: "from-target", 1: "to-target"}


NOKIA_LI = ProtocolSpec(
    "nokia-li",
    "shim",
    sid=25,
    doc="nokia-li.md",
    samples=("nokia-li.pcap",),
    no_dissector="Wireshark has no dissector for the Nokia (Alcatel-Lucent) LI shim.",
)


class NokiaLiDecoder(Decoder):
    name: ClassVar[str] = "nokia-li"
    emits = (NOKIA_LI,)
    kind: ClassVar[Kind] = "intercept"
    transport: ClassVar[Transport] = "udp"
    priority: ClassVar[int] = 65
    heuristic: ClassVar[bool] = True

    first_bytes = byte_values(0x80, 0)

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        ip, ethernet = carried_kinds(head, length, HEADER_LEN)
        return ((head[:, 0] >> 6) <= 1) & (ip | ethernet)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        found = mirror_header(payload)
        if found is None:
            return None
        mhv, word, session_id = found
        link = inner_link(payload, HEADER_LEN)
        if link is None:
            return None
        direction: str | None = None
        if mhv == 1:
            intercept_id = word & 0x1FFF_FFFF
            direction = DIRECTION[(word >> 29) & 1]
        else:
            intercept_id = word & 0x3FFF_FFFF
        facts: dict[str, object] = {"payload": link}
        if direction:
            facts["direction"] = direction
        inner = "an IP packet" if link == "ip" else "an Ethernet frame"
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(payload, HEADER_LEN)}: Nokia LI shim MHV {mhv}"
                f"{', ' + direction if direction else ''}, intercept id {intercept_id}, "
                f"session id {session_id}; {inner} follows"
            ),
            session={"intercept_id": intercept_id, "session_id": session_id, "mhv": mhv},
            carried=[Carried(link, payload[HEADER_LEN:], direction=direction)],
            facts=facts,
            strength=0.6 if link == "ethernet" else 0.5,
            header_len=HEADER_LEN,
        )


DECODERS = [NokiaLiDecoder()]
