"""VXLAN (RFC 7348, catalog §5), with the group-based policy extension (draft-smith-vxlan-
group-policy).  Used for mirroring by AWS VPC Traffic Mirroring and Azure vTAP.

VXLAN-GPE (P bit 0x04 and a next-protocol byte) is a different format and is left to the
tunnel decoders: its flags byte never equals the two values accepted here.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from detector.decode.frames import carried_frame
from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, Reject

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# flags(8) | byte 1 (GBP: D and A bits) | group policy id(16) | VNI(24) reserved(8)
HEADER = struct.Struct("!BBHI")
FLAGS_I = 0x08  # VNI valid
FLAGS_GBP = 0x88  # G (group policy present) + I
GBP_BYTE1_RESERVED = 0xB7  # all but D (don't learn) 0x40 and A (policy applied) 0x08
MIN_LEN = HEADER.size + 14


class Vxlan(Decoder):
    name = "vxlan"
    kind = "mirror"
    transport = "udp"
    ports = frozenset({4789, 8472})
    priority = 40

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


DECODERS: list[Decoder] = [Vxlan()]
