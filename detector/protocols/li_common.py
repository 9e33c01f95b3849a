"""Checks shared by the lawful-intercept and remote-capture decoders.

The header-only shims (PCLI, jmirror, Nokia, BCM) have no magic number, so the packet they carry
is the evidence: it must be a real IP packet that fills the datagram exactly, or an Ethernet frame
around one.  The TCP formats (ETSI, X2/X3, rpcap, PCAP-over-IP) share the single-segment
classification path and the pcap link-type table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from detector.decode import headers
from detector.decode.frames import (
    CHECKSUM_RIGHT,
    ethernet_valid,
    ip_fills,
    parse_ethernet,
)
from detector.decode.layers import IP_ETHERTYPES, LAYOUT_OF, LINK_ETHERNET, SHIM_OF
from detector.decode.lut import lut
from detector.protocols.base import Decoded, InnerLink, PacketContext, StreamDecoder

if TYPE_CHECKING:
    import numpy.typing as npt

LINK_IEEE802_11 = 105
ETHERNET = LAYOUT_OF[LINK_ETHERNET]
# Minimum Ethernet frame without FCS: shorter IP packets are padded up to it.
ETH_MIN_FRAME = 60
FCS_LEN = 4
# EtherTypes after which parse_ethernet can reach an IP header.
IP_CARRYING_ETHERTYPES = np.array([*IP_ETHERTYPES, *SHIM_OF], dtype=np.int64)

# pcap/pcapng LINKTYPE_* values → how the carried bytes begin (the link layouts parse_carried
# walks, by name, and 802.11).
_CARRIED_LINK_OF_LAYOUT: dict[str, InnerLink] = {"ethernet": "ethernet", "raw": "ip", "ppp": "ppp"}
_LINKTYPES: dict[int, InnerLink] = {
    lt: _CARRIED_LINK_OF_LAYOUT[lay.name]
    for lt, lay in LAYOUT_OF.items()
    if lay.name in _CARRIED_LINK_OF_LAYOUT
} | {LINK_IEEE802_11: "ieee80211"}


def link_for_linktype(linktype: int) -> InnerLink:
    return _LINKTYPES.get(linktype & 0xFFFF, "raw")


def hexbytes(data: bytes, n: int) -> str:
    return " ".join(f"{b:02x}" for b in data[:n])


def ether_fills(data: bytes, off: int) -> bool:
    """An Ethernet frame at ``off`` whose IP packet ends inside ``data``, followed by no more than
    minimum-size padding and an FCS: a copied frame, not bytes that happen to look like one."""
    if not ethernet_valid(data, off, strict=True):
        return False
    inner = parse_ethernet(data, off)
    if inner is None or inner.ip_offset < 0 or inner.ip_len <= 0:
        return False
    if inner.ip_version == 4 and inner.checksum != CHECKSUM_RIGHT:
        return False
    end = inner.ip_offset + inner.ip_len
    if end > len(data):
        return False
    padding = max(0, off + ETH_MIN_FRAME - end)
    return len(data) - end <= padding + FCS_LEN


def inner_link(data: bytes, off: int, *, ethernet: bool = True) -> InnerLink | None:
    if ip_fills(data, off):
        return "ip"
    if ethernet and ether_fills(data, off):
        return "ethernet"
    return None


# The 8-byte Juniper / Nokia LI header: MHV(2 bits) + intercept id, session id.
MIRROR_HEADER = struct.Struct("!II")


def mirror_header(payload: bytes) -> tuple[int, int, int] | None:
    """(MHV, first word, session id) of an 8-byte LI header with a defined MHV (0 or 1) and room
    for at least an IP header after it."""
    if len(payload) < MIRROR_HEADER.size + 20:
        return None
    word, session_id = MIRROR_HEADER.unpack_from(payload)
    mhv = word >> 30
    return None if mhv > 1 else (mhv, word, session_id)


def be16(head: npt.NDArray[np.uint8], col: int | npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
    """Big-endian 16-bit column of a prefilter matrix, widened so arithmetic cannot wrap."""
    return (head[:, col].astype(np.int64) << 8) | head[:, col + 1]


def be32(head: npt.NDArray[np.uint8], col: int) -> npt.NDArray[np.int64]:
    return (be16(head, col) << 16) | be16(head, col + 2)


def ip_fills_mask(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64], off: int | npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    """Rows where an IPv4/IPv6 header at ``off`` has a length ending at the payload's end.  With
    an array of offsets and the lengths as a column (``length[:, None]``), one column each."""
    b0 = head[:, off]
    rest = length - off
    v4 = _IPV4_START[b0] & (be16(head, off + 2) == rest)
    v6 = ((b0 >> 4) == 6) & (be16(head, off + 4) + 40 == rest)
    return v4 | v6


def ether_ip_mask(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64], off: int | npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    """Rows where an Ethernet header at ``off`` could lead to an IP packet."""
    return (
        ((head[:, off + 6] & 1) == 0)
        & _ETHERTYPE_LUT[be16(head, off + ETHERNET.type_at)]
        & (length - off >= ETHERNET.header + 20)
    )


def carried_mask(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64], off: int | npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    return ip_fills_mask(head, length, off) | ether_ip_mask(head, length, off)


def carried_masks(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64], offsets: tuple[int, ...]
) -> npt.NDArray[np.bool_]:
    """``carried_mask`` at each of ``offsets`` (one column each), worked out at once: one pass
    over a (rows, offsets) matrix costs a quarter of four passes over the rows."""
    return carried_mask(head, length[:, None], np.array(offsets, dtype=np.intp))


def carried_bits_numpy(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64], offsets: tuple[int, ...]
) -> npt.NDArray[np.uint8]:
    """At each of ``offsets`` (one column each): bit 0 where ``ip_fills_mask`` holds, bit 1
    where ``ether_ip_mask`` does."""
    at = np.array(offsets, dtype=np.intp)
    ip = ip_fills_mask(head, length[:, None], at).astype(np.uint8)
    return ip | (ether_ip_mask(head, length[:, None], at).astype(np.uint8) << 1)


def carried_bits_compiled(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64], offsets: tuple[int, ...]
) -> npt.NDArray[np.uint8]:
    """:func:`carried_bits_numpy`, each row read once in a compiled pass."""
    assert headers.OUTER is not None, "the compiled header decode is not built"
    out = np.empty((len(head), len(offsets)), dtype=np.uint8)
    headers.OUTER.carried_at(
        np.ascontiguousarray(head, dtype=np.uint8),
        head.shape[1],
        np.ascontiguousarray(length, dtype=np.int64),
        np.array(offsets, dtype=np.int64),
        _IPV4_START,
        _ETHERTYPE_LUT,
        ETHERNET.header + 20,
        out,
    )
    return out


# The form the prefilters use: compiled where built, unless MIRRORWATCH_PURE_PYTHON=1.
carried_compiled = headers.use_compiled
carried_bits = carried_bits_compiled if carried_compiled else carried_bits_numpy


def carried_kinds(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64], off: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``ip_fills_mask`` and ``ether_ip_mask`` at ``off``, in one compiled pass where built."""
    if carried_compiled:
        bits = carried_bits_compiled(head, length, (off,))[:, 0]
        return (bits & 1) != 0, (bits & 2) != 0
    return ip_fills_mask(head, length, off), ether_ip_mask(head, length, off)


