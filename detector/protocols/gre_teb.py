"""Ethernet frames carried in GRE (catalog §4): transparent Ethernet bridging and MikroTik EoIP.

Both are reported as mirror candidates carrying Ethernet; whether a stream is a mirror feed or
an L2 tunnel is decided later from stream evidence (direction, duplicates), not per packet.

MikroTik EoIP is GRE version 1 with protocol type 0x6400 whose key field holds a big-endian
payload length followed by a little-endian tunnel id (flags/version bytes ``20 01``).
"""

from __future__ import annotations

from detector.decode.frames import carried_frame
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    PacketContext,
    ProtocolSpec,
    Reject,
    wireshark,
)
from detector.protocols.gre import FLAG_KEY, VERSION_ENHANCED, VERSION_MASK, GreMirrorDecoder

GRE_TEB = 0x6558
GRE_EOIP = 0x6400


GRE_TEB_SPEC = ProtocolSpec(
    "gre-teb",
    "ambiguous",
    sid=5,
    doc="gre-teb.md",
    samples=("gre-teb-mirror.pcap", "gre-teb-tunnel.pcap"),
    wireshark=wireshark(None, "gre.proto == 0x6558"),
)
# NVGRE is GRE-TEB with a VSID in its key, reported as gre-teb; its number stays reserved.
NVGRE = ProtocolSpec("nvgre", "ambiguous", sid=77, doc="gre-teb.md")
EOIP = ProtocolSpec("eoip", "ambiguous", sid=13, doc="gre-teb.md", samples=("eoip.pcap",))


class GreTeb(GreMirrorDecoder):
    name = "gre-teb"
    emits = (GRE_TEB_SPEC,)
    aliases = (NVGRE,)
    gre_types = frozenset({GRE_TEB})
    priority = 40

    def check(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | Reject:
        frame = carried_frame("ethernet", bytes(payload))
        if frame is None:
            return Reject("carried-frame")
        session: dict[str, int | str] = {}
        key = ""
        if ctx.gre_key is not None:
            session["gre_key"] = ctx.gre_key
            key = f", key {ctx.gre_key}"
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"GRE flags 0x{ctx.gre_flags:04x}, protocol 65 58 (transparent Ethernet "
                f"bridging){key}: Ethernet frame follows ({payload[:14].hex(' ')})"
            ),
            session=session,
            carried=[Carried("ethernet", bytes(payload), parsed=frame)],
            facts={"gre_seq": ctx.gre_seq},
            header_len=0,
        )


class Eoip(GreMirrorDecoder):
    name = "eoip"
    emits = (EOIP,)
    gre_types = frozenset({GRE_EOIP})
    priority = 40

    def check(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | Reject:
        if (
            ctx.gre_flags & VERSION_MASK != VERSION_ENHANCED
            or not ctx.gre_flags & FLAG_KEY
            or ctx.gre_key is None
        ):
            return Reject("version-or-key")
        frame_len = ctx.gre_key >> 16
        tunnel_id = ((ctx.gre_key & 0xFF) << 8) | ((ctx.gre_key >> 8) & 0xFF)
        # The length names the whole frame; a capture may hold less (snap length), never more.
        if frame_len < len(payload):
            return Reject("frame-length")
        header = (
            f"GRE flags/version 0x{ctx.gre_flags:04x}, protocol 64 00 (MikroTik EoIP), "
            f"frame length {frame_len}, tunnel id {tunnel_id}"
        )
        if frame_len == 0:
            # Keepalive: a header with no frame.
            return Decoded(
                protocol=self.name,
                kind=self.kind,
                header=f"{header}: keepalive",
                session={"tunnel_id": tunnel_id},
                facts={"keepalive": True},
                strength=0.8,
            )
        frame = carried_frame("ethernet", bytes(payload))
        if frame is None:
            return Reject("carried-frame")
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=f"{header}: Ethernet frame follows ({payload[:14].hex(' ')})",
            session={"tunnel_id": tunnel_id},
            carried=[Carried("ethernet", bytes(payload), orig_len=frame_len, parsed=frame)],
            facts={"keepalive": False, "frame_len": frame_len},
            header_len=0,
        )


DECODERS: list[Decoder] = [GreTeb(), Eoip()]
