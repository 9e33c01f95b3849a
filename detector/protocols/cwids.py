"""Cisco Wireless IDS capture export (CWIDS): autonomous IOS APs in scanner mode
(`monitor frames endpoint ip address <X> port <P>`).

A datagram is a chain of records, each a 28-byte header and an 802.11 frame without FCS:
    0 version(2)  2 timestamp(6)  8 ?(1)  9 channel(1)  10 ?(6)
    16 original length(2)  18 captured length(2)  20 ?(8)
No magic: the records must chain to fill the datagram exactly, each captured length no more than
its original length, all with the same version, each frame with a valid 802.11 frame control.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, ClassVar

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
from detector.protocols.li_common import be16, hexbytes

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

RECORD = struct.Struct("!H6xxB6xHH8x")
RECORD_LEN = RECORD.size  # 28
MIN_FRAME = 10  # ACK/CTS: frame control, duration, one address
MAX_RECORDS = 64


def frame_control_ok(fc0: int) -> bool:
    return fc0 & 0x03 == 0 and (fc0 >> 2) & 0x03 != 3


CWIDS = ProtocolSpec(
    "cwids",
    "copy",
    sid=11,
    doc="cwids.md",
    samples=("cwids.pcap",),
    wireshark=wireshark("cwids", "cwids"),
)


class CwidsDecoder(Decoder):
    name: ClassVar[str] = "cwids"
    emits = (CWIDS,)
    kind: ClassVar[Kind] = "mirror"
    transport: ClassVar[Transport] = "udp"
    ports: ClassVar[frozenset[int]] = frozenset({8999})
    priority: ClassVar[int] = 70

    first_bytes = frozenset({0})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        real, cap = be16(head, 16), be16(head, 18)
        return (
            (head[:, 0] == 0)
            & (cap >= MIN_FRAME)
            & (cap <= real)
            & (cap + RECORD_LEN <= length)
            & ((head[:, RECORD_LEN] & 0x03) == 0)
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        off, version, carried, channels = 0, -1, [], []
        while off < len(payload):
            if len(payload) - off < RECORD_LEN or len(carried) >= MAX_RECORDS:
                return None
            ver, channel, real, cap = RECORD.unpack_from(payload, off)
            if version not in (-1, ver) or ver > 0xFF:
                return None
            end = off + RECORD_LEN + cap
            if cap < MIN_FRAME or cap > real or end > len(payload):
                return None
            if not frame_control_ok(payload[off + RECORD_LEN]):
                return None
            version = ver
            carried.append(Carried("ieee80211", payload[off + RECORD_LEN : end], orig_len=real))
            channels.append(channel)
            off = end
        if not carried:
            return None
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(payload, 2)} … {hexbytes(payload[16:], 4)}: Cisco WIDS record "
                f"version {version}, channel {channels[0]}, original/captured length "
                f"{carried[0].orig_len}/{len(carried[0].data)}; {len(carried)} record(s) "
                "chain to the end of the datagram"
            ),
            carried=carried,
            facts={"version": version, "records": len(carried), "channel": channels[0]},
            # Several records that chain exactly are much stronger than one.
            strength=0.8 if len(carried) > 1 else 0.5,
            header_len=RECORD_LEN,
        )


DECODERS = [CwidsDecoder()]
