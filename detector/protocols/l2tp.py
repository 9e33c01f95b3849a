"""L2TP: version 2 (RFC 2661) and version 3 (RFC 3931) over UDP 1701, and L2TPv3 over IP 115.

v2 header: flags word T L x x S x O P x x x x Ver(2), [length], tunnel id, session id, [Ns Nr],
[offset size + pad]; data messages carry PPP.  Control messages (T) must have L and S set and
begin with a Message Type AVP (or are an empty ZLB acknowledgement).
v3 over UDP: control 0xC803 + length + control connection id + Ns/Nr; data 0x0003, 16 reserved
bits, then the same session header as over IP: session id (0 means control follows), optional
cookie and L2-specific sublayer, then the pseudowire frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from detector.decode.frames import ethernet_valid
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    InnerLink,
    PacketContext,
    ProtocolSpec,
)
from detector.protocols.tunnel_common import hex_head, ip_version_at, ppp_at

if TYPE_CHECKING:
    import numpy.typing as npt

BIT_T, BIT_L, BIT_S, BIT_O, BIT_P = 0x8000, 0x4000, 0x0800, 0x0200, 0x0100
V2_RESERVED = 0x34F0
V3_CONTROL_FLAGS = 0xC803
# Message Type AVP: M bit, length 8, vendor 0, attribute 0.
MESSAGE_TYPE_AVP = bytes.fromhex("8008 0000 0000")


def _control_body_ok(data: bytes, off: int, length: int) -> bool:
    """A control message is a ZLB ack (header only) or starts with the Message Type AVP."""
    if length == off:
        return True
    return data[off : off + 6] == MESSAGE_TYPE_AVP and len(data) >= off + 8


def _v2(data: bytes) -> Decoded | None:
    flags = (data[0] << 8) | data[1]
    if flags & V2_RESERVED:
        return None
    off = 2
    length = len(data)
    if flags & BIT_L:
        length = (data[2] << 8) | data[3]
        if length < len(data):
            return None
        off = 4
    if flags & BIT_T and (flags & (BIT_L | BIT_S | BIT_O | BIT_P)) != (BIT_L | BIT_S):
        return None
    if len(data) < off + 4:
        return None
    tunnel, session = (data[off] << 8) | data[off + 1], (data[off + 2] << 8) | data[off + 3]
    off += 4
    facts: dict[str, object] = {"version": 2, "control": bool(flags & BIT_T)}
    if flags & BIT_S:
        if len(data) < off + 4:
            return None
        facts["ns"] = (data[off] << 8) | data[off + 1]
        off += 4
    if flags & BIT_O:
        if len(data) < off + 2:
            return None
        off += 2 + ((data[off] << 8) | data[off + 1])
    kind = "control" if flags & BIT_T else "data"
    header = f"{hex_head(data, 4)}: L2TPv2 {kind}, tunnel {tunnel}, session {session}"
    session_ids = {"tunnel_id": tunnel, "session_id": session}
    if flags & BIT_T:
        if not _control_body_ok(data, off, length):
            return None
        return Decoded("l2tp", "tunnel", header, session_ids, facts=facts, header_len=off)
    if ppp_at(data, off) < 0:
        return None
    carried = [Carried(link="ppp", data=bytes(data[off:]))]
    return Decoded("l2tp", "tunnel", header, session_ids, carried, facts=facts, header_len=off)


def _v3_control(data: bytes, off: int) -> Decoded | None:
    """Control message header at ``off`` (after the session id 0 over IP, or at 0 over UDP)."""
    if len(data) < off + 12:
        return None
    flags = (data[off] << 8) | data[off + 1]
    length = (data[off + 2] << 8) | data[off + 3]
    if flags != V3_CONTROL_FLAGS or length < 12 or off + length < len(data):
        return None
    if not _control_body_ok(data[off:], 12, length):
        return None
    ccid = int.from_bytes(data[off + 4 : off + 8], "big")
    header = f"{hex_head(data, off + 8)}: L2TPv3 control, connection {ccid}"
    facts = {"version": 3, "control": True, "ns": (data[off + 8] << 8) | data[off + 9]}
    return Decoded(
        "l2tp", "tunnel", header, {"control_connection_id": ccid}, facts=facts, header_len=off + 12
    )


def _v3_data(data: bytes, off: int) -> Decoded | None:
    """Session header at ``off``: session id, then a cookie (0, 4 or 8 bytes) and an optional
    4-byte L2-specific sublayer that only the control channel announced, so each is tried."""
    if len(data) < off + 4:
        return None
    session = int.from_bytes(data[off : off + 4], "big")
    if session == 0:
        return None
    for extra in (0, 4, 8, 12):
        body = off + 4 + extra
        link: InnerLink | None = None
        # An 802.3 length field is too weak a sign here: require an EtherType.
        if ethernet_valid(data, body, strict=True) and data[body + 12] >= 0x06:
            link = "ethernet"
        elif ip_version_at(data, body):
            link = "ip"
        elif data[body : body + 2] == b"\xff\x03" and ppp_at(data, body) >= 0:
            link = "ppp"
        if link:
            header = f"{hex_head(data, off + 4)}: L2TPv3 data, session {session}"
            return Decoded(
                "l2tp",
                "tunnel",
                header,
                {"session_id": session},
                [Carried(link=link, data=bytes(data[body:]))],
                facts={"version": 3, "control": False, "cookie_len": extra},
                strength=0.6,
                header_len=body,
            )
    return None


L2TP = ProtocolSpec("l2tp", "tunnel", sid=65, doc="tunnels.md", samples=("l2tp.pcap",))
# L2TPv3 over IP is reported as l2tp; the decoder's own name keeps its number.
L2TP_IP = ProtocolSpec("l2tp-ip", "tunnel", sid=82, doc="tunnels.md")


class L2tpUdpDecoder(Decoder):
    name = "l2tp"
    emits = (L2TP,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({1701})

    first_bytes = frozenset(
        b for b in range(256) if (b & 0x34 == 0 and (b & 0x80 == 0 or b & 0xCB == 0xC8)) or b == 0
    )
    second_bytes = frozenset({2, 3})  # versions

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        b0, b1 = head[:, 0], head[:, 1]
        v2 = ((b0 & 0x34) == 0) & (b1 == 0x02) & (((b0 & 0x80) == 0) | ((b0 & 0xCB) == 0xC8))
        v3 = ((b0 == 0xC8) | ((b0 == 0) & (head[:, 2] == 0) & (head[:, 3] == 0))) & (b1 == 0x03)
        return (v2 | v3) & (length >= 6)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < 6:
            return None
        version = payload[1] & 0x0F
        if version == 2:
            return _v2(payload)
        if version == 3:
            if payload[0] == 0xC8:
                return _v3_control(payload, 0)
            if payload[:4] == b"\x00\x03\x00\x00":
                return _v3_data(payload, 4)
        return None


class L2tpIpDecoder(Decoder):
    name = "l2tp-ip"
    emits = (L2TP,)
    aliases = (L2TP_IP,)
    kind = "tunnel"
    transport = "ip"
    ip_protos = frozenset({115})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if payload[:4] == b"\x00\x00\x00\x00":
            return _v3_control(payload, 4)
        return _v3_data(payload, 0)


DECODERS: list[Decoder] = [L2tpUdpDecoder(), L2tpIpDecoder()]
