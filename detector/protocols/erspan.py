"""Cisco ERSPAN type I, II and III (catalog §3): mirror copies carried in GRE.

- Type I: GRE 0x88BE with the S bit clear; the copied Ethernet frame follows the GRE header.
- Type II: GRE 0x88BE with the S bit set; an 8-byte header (version 1) precedes the frame.
- Type III: GRE 0x22EB; a 12-byte header (version 2), plus an 8-byte platform sub-header when
  the O bit is set; the frame type field says Ethernet (0) or IP (2).
SONiC on Mellanox platforms sends ERSPAN with GRE type 0x8949; there the header version nibble
alone tells type II from type III.
"""

from __future__ import annotations

import struct

from detector.decode.frames import InnerPacket, carried_frame
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
from detector.protocols.framed import CarriedFrameDecoder, FrameToCheck
from detector.protocols.gre import FLAG_SEQ, GreMirrorDecoder

GRE_ERSPAN = 0x88BE
GRE_ERSPAN_III = 0x22EB
GRE_ERSPAN_SONIC = 0x8949

# Type II: ver(4) vlan(12) | cos(3) en(2) t(1) session(10) | reserved(12) index(20)
TYPE2 = struct.Struct("!HHI")
# Type III: ver(4) vlan(12) | cos(3) bso(2) t(1) session(10) | timestamp(32) | sgt(16)
#           | p(1) ft(5) hwid(6) d(1) gra(2) o(1)
TYPE3 = struct.Struct("!HHIHH")
PLATFORM_LEN = 8
VERSION_II = 1
VERSION_III = 2

FT_ETHERNET = 0
ETH_HEADER = 14
FT_IP = 2
GRANULARITY = {0: "100us", 1: "100ns", 2: "ieee-1588", 3: "custom"}
EN_NAMES = {0: "none", 1: "ISL", 2: "802.1Q", 3: "VLAN preserved"}


def _spec(erspan_type: int, sid: int) -> ProtocolSpec:
    # Wireshark finds ERSPAN by its GRE protocol type: no Decode As needed.
    return ProtocolSpec(
        f"erspan-{erspan_type}",
        "copy",
        sid=sid,
        doc="erspan.md",
        samples=(f"erspan-{erspan_type}.pcap",),
        wireshark=wireshark(None, "erspan"),
    )


ERSPAN_1, ERSPAN_2, ERSPAN_3 = _spec(1, 2), _spec(2, 3), _spec(3, 4)


class ErspanType1(GreMirrorDecoder, CarriedFrameDecoder):
    name = "erspan-1"
    emits = (ERSPAN_1,)
    gre_types = frozenset({GRE_ERSPAN})
    priority = 20

    def read(
        self, payload: bytes, ctx: PacketContext, state: object | None
    ) -> Decoded | Reject | FrameToCheck:
        if ctx.gre_flags & FLAG_SEQ:
            return Reject("sequence-bit")
        data = bytes(payload)

        def finish(frame: InnerPacket | None) -> Decoded | Reject:
            if frame is None:
                return Reject("carried-frame")
            return Decoded(
                protocol=self.name,
                kind=self.kind,
                header=(
                    f"GRE protocol 88 be, flags 0x{ctx.gre_flags:04x} (S clear): ERSPAN type "
                    f"I, no ERSPAN header; Ethernet frame follows ({payload[:14].hex(' ')})"
                ),
                carried=[Carried("ethernet", data, parsed=frame)],
                facts={"version": 0},
                header_len=0,
            )

        return FrameToCheck("ethernet", data, finish)


