"""GRE header parsing (RFC 2784 / RFC 2890, RFC 1701 routing, RFC 2637 enhanced GRE).

The engine parses the GRE header of every IP protocol 47 packet (and, later, of GRE-in-UDP,
RFC 8086) with :func:`parse_gre`, copies its fields into the :class:`PacketContext` with
:func:`fill_context`, and hands the bytes after the header to the "gre" decoders registered for
the protocol type.  This module defines no decoder itself, only their common base.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from detector.protocols.base import Decoder, PacketContext

GRE_BASE = struct.Struct("!HH")  # flags and version, protocol type
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")

FLAG_CHECKSUM = 0x8000
FLAG_ROUTING = 0x4000
FLAG_KEY = 0x2000
FLAG_SEQ = 0x1000
FLAG_STRICT_ROUTE = 0x0800
RECURSION_MASK = 0x0700
FLAG_ACK = 0x0080  # enhanced GRE only
VERSION_MASK = 0x0007
# Bits RFC 1701 reserves (must be zero); enhanced GRE takes 0x0080 for the ack flag.
RESERVED_V0 = 0x00F8
RESERVED_V1 = 0x0078

VERSION_GRE = 0
VERSION_ENHANCED = 1  # RFC 2637 (PPTP); MikroTik EoIP also sets version 1

PROTO_PPP = 0x880B
# Bound on RFC 1701 source route entries, so a crafted header cannot loop for long.
MAX_SRES = 16


@dataclass(repr=False, eq=False, slots=True)
class GreHeader:
    """The fields of one GRE header; optional fields are None when their flag is clear."""

    flags: int  # the first 16 bits, version included
    proto: int
    header_len: int
    checksum: int | None = None
    key: int | None = None
    seq: int | None = None
    ack: int | None = None

    @property
    def version(self) -> int:
        return self.flags & VERSION_MASK

    @property
    def enhanced(self) -> bool:
        """Version 1: the key field holds a 16-bit payload length and a 16-bit call id."""
        return self.version == VERSION_ENHANCED

    @property
    def pptp(self) -> bool:
        return self.enhanced and self.proto == PROTO_PPP

    @property
    def payload_len(self) -> int | None:
        return self.key >> 16 if self.enhanced and self.key is not None else None

    @property
    def call_id(self) -> int | None:
        return self.key & 0xFFFF if self.enhanced and self.key is not None else None


def _skip_routing(data: bytes, off: int) -> int | None:
    """Walk RFC 1701 source route entries up to the null SRE; the offset after it, or None."""
    for _ in range(MAX_SRES):
        if len(data) < off + 4:
            return None
        family, _sre_off, sre_len = struct.unpack_from("!HBB", data, off)
        off += 4
        if family == 0 and sre_len == 0:
            return off
        off += sre_len
    return None


def parse_gre(data: bytes) -> GreHeader | None:
    """Parse the GRE header at the start of ``data``; None if it is not a valid version 0 or
    version 1 (enhanced) header or is cut short."""
    if len(data) < GRE_BASE.size:
        return None
    flags, proto = GRE_BASE.unpack_from(data)
    version = flags & VERSION_MASK
    if version == VERSION_GRE:
        if flags & RESERVED_V0:
            return None
    elif version == VERSION_ENHANCED:
        # RFC 2637 4.1: C, R, s and recursion are zero and the key (length + call id) is
        # always present.
        bad = FLAG_CHECKSUM | FLAG_ROUTING | FLAG_STRICT_ROUTE | RECURSION_MASK | RESERVED_V1
        if flags & bad or not flags & FLAG_KEY:
            return None
    else:
        return None
    off = GRE_BASE.size
    checksum = key = seq = ack = None
    routing = bool(flags & FLAG_ROUTING)
    if flags & FLAG_CHECKSUM or routing:
        # Checksum and offset are both present when either C or R is set (RFC 1701).
        if len(data) < off + 4:
            return None
        checksum = U16.unpack_from(data, off)[0] if flags & FLAG_CHECKSUM else None
        off += 4
    if flags & FLAG_KEY:
        if len(data) < off + 4:
            return None
        key = U32.unpack_from(data, off)[0]
        off += 4
    if flags & FLAG_SEQ:
        if len(data) < off + 4:
            return None
        seq = U32.unpack_from(data, off)[0]
        off += 4
    if version == VERSION_ENHANCED and flags & FLAG_ACK:
        if len(data) < off + 4:
            return None
        ack = U32.unpack_from(data, off)[0]
        off += 4
    if routing:
        end = _skip_routing(data, off)
        if end is None:
            return None
        off = end
    return GreHeader(flags, proto, off, checksum, key, seq, ack)


def fill_context(hdr: GreHeader, ctx: PacketContext) -> PacketContext:
    """Copy the header fields the GRE decoders read into ``ctx`` (returned for chaining)."""
    ctx.gre_proto = hdr.proto
    ctx.gre_flags = hdr.flags
    ctx.gre_key = hdr.key
    ctx.gre_seq = hdr.seq
    return ctx


class GreMirrorDecoder(Decoder):
    """Base of the decoders of copies carried in GRE (ERSPAN, TEB, EoIP): they read the header
    fields from the context and get the bytes after the GRE header."""

    kind = "mirror"
    transport = "gre"
