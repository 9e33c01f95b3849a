"""AiroPeek / OmniPeek remote capture ("peekremote"): 802.11 frames streamed by an AP or WLC.

Two headers (Wireshark packet-peekremote.c):
- new: magic 00 FF AB CD, version(1) = 2, header size(4) = 55, radio fields, then the frame;
- legacy (20 bytes): signal/noise dBm, packet length(2), slice length(2), flags(1, 0xF8
  reserved), status(1, 0xB3 reserved), TSF(8), rate, channel, signal %, noise %.
The frame carries its FCS.  The legacy header has no magic, so its reserved bits must be clear,
its lengths must agree with the datagram, and a plausible 802.11 frame must follow.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, ClassVar

import numpy as np

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
from detector.protocols.li_common import FCS_LEN, be16, hexbytes

if TYPE_CHECKING:
    import numpy.typing as npt

MAGIC = b"\x00\xff\xab\xcd"
NEW_VERSION = 2
NEW_HEADER_LEN = 55
# type(4) mcs(2) channel(2) frequency(4) band(4) ext flags(4) signal% noise% dBm dBm, 8 antennas,
# packet length(2) slice length(2) flags status TSF(8): offsets from byte 9.
NEW_FIELDS = struct.Struct("!IHHIII4B8xHHBBQ")
LEGACY_HEADER_LEN = 20
LEGACY = struct.Struct("!bbHHBBQBBBB")
FLAGS_RESERVED = 0xF8
STATUS_RESERVED = 0xB3
# The magic and the reserved bits of bytes 6-7 as words in this machine's byte order.
_MAGIC_WORD = np.frombuffer(MAGIC, dtype=np.uint32)[0]
_RESERVED_WORD = np.frombuffer(bytes([FLAGS_RESERVED, STATUS_RESERVED]), dtype=np.uint16)[0]
# Shortest 802.11 frame (ACK: frame control, duration, RA) plus FCS.
MIN_FRAME = 10 + FCS_LEN
MAX_CHANNEL = 233


def frame_plausible(data: bytes, off: int) -> bool:
    """Frame control of a real 802.11 frame: protocol version 0, type not reserved (3)."""
    if len(data) - off < MIN_FRAME:
        return False
    fc0 = data[off]
    return fc0 & 0x03 == 0 and (fc0 >> 2) & 0x03 != 3


def lengths_agree(frame_len: int, packet_len: int, slice_len: int) -> bool:
    # Packet length counts the frame with its FCS; some senders leave the FCS out of it; a
    # sliced frame is as long as its slice length.
    return frame_len in (packet_len, packet_len + FCS_LEN) or (
        slice_len != 0 and frame_len == slice_len <= packet_len
    )


PEEKREMOTE = ProtocolSpec(
    "peekremote",
    "copy",
    sid=10,
    doc="peekremote.md",
    samples=("peekremote.pcap",),
    wireshark=wireshark("peekremote", "peekremote", 5000),
)


def _legacy_rows(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Rows that may start a legacy header (reserved bits already checked clear)."""
    frame_len = length - LEGACY_HEADER_LEN
    packet_len, slice_len = be16(head, 2), be16(head, 4)
    return (
        (head[:, 17] >= 1)
        & (head[:, 17] <= MAX_CHANNEL)
        & ((head[:, 20] & 0x03) == 0)
        & (
            (frame_len == packet_len)
            | (frame_len == packet_len + FCS_LEN)
            | ((slice_len != 0) & (frame_len == slice_len))
        )
    )


class PeekremoteDecoder(Decoder):
    name: ClassVar[str] = "peekremote"
    emits = (PEEKREMOTE,)
    kind: ClassVar[Kind] = "mirror"
    transport: ClassVar[Transport] = "udp"
    ports: ClassVar[frozenset[int]] = frozenset({5000, 5555})
    priority: ClassVar[int] = 60

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        # Every row looks here: the magic and the reserved bits are read as one 32-bit and one
        # 16-bit word of each window (one operation each instead of one per byte).
        words = np.ascontiguousarray(head, dtype=np.uint8)
        if words.shape[1] % 4:
            words = np.pad(words, ((0, 0), (0, -words.shape[1] % 4)))
        new = words.view(np.uint32)[:, 0] == _MAGIC_WORD
        # Legacy headers have no magic.  Cheap guard first: their reserved flag and status bits
        # are clear (about one random row in a thousand), and only those rows get the rest.
        maybe = np.flatnonzero((words.view(np.uint16)[:, 3] & _RESERVED_WORD) == 0)
        if len(maybe):
            new[maybe] |= _legacy_rows(head[maybe], length[maybe])
        return new

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if payload[:4] == MAGIC:
            return self._new(payload)
        return self._legacy(payload)

    def _new(self, payload: bytes) -> Decoded | None:
        if len(payload) < 9:
            return None
        version = payload[4]
        hlen = int.from_bytes(payload[5:9], "big")
        facts: dict[str, object] = {"header": "new", "version": version}
        if version == NEW_VERSION:
            if hlen != NEW_HEADER_LEN or len(payload) < NEW_HEADER_LEN:
                return None
            f = NEW_FIELDS.unpack_from(payload, 9)
            facts.update(channel=f[2], frequency=f[3], signal_dbm=_signed(f[8]))
            packet_len, slice_len = f[10], f[11]
            # The magic already decides; lengths are only reported.
            facts["lengths_agree"] = lengths_agree(len(payload) - hlen, packet_len, slice_len)
        elif not 9 <= hlen <= len(payload):
            return None
        else:
            packet_len = len(payload) - hlen
        if not frame_plausible(payload, hlen):
            return None
        return self._decoded(
            payload,
            hlen,
            f"{hexbytes(payload, 9)}: peekremote magic 00 ff ab cd, header version {version}, "
            f"header size {hlen}",
            packet_len,
            facts,
            strength=1.0,
        )

    def _legacy(self, payload: bytes) -> Decoded | None:
        if len(payload) < LEGACY_HEADER_LEN + MIN_FRAME:
            return None
        sig, _noise, packet_len, slice_len, flags, status, _tsf, rate, channel, _sp, _np = (
            LEGACY.unpack_from(payload)
        )
        if flags & FLAGS_RESERVED or status & STATUS_RESERVED or not 1 <= channel <= MAX_CHANNEL:
            return None
        if not lengths_agree(len(payload) - LEGACY_HEADER_LEN, packet_len, slice_len):
            return None
        if not frame_plausible(payload, LEGACY_HEADER_LEN):
            return None
        facts = {"header": "legacy", "channel": channel, "rate_500k": rate, "signal_dbm": sig}
        return self._decoded(
            payload,
            LEGACY_HEADER_LEN,
            f"{hexbytes(payload, 8)}: peekremote legacy header, signal {sig} dBm, packet length "
            f"{packet_len}, slice length {slice_len}, flags {flags:#04x}, status {status:#04x}, "
            f"channel {channel}",
            packet_len,
            facts,
            strength=0.6,
        )

    def _decoded(
        self,
        payload: bytes,
        hlen: int,
        header: str,
        packet_len: int,
        facts: dict[str, object],
        strength: float,
    ) -> Decoded:
        # The frame ends with its FCS; carried 802.11 frames are handed on without it.
        frame = payload[hlen:-FCS_LEN]
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=f"{header}; an 802.11 frame with FCS follows",
            carried=[Carried("ieee80211", frame, orig_len=packet_len or None)],
            facts=facts,
            strength=strength,
            header_len=hlen,
        )


def _signed(b: int) -> int:
    return b - 256 if b >= 128 else b


DECODERS = [PeekremoteDecoder()]
