"""GENEVE (RFC 8926, catalog §6): overlay also used for mirroring (GCP out-of-band mirroring).

The option classes name the vendor that built the packet, so they are reported as facts.  Some
name a use that is no mirror at all: AWS Gateway Load Balancer (class 0x0108) steers the
originals inline through an appliance and back, so those packets are a steering tunnel.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from detector.decode.frames import ETH_IPV4, ETH_IPV6, InnerPacket, carried_frame
from detector.prefilter_route import byte_values
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    InnerLink,
    PacketContext,
    ProtocolSpec,
    Reject,
    wireshark,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# ver(2) opt_len(6) | O(1) C(1) reserved(6) | protocol type(16) | VNI(24) reserved(8)
HEADER = struct.Struct("!BBHI")
# class(16) | C(1) type(7) | reserved(3) length(5, 4-byte words)
OPTION = struct.Struct("!HBB")
FLAG_O = 0x80
FLAG_C = 0x40
RESERVED_BITS = 0x3F
PROTO_TEB = 0x6558
PROTO_LINKS: dict[int, InnerLink] = {PROTO_TEB: "ethernet", ETH_IPV4: "ip", ETH_IPV6: "ip"}
IP_VERSIONS = {ETH_IPV4: 4, ETH_IPV6: 6}
MIN_INNER = 14  # the shortest carried packet (Ethernet header; an IPv4 header is longer)

# Option class registry entries named in tcpdump's print-geneve.c.
OPTION_CLASSES = {
    0x0100: "Linux",
    0x0101: "Open vSwitch",
    0x0102: "OVN",
    0x0104: "VMware",
    0x0108: "AWS",
    0x0132: "Google",
    0x0133: "Google",
    0x0134: "Google",
    0x0135: "Google",
}


# Option classes whose packets are steered traffic (the originals, diverted), never copies.
STEERING_OPTION_CLASSES = {
    0x0108: "AWS Gateway Load Balancer steering traffic through an appliance"
}


def _inner(proto: int, link: InnerLink, inner: bytes) -> InnerPacket | None:
    """The carried frame when it is what the protocol field announces."""
    frame = carried_frame(link, inner)
    if frame is None or (proto != PROTO_TEB and frame.ip_version != IP_VERSIONS[proto]):
        return None
    return frame


def _walk_options(data: bytes, start: int, end: int) -> list[tuple[int, int]] | None:
    """(class, type) of each option in data[start:end]; None unless they tile it exactly."""
    found: list[tuple[int, int]] = []
    off = start
    while off < end:
        if end - off < OPTION.size:
            return None
        opt_class, opt_type, opt_len = OPTION.unpack_from(data, off)
        off += OPTION.size + (opt_len & 0x1F) * 4
        found.append((opt_class, opt_type))
    return found if off == end else None


GENEVE = ProtocolSpec(
    "geneve",
    "ambiguous",
    sid=7,
    doc="geneve.md",
    samples=("geneve-mirror.pcap", "gwlb-geneve.pcap"),
    wireshark=wireshark("geneve", "geneve", 6081),
)


class Geneve(Decoder):
    name = "geneve"
    emits = (GENEVE,)
    kind = "mirror"
    transport = "udp"
    ports = frozenset({6081})
    priority = 40

    first_bytes = byte_values(0xC0, 0)  # version 0
    second_bytes = byte_values(RESERVED_BITS, 0)

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        b0, b2, b3 = head[:, 0], head[:, 2], head[:, 3]
        proto = ((b2 == 0x65) & (b3 == 0x58)) | ((b2 == 0x08) & (b3 == 0x00))
        proto |= (b2 == 0x86) & (b3 == 0xDD)
        need = HEADER.size + (b0 & 0x3F).astype(length.dtype) * 4 + MIN_INNER
        return (
            ((b0 & 0xC0) == 0)
            & ((head[:, 1] & RESERVED_BITS) == 0)
            & (head[:, 7] == 0)
            & proto
            & (length >= need)
        )

    def check(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | Reject:
        if len(payload) < HEADER.size:
            return Reject("short")
        b0, b1, proto, word = HEADER.unpack_from(payload)
        link = PROTO_LINKS.get(proto)
        if b0 >> 6:
            return Reject("version")
        if b1 & RESERVED_BITS or word & 0xFF:
            return Reject("reserved-bits")
        if link is None:
            return Reject("protocol")
        end = HEADER.size + (b0 & 0x3F) * 4
        if len(payload) < end + MIN_INNER:
            return Reject("short")
        options = _walk_options(payload, HEADER.size, end)
        if options is None:
            return Reject("options")
        inner = bytes(payload[end:])
        frame = _inner(proto, link, inner)
        if frame is None:
            return Reject("carried-frame")
        vni = word >> 8
        classes = list(dict.fromkeys(c for c, _ in options))
        names = [OPTION_CLASSES.get(c, f"0x{c:04x}") for c in classes]
        opts = f", option classes {', '.join(names)}" if names else ""
        facts: dict[str, object] = {
            "option_classes": classes,
            "option_types": [t for _, t in options],
            "control": bool(b1 & FLAG_O),
            "critical": bool(b1 & FLAG_C),
            "proto": proto,
        }
        steering = [STEERING_OPTION_CLASSES[c] for c in classes if c in STEERING_OPTION_CLASSES]
        if steering:
            facts["steering"] = steering[0]
        return Decoded(
            protocol=self.name,
            kind="tunnel" if steering else self.kind,
            header=(
                f"{payload[:8].hex(' ')}: GENEVE version 0, options {end - HEADER.size} bytes"
                f"{opts}, O {b1 >> 7}, C {(b1 >> 6) & 1}, protocol 0x{proto:04x} ({link}), "
                f"VNI {vni}"
            ),
            session={"vni": vni},
            carried=[Carried(link, inner, parsed=frame)],
            facts=facts,
            strength=0.9,
            header_len=end,
        )


DECODERS: list[Decoder] = [Geneve()]
