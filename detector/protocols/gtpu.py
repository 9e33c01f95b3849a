"""GTP-U (3GPP TS 29.281): mobile-core user-plane tunnel, UDP 2152.

Header: flags (version 1, PT 1, E/S/PN), message type, length of what follows the first 8 bytes,
TEID; when any of E/S/PN is set, 4 more bytes (sequence, N-PDU, next extension type) and a chain
of extension headers (length in 4-byte units, next type in the last byte).  A G-PDU (0xFF)
carries one user IP packet.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from detector.decode.lut import lut
from detector.prefilter_route import byte_values
from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.li_common import be16
from detector.protocols.tunnel_common import hex_head, ip_version_at

if TYPE_CHECKING:
    import numpy.typing as npt

HEADER = struct.Struct("!BBHI")
G_PDU = 0xFF
# Signalling messages of the user plane: echo request/response, error indication, supported
# extension headers notification, end marker.
SIGNALLING = {1: "echo request", 2: "echo response", 26: "error indication", 31: "supported ext"}
END_MARKER = 0xFE
MESSAGE_TYPES = (G_PDU, END_MARKER, *SIGNALLING)
FLAG_E, FLAG_S, FLAG_PN = 0x04, 0x02, 0x01


def _skip_extensions(data: bytes, off: int, next_type: int) -> int:
    """Offset after the extension header chain, or -1 when it runs off the packet."""
    for _ in range(8):
        if next_type == 0:
            return off
        if off >= len(data) or data[off] == 0:
            return -1
        end = off + data[off] * 4
        if end > len(data):
            return -1
        next_type, off = data[end - 1], end
    return -1


_TYPES_LUT = lut(MESSAGE_TYPES)


GTP_U = ProtocolSpec("gtp-u", "tunnel", sid=64, doc="tunnels.md", samples=("gtp-u.pcap",))


class GtpUDecoder(Decoder):
    name = "gtp-u"
    emits = (GTP_U,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({2152})

    first_bytes = byte_values(0xF8, 0x30)
    second_bytes = frozenset(MESSAGE_TYPES)

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        flags, mtype = head[:, 0], head[:, 1]
        # Version 1, PT 1, spare 0; a known message type; the length field covers the rest
        # (or more, when the capture or an IP fragment cut the packet short).
        return (
            ((flags & 0xF8) == 0x30)
            & _TYPES_LUT[mtype]
            & (be16(head, 2) + 8 >= length)
            & (length >= 8)
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < 8:
            return None
        flags, mtype, length, teid = HEADER.unpack_from(payload)
        if flags & 0xF8 != 0x30 or mtype not in MESSAGE_TYPES or length + 8 < len(payload):
            return None
        off = 8
        facts: dict[str, object] = {"version": 1, "msg_type": mtype}
        if flags & (FLAG_E | FLAG_S | FLAG_PN):
            if len(payload) < 12:
                return None
            if flags & FLAG_S:
                facts["seq"] = (payload[8] << 8) | payload[9]
            off = _skip_extensions(payload, 12, payload[11] if flags & FLAG_E else 0)
            if off < 0:
                return None
        what = SIGNALLING.get(mtype, "end marker" if mtype == END_MARKER else "G-PDU")
        header = f"{hex_head(payload, 8)}: GTPv1-U {what}, length {length}, TEID 0x{teid:08x}"
        if mtype == G_PDU:
            if not ip_version_at(payload, off):
                return None
            return Decoded(
                protocol="gtp-u",
                kind="tunnel",
                header=header,
                session={"teid": teid},
                carried=[Carried(link="ip", data=bytes(payload[off:]))],
                facts=facts,
                header_len=off,
            )
        # Path management runs on TEID 0; an end marker closes a bearer and carries nothing.
        if (mtype == END_MARKER) == (teid == 0) or (mtype == END_MARKER and off != len(payload)):
            return None
        return Decoded(
            protocol="gtp-u",
            kind="tunnel",
            header=header,
            session={"teid": teid},
            facts=facts,
            strength=0.6,
            header_len=off,
        )


DECODERS: list[Decoder] = [GtpUDecoder()]
