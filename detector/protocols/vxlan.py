"""VXLAN (RFC 7348, catalog §5), with the group-based policy extension (draft-smith-vxlan-
group-policy).  Used for mirroring by AWS VPC Traffic Mirroring and Azure vTAP.

VXLAN-GPE (P bit 0x04 and a next-protocol byte) is a different format and is left to the
tunnel decoders: its flags byte never equals the two values accepted here.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from detector.decode.frames import carried_frame
from detector.prefilter_route import byte_values
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    PacketContext,
    ProtocolSpec,
    Reject,
    wireshark,
)

if TYPE_CHECKING:
    import numpy.typing as npt

# flags(8) | byte 1 (GBP: D and A bits) | group policy id(16) | VNI(24) reserved(8)
HEADER = struct.Struct("!BBHI")
FLAGS_I = 0x08  # VNI valid
FLAGS_GBP = 0x88  # G (group policy present) + I
GBP_BYTE1_RESERVED = 0xB7  # all but D (don't learn) 0x40 and A (policy applied) 0x08
MIN_LEN = HEADER.size + 14
# VXLAN-GPE's P bit and its next-protocol values (IPv4, IPv6, Ethernet, NSH, MPLS).
FLAG_GPE_P, GPE_NEXT_MAX = 0x04, 5
# EtherTypes of the frames a VXLAN with reserved bits set is believed to carry on its port:
# IPv4, ARP, 802.1Q, IPv6, 802.1ad.
INNER_ETHERTYPES = [0x0800, 0x0806, 0x8100, 0x86DD, 0x88A8]


VXLAN = ProtocolSpec(
    "vxlan",
    "ambiguous",
    sid=6,
    doc="vxlan.md",
    samples=("vxlan-mirror-8472.pcap", "vxlan-overlay.pcap"),
    wireshark=wireshark("vxlan", "vxlan", 4789),
)


class Vxlan(Decoder):
    name = "vxlan"
    emits = (VXLAN,)
    kind = "mirror"
    transport = "udp"
    ports = frozenset({4789, 8472})
    priority = 40

    first_bytes = frozenset({FLAGS_I, FLAGS_GBP})
    second_bytes = byte_values(GBP_BYTE1_RESERVED, 0)  # 0 without GBP

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        b0, b1 = head[:, 0], head[:, 1]
        plain = (b0 == FLAGS_I) & (b1 == 0) & (head[:, 2] == 0) & (head[:, 3] == 0)
        gbp = (b0 == FLAGS_GBP) & ((b1 & GBP_BYTE1_RESERVED) == 0)
        return (plain | gbp) & (head[:, 7] == 0) & (length >= MIN_LEN)

    def check(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | Reject:
        if len(payload) < MIN_LEN:
            return Reject("short")
        flags, byte1, policy, word = HEADER.unpack_from(payload)
        if word & 0xFF:
            return Reject("reserved-bits")
        if flags == FLAGS_I:
            if byte1 or policy:
                return Reject("reserved-bits")
        elif flags != FLAGS_GBP or byte1 & GBP_BYTE1_RESERVED:
            return Reject("flags")
        inner = bytes(payload[HEADER.size :])
        frame = carried_frame("ethernet", inner)
        if frame is None:
            return Reject("carried-frame")
        vni = word >> 8
        facts: dict[str, object] = {"flags": flags}
        gbp = ""
        if flags == FLAGS_GBP:
            facts["group_policy_id"] = policy
            facts["dont_learn"] = bool(byte1 & 0x40)
            facts["policy_applied"] = bool(byte1 & 0x08)
            gbp = f", group policy id {policy}"
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{payload[:8].hex(' ')}: VXLAN flags 0x{flags:02x} (VNI valid{gbp}), "
                f"VNI {vni}; Ethernet frame follows"
            ),
            session={"vni": vni},
            carried=[Carried("ethernet", inner, parsed=frame)],
            facts=facts,
            # No magic number: the flags, zero reserved bytes and a valid inner frame.
            strength=0.9,
            header_len=HEADER.size,
        )


class VxlanOnItsPort(Vxlan):
    """VXLAN on its registered ports whose reserved bits are not zero (older or vendor
    implementations, or bits used by an extension mirrorwatch does not know).  On another port
    such a header is too loose to call VXLAN; on 4789 or 8472 it is VXLAN all the same, which
    keeps it from being guessed as something else."""

    ports_required = True
    priority = 41

    first_bytes = byte_values(FLAGS_I, FLAGS_I)
    second_bytes = None  # any reserved bits

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        b0 = head[:, 0]
        # A VXLAN-GPE header (P bit and a next protocol) is that format, not VXLAN.
        gpe = ((b0 & FLAG_GPE_P) != 0) & (head[:, 3] >= 1) & (head[:, 3] <= GPE_NEXT_MAX)
        ethertype = (head[:, 20].astype(np.int64) << 8) | head[:, 21]
        return (
            ((b0 & FLAGS_I) != 0)
            & ~gpe
            & np.isin(ethertype, INNER_ETHERTYPES)
            & (length >= MIN_LEN)
        )

    def check(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | Reject:
        if len(payload) < MIN_LEN:
            return Reject("short")
        if not payload[0] & FLAGS_I:
            return Reject("flags")
        if payload[0] & FLAG_GPE_P and 1 <= payload[3] <= GPE_NEXT_MAX:
            return Reject("vxlan-gpe")
        if ctx.dport not in self.ports and ctx.sport not in self.ports:
            return Reject("port")
        if int.from_bytes(payload[20:22], "big") not in INNER_ETHERTYPES:
            return Reject("ethertype")
        inner = bytes(payload[HEADER.size :])
        frame = carried_frame("ethernet", inner)
        if frame is None:
            return Reject("carried-frame")
        flags, byte1, policy, word = HEADER.unpack_from(payload)
        vni = word >> 8
        reserved = bytes(
            [flags & ~FLAGS_GBP & 0xFF, byte1, policy >> 8, policy & 0xFF, word & 0xFF]
        )
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{payload[:8].hex(' ')}: VXLAN flags 0x{flags:02x} (VNI valid), VNI {vni}, "
                "reserved bits set; Ethernet frame follows"
            ),
            session={"vni": vni},
            carried=[Carried("ethernet", inner, parsed=frame)],
            facts={"flags": flags, "reserved_bits": reserved.hex()},
            strength=0.8,
            header_len=HEADER.size,
        )


DECODERS: list[Decoder] = [Vxlan(), VxlanOnItsPort()]