def carried_may_start(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64], offsets: tuple[int, ...]
) -> npt.NDArray[np.bool_]:
    """Rows where ``carried_mask`` may hold at one of ``offsets``: an IPv4 or IPv6 first byte
    with the high byte of a length field that fits what is left of the payload, or an EtherType
    that can lead to IP.  A necessary condition read from single bytes, which a random row
    meets at one offset in a few dozen: the full test then runs on the few rows that meet it."""
    maybe = np.zeros(len(head), dtype=np.bool_)
    for off in offsets:
        rest = length - off
        first = head[:, off]
        # The high byte of the rest (negative or past 0xffff: no byte, as no 16-bit field).
        maybe |= _IPV4_START[first] & (head[:, off + 2] == rest >> 8)
        maybe |= ((first >> 4) == 6) & (head[:, off + 4] == (rest - 40) >> 8)
        maybe |= _ETHERTYPE_LUT[be16(head, off + ETHERNET.type_at)]
    return maybe


# Longest PDU a stream decoder buffers; a claimed length beyond it means "not this format".
MAX_PDU = 4 << 20
# Bytes of a PDU still arriving that must already validate (the prefilter's window).
PEEK_BYTES = 64


_ETHERTYPE_LUT = lut(IP_CARRYING_ETHERTYPES, bits=16)
# First bytes of an IPv4 header with a legal header length.
_IPV4_START = lut(range(0x45, 0x50))


@dataclass(repr=False, eq=False, slots=True)
class StreamState:
    """Reassembly buffer of one TCP direction, and what the format learnt from earlier PDUs."""

    buf: bytearray = field(default_factory=bytearray)
    dead: bool = False
    pdus: int = 0
    # Format facts learnt from earlier PDUs (pcap link type and byte order, rpcap link type).
    info: dict[str, int] = field(default_factory=dict)
    # Sender of this direction (rpcap links a data stream to its control connection by it).
    src: str = ""
    # Capture time of the segment being fed (PCAP-over-IP compares its record times to it).
    now: float = 0.0


class FramedStreamDecoder(StreamDecoder):
    """A TCP format made of length-prefixed PDUs.  Subclasses say how long the PDU at the start of
    the buffer is, parse a whole PDU, and validate the start of one (``peek``); this class frames,
    keeps partial PDUs, and gives up on a stream at the first PDU that does not validate."""

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        """Total length of the PDU starting the buffer; None when more bytes are needed; ≤ 0 when
        the bytes cannot start a PDU of this format."""
        raise NotImplementedError

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        raise NotImplementedError

    def peek(self, head: bytes, state: StreamState) -> Decoded | None:
        """What the start of a PDU that continues in later segments says, if it validates."""
        return None

    def new_state(self) -> StreamState:
        return StreamState()

    def feed(self, data: bytes, ctx: PacketContext, state: object | None) -> list[Decoded]:
        if not isinstance(state, StreamState) or state.dead:
            return []
        state.src = ctx.src
        state.now = ctx.ts
        return self._feed(data, state)

    def _feed(self, data: bytes, state: StreamState) -> list[Decoded]:
        state.buf += data
        out: list[Decoded] = []
        while state.buf:
            total = self.pdu_length(state.buf, state)
            if total is not None and not 0 < total <= MAX_PDU:
                state.dead = True
                break
            if total is None or total > len(state.buf):
                # The first PDU's start must already look right, or nothing is buffered for it.
                if (
                    state.pdus == 0
                    and len(state.buf) >= PEEK_BYTES
                    and self.peek(bytes(state.buf[:PEEK_BYTES]), state) is None
                ):
                    state.dead = True
                break
            pdu = bytes(state.buf[:total])
            del state.buf[:total]
            decoded = self.parse(pdu, state)
            if decoded is None:
                state.dead = True
                break
            state.pdus += 1
            out.append(decoded)
        if state.dead:
            state.buf.clear()
        return out

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        fresh = self.new_state()
        found = self.feed(payload, ctx, fresh)
        if found:
            return found[0]
        if fresh.dead:
            return None
        return self.peek(payload, fresh)