class ErspanType2(GreMirrorDecoder, CarriedFrameDecoder):
    name = "erspan-2"
    emits = (ERSPAN_2,)
    gre_types = frozenset({GRE_ERSPAN, GRE_ERSPAN_SONIC})
    priority = 20

    def read(
        self, payload: bytes, ctx: PacketContext, state: object | None
    ) -> Decoded | Reject | FrameToCheck:
        if len(payload) < TYPE2.size:
            return Reject("short")
        if ctx.gre_proto != GRE_ERSPAN_SONIC and not ctx.gre_flags & FLAG_SEQ:
            return Reject("no-sequence")  # 0x88BE without a sequence number is type I
        w0, w1, w2 = TYPE2.unpack_from(payload)
        if w0 >> 12 != VERSION_II:
            return Reject("version")
        inner = bytes(payload[TYPE2.size :])

        def finish(frame: InnerPacket | None) -> Decoded | Reject:
            if frame is None:
                return Reject("carried-frame")
            return self._decoded(payload, ctx, w0, w1, w2, inner, frame)

        return FrameToCheck("ethernet", inner, finish)

    def _decoded(
        self,
        payload: bytes,
        ctx: PacketContext,
        w0: int,
        w1: int,
        w2: int,
        inner: bytes,
        frame: InnerPacket,
    ) -> Decoded:
        vlan, cos, en, trunc = w0 & 0x0FFF, w1 >> 13, (w1 >> 11) & 3, (w1 >> 10) & 1
        session_id, index = w1 & 0x3FF, w2 & 0xFFFFF
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{payload[:8].hex(' ')}: ERSPAN type II, version 1, VLAN {vlan}, COS {cos}, "
                f"encapsulation {EN_NAMES[en]}, truncated {trunc}, session {session_id}, "
                f"index {index} (GRE protocol 0x{ctx.gre_proto:04x})"
            ),
            session={"session_id": session_id, "index": index},
            carried=[Carried("ethernet", inner, parsed=frame)],
            facts={
                "version": VERSION_II,
                "gre_seq": ctx.gre_seq,
                "vlan": vlan,
                "cos": cos,
                "en": en,
                "truncated": bool(trunc),
            },
            header_len=TYPE2.size,
        )


def _type3_frame(ft: int, inner: bytes) -> tuple[InnerLink, InnerPacket | None, float] | Reject:
    """(link, parsed frame, match strength) of what a type III header carries."""
    if ft not in (FT_ETHERNET, FT_IP):
        # A frame type the spec leaves reserved: the GRE type and version still say ERSPAN
        # III, but the copy cannot be checked.
        return Reject("empty") if not inner else ("raw", None, 0.7)
    link: InnerLink = "ethernet" if ft == FT_ETHERNET else "ip"
    frame = carried_frame(link, inner)
    if frame is not None:
        return link, frame, 1.0
    if 0 < len(inner) < ETH_HEADER:
        # Cut by a small snap length before the frame's header ends: the ERSPAN header still
        # says what it is, but the copy cannot be checked.
        return "raw", None, 0.7
    return Reject("carried-frame")


class ErspanType3(GreMirrorDecoder):
    name = "erspan-3"
    emits = (ERSPAN_3,)
    gre_types = frozenset({GRE_ERSPAN_III, GRE_ERSPAN_SONIC})
    priority = 20

    def check(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | Reject:
        if len(payload) < TYPE3.size:
            return Reject("short")
        w0, w1, timestamp, sgt, w5 = TYPE3.unpack_from(payload)
        if w0 >> 12 != VERSION_III:
            return Reject("version")
        p_bit, ft, hw_id = w5 >> 15, (w5 >> 10) & 0x1F, (w5 >> 4) & 0x3F
        egress, gra, has_platform = (w5 >> 3) & 1, (w5 >> 1) & 3, w5 & 1
        off = TYPE3.size
        platform_id: int | None = None
        if has_platform:
            if len(payload) < off + PLATFORM_LEN:
                return Reject("short")
            platform_id = payload[off] >> 2
            off += PLATFORM_LEN
        inner = bytes(payload[off:])
        found = _type3_frame(ft, inner)
        if isinstance(found, Reject):
            return found
        link, frame, strength = found
        direction = "egress" if egress else "ingress"
        vlan, cos, bso, trunc = w0 & 0x0FFF, w1 >> 13, (w1 >> 11) & 3, (w1 >> 10) & 1
        session_id = w1 & 0x3FF
        session: dict[str, int | str] = {"session_id": session_id, "hw_id": hw_id}
        if platform_id is not None:
            session["platform_id"] = platform_id
        platform = f", platform sub-header id {platform_id}" if platform_id is not None else ""
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{payload[:12].hex(' ')}: ERSPAN type III, version 2, VLAN {vlan}, session "
                f"{session_id}, frame type {ft} ({link}), hw id {hw_id}, {direction}, "
                f"timestamp {timestamp} ({GRANULARITY[gra]}){platform} "
                f"(GRE protocol 0x{ctx.gre_proto:04x})"
            ),
            session=session,
            carried=[Carried(link, inner, direction=direction, parsed=frame)],
            facts={
                "version": VERSION_III,
                "gre_seq": ctx.gre_seq,
                "direction": direction,
                "vlan": vlan,
                "cos": cos,
                "bso": bso,
                "truncated": bool(trunc),
                "timestamp": timestamp,
                "granularity": GRANULARITY[gra],
                "sgt": sgt,
                "p": p_bit,
                "frame_type": ft,
            },
            strength=strength,
            header_len=off,
        )


DECODERS: list[Decoder] = [ErspanType1(), ErspanType2(), ErspanType3()]
