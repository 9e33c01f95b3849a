"""RtBrick / Broadcom QMX lawful-intercept shim (SHIM over UDP, as received by BNG Blaster).

One 32-bit word, then the intercepted packet:
    D (3 bits)   direction: 0 keepalive, 2 downstream, 3 upstream
    PT (4 bits)  packet type: 5 IPv4, 6 IPv6, 7 Ethernet
    SPT (3 bits) sub-type of Ethernet: 1 single-tagged, 2 double-tagged, 3 untagged
    LIID (22 bits)
The packet type must agree with what follows, and the packet must fill the datagram.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from detector.decode.layers import LINK_ETHERNET, vlan_ids
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    InnerLink,
    Kind,
    PacketContext,
    ProtocolSpec,
    Transport,
)
from detector.protocols.li_common import (
    carried_kinds,
    ether_fills,
    hexbytes,
    ip_fills,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HEADER_LEN = 4
KEEPALIVE, DOWNSTREAM, UPSTREAM = 0, 2, 3
DIRECTIONS = {KEEPALIVE: "keepalive", DOWNSTREAM: "downstream", UPSTREAM: "upstream"}
# Downstream traffic goes to the subscriber (the target).
CARRIED_DIRECTION = {DOWNSTREAM: "to-target", UPSTREAM: "from-target"}
PT_IPV4, PT_IPV6, PT_ETHERNET = 5, 6, 7
PACKET_TYPES = (PT_IPV4, PT_IPV6, PT_ETHERNET)
SUBTYPES = {1: "single-tagged", 2: "double-tagged", 3: "untagged"}


def vlan_tags(data: bytes, off: int) -> int:
    return len(vlan_ids(data, LINK_ETHERNET, off))


def payload_fits(payload: bytes, pt: int, spt: int) -> InnerLink | None:
    if pt == PT_ETHERNET:
        if not ether_fills(payload, HEADER_LEN):
            return None
        # When the sub-type names the tagging, the frame must have exactly that many tags.
        want = {1: 1, 2: 2, 3: 0}.get(spt)
        if want is not None and vlan_tags(payload, HEADER_LEN) != want:
            return None
        return "ethernet"
    if ip_fills(payload, HEADER_LEN) and payload[HEADER_LEN] >> 4 == pt - 1:
        return "ip"
    return None


BCM_LI = ProtocolSpec(
    "bcm-li",
    "shim",
    sid=26,
    doc="bcm-li.md",
    samples=("bcm-li.pcap",),
    no_dissector="Wireshark has no dissector for the RtBrick/Broadcom LI shim.",
)


class BcmLiDecoder(Decoder):
    name: ClassVar[str] = "bcm-li"
    emits = (BCM_LI,)
    kind: ClassVar[Kind] = "intercept"
    transport: ClassVar[Transport] = "udp"
    priority: ClassVar[int] = 62
    heuristic: ClassVar[bool] = True

    # A direction and a packet type (the sub-type's first bit either way).
    first_bytes = frozenset(
        b for b in range(256) if b >> 5 in DIRECTIONS and (b >> 1) & 0x0F in PACKET_TYPES
    )

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        d = head[:, 0] >> 5
        pt = (head[:, 0] >> 1) & 0x0F
        ip, ethernet = carried_kinds(head, length, HEADER_LEN)
        data = ((d == DOWNSTREAM) | (d == UPSTREAM)) & (
            ((pt == PT_ETHERNET) & ethernet) | (((pt == PT_IPV4) | (pt == PT_IPV6)) & ip)
        )
        keepalive = (
            (d == KEEPALIVE) & (pt >= PT_IPV4) & (pt <= PT_ETHERNET) & (length == HEADER_LEN)
        )
        return data | keepalive

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < HEADER_LEN:
            return None
        word = int.from_bytes(payload[:HEADER_LEN], "big")
        d, pt, spt, liid = word >> 29, (word >> 25) & 0x0F, (word >> 22) & 0x07, word & 0x3FFFFF
        if d not in DIRECTIONS or pt not in PACKET_TYPES:
            return None
        carried: list[Carried] = []
        if d == KEEPALIVE:
            # A keepalive is the shim alone: four bytes, so only weak evidence on its own.
            if len(payload) != HEADER_LEN:
                return None
            what, strength = "keepalive", 0.3
        else:
            link = payload_fits(payload, pt, spt)
            if link is None:
                return None
            carried.append(Carried(link, payload[HEADER_LEN:], direction=CARRIED_DIRECTION[d]))
            what = f"{DIRECTIONS[d]} {'Ethernet frame' if link == 'ethernet' else 'IP packet'}"
            strength = 0.7
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(payload, HEADER_LEN)}: BCM QMX LI shim, direction {d} "
                f"({DIRECTIONS[d]}), packet type {pt}, sub-type {spt}, LIID {liid}; {what}"
            ),
            session={"liid": liid},
            carried=carried,
            facts={
                "direction": DIRECTIONS[d],
                "packet_type": pt,
                "sub_type": SUBTYPES.get(spt, spt),
            },
            strength=strength,
            header_len=HEADER_LEN,
        )


DECODERS = [BcmLiDecoder()]
