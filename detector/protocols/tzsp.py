"""TZSP, the TaZmen Sniffer Protocol (catalog §1): remote capture over UDP (MikroTik sniffer
streaming, mangle sniff-tzsp, Nortel snoop...).

Layout: version(1) = 1, type(1), encapsulation(2, big-endian), then tagged fields up to an END
tag, then the captured frame.  PAD (0) and END (1) tags are one byte; every other tag is
type, length, value.  Types 0 (received) and 1 (for transmit) carry a frame; keepalive (4) and
port opener (5) are the bare 4-byte header; configuration (3) has tags only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from detector.decode.frames import InnerPacket, mac_str
from detector.decode.lut import lut
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

if TYPE_CHECKING:
    import numpy.typing as npt

HEADER = struct.Struct("!BBH")
VERSION = 1

TYPE_NAMES = {0: "received", 1: "transmit", 3: "configuration", 4: "keepalive", 5: "port opener"}
FRAME_TYPES = frozenset({0, 1})
BARE_TYPES = frozenset({4, 5})

ENCAP_NONE = 0
ENCAP_ETHERNET = 1
ENCAP_PPP = 4
ENCAP_RAW_IP = 7
ENCAP_80211 = 18
ENCAP_PRISM = 119
ENCAP_RADIOTAP = 126
ENCAP_AVS = 127
# Encapsulations whose frame ``carried_frame`` checks, and the link it is checked as.
FRAME_LINKS: dict[int, InnerLink] = {ENCAP_ETHERNET: "ethernet", ENCAP_RAW_IP: "ip"}
ENCAP_NAMES = {
    ENCAP_NONE: "none",
    ENCAP_ETHERNET: "Ethernet",
    2: "Token Ring",
    3: "SLIP",
    ENCAP_PPP: "PPP",
    5: "FDDI",
    ENCAP_RAW_IP: "raw IP",
    ENCAP_80211: "802.11",
    ENCAP_PRISM: "802.11 with Prism header",
    ENCAP_RADIOTAP: "802.11 with radiotap header",
    ENCAP_AVS: "802.11 with AVS header",
}
# Radio headers in front of an 802.11 frame.
RADIO_ENCAPS = frozenset({ENCAP_PRISM, ENCAP_RADIOTAP, ENCAP_AVS})

TAG_PAD = 0
TAG_END = 1
TAG_PACKET_ID = 40
TAG_ORIG_LEN = 41
TAG_SENSOR_MAC = 60

PREFILTER_TYPES = np.array(sorted(TYPE_NAMES), dtype=np.uint8)
PREFILTER_ENCAPS = np.array(sorted(ENCAP_NAMES), dtype=np.uint8)

PRISM_LEN = 144
AVS_MAGIC = frozenset({0x80211001, 0x80211002})
RADIOTAP_MIN = 8


_TYPES_LUT = lut(PREFILTER_TYPES)
_ENCAPS_LUT = lut(PREFILTER_ENCAPS)


@dataclass(repr=False, eq=False, slots=True)
class Tags:
    """What the tagged fields of a TZSP header said."""

    numbers: list[int] = field(default_factory=list)
    end: int = 0  # offset just past the END tag
    sensor_mac: str | None = None
    orig_len: int | None = None
    packet_id: int | None = None


def _walk_tags(data: bytes, off: int) -> Tags | None:
    """Walk tagged fields from ``off`` through END; None if a tag runs past the data."""
    tags = Tags()
    n = len(data)
    while off < n:
        tag = data[off]
        off += 1
        if tag == TAG_END:
            tags.end = off
            return tags
        if tag == TAG_PAD:
            continue
        if off >= n:
            return None
        size = data[off]
        value = data[off + 1 : off + 1 + size]
        off += 1 + size
        if off > n:
            return None
        tags.numbers.append(tag)
        if tag == TAG_SENSOR_MAC and size == 6:
            tags.sensor_mac = mac_str(bytes(value))
        elif tag == TAG_ORIG_LEN and size == 2:
            tags.orig_len = (value[0] << 8) | value[1]
        elif tag == TAG_PACKET_ID and size == 4:
            tags.packet_id = struct.unpack("!I", value)[0]
    return None


def _ieee80211_plausible(frame: bytes) -> bool:
    """Protocol version 0, a defined frame type, and room for the header that type needs."""
    if len(frame) < 10 or frame[0] & 0x03:
        return False
    ftype = (frame[0] >> 2) & 0x03
    return ftype != 3 and (ftype == 1 or len(frame) >= 24)


def _radio_header_len(encap: int, data: bytes) -> int | None:
    """Length of the radio header in front of the 802.11 frame, when it is well formed."""
    if len(data) < RADIOTAP_MIN:
        return None
    magic, be_len = struct.unpack_from("!II", data)
    if encap == ENCAP_RADIOTAP:
        hlen = data[2] | (data[3] << 8)
        return hlen if data[0] == 0 and RADIOTAP_MIN <= hlen <= len(data) else None
    if magic in AVS_MAGIC:  # AVS, also found under the Prism encapsulation
        return be_len if RADIOTAP_MIN <= be_len <= len(data) else None
    if encap == ENCAP_PRISM:
        msglen = struct.unpack_from("<I", data, 4)[0]
        return PRISM_LEN if msglen == PRISM_LEN and len(data) >= PRISM_LEN else None
    return None


def _carried(encap: int, data: bytes) -> tuple[Carried, float] | None:
    """The carried frame and the match strength, or None when it is not what encap says
    (Ethernet and raw IP frames are checked by ``carried_frame``, not here)."""
    if encap == ENCAP_80211:
        return (Carried("ieee80211", data), 1.0) if _ieee80211_plausible(data) else None
    if encap in RADIO_ENCAPS:
        skip = _radio_header_len(encap, data)
        if skip is None or not _ieee80211_plausible(data[skip:]):
            return None
        return Carried("ieee80211", data[skip:]), 1.0
    # Token Ring, SLIP, PPP, FDDI: the link cannot be checked here, so the match is weaker.
    if not data:
        return None
    return Carried("ppp" if encap == ENCAP_PPP else "raw", data), 0.6


def _bad_header(version: int, ptype: int, encap: int) -> str | None:
    """Why the fixed header is not TZSP, or None when it is."""
    if version != VERSION:
        return "version"
    if ptype not in TYPE_NAMES:
        return "type"
    return None if encap in ENCAP_NAMES else "encapsulation"


def _tag_facts(version: int, ptype: int, tags: Tags) -> dict[str, object]:
    facts: dict[str, object] = {"version": version, "type": ptype, "tags": tags.numbers}
    if tags.packet_id is not None:
        facts["packet_id"] = tags.packet_id
    if tags.orig_len is not None:
        facts["orig_len"] = tags.orig_len
    return facts


TZSP = ProtocolSpec(
    "tzsp",
    "copy",
    sid=1,
    doc="tzsp.md",
    samples=("tzsp.pcap", "tzsp-31337.pcap", "tzsp-80211.pcap"),
    wireshark=wireshark("tzsp", "tzsp", 37008),
)


class Tzsp(CarriedFrameDecoder):
    name = "tzsp"
    emits = (TZSP,)
    kind = "mirror"
    transport = "udp"
    ports = frozenset({37008})
    priority = 30

    first_bytes = frozenset({VERSION})
    second_bytes = frozenset(TYPE_NAMES)

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return (
            (head[:, 0] == VERSION)
            & _TYPES_LUT[head[:, 1]]
            & (head[:, 2] == 0)  # every known encapsulation is below 256
            & _ENCAPS_LUT[head[:, 3]]
            & (length >= HEADER.size)
        )

    def read(
        self, payload: bytes, ctx: PacketContext, state: object | None
    ) -> Decoded | Reject | FrameToCheck:
        if len(payload) < HEADER.size:
            return Reject("short")
        version, ptype, encap = HEADER.unpack_from(payload)
        if bad := _bad_header(version, ptype, encap):
            return Reject(bad)
        what = f"TZSP version 1, type {ptype} ({TYPE_NAMES[ptype]}), encapsulation {encap} "
        what += f"({ENCAP_NAMES[encap]})"
        session: dict[str, int | str] = {"encapsulation": encap}
        if ptype in BARE_TYPES and len(payload) == HEADER.size:
            # A 4-byte keepalive has no other check: a weak match on its own.
            header = f"{payload.hex(' ')}: {what}, no tags"
            facts: dict[str, object] = {"version": version, "type": ptype}
            return self._decoded(header, session, facts, 0.3, HEADER.size)
        tags = _walk_tags(payload, HEADER.size)
        if tags is None:
            return Reject("tags")
        if tags.sensor_mac is not None:
            session["sensor_mac"] = tags.sensor_mac
        facts = _tag_facts(version, ptype, tags)
        header = f"{payload[: min(tags.end, 24)].hex(' ')}: {what}, tags {tags.numbers}, END"
        rest = bytes(payload[tags.end :])
        if ptype not in FRAME_TYPES:
            # Configuration, keepalive, port opener: TZSP, but nothing is copied.
            if rest:
                return Reject("bytes-after-control")
            return self._decoded(header, session, facts, 0.5, tags.end)
        if encap in FRAME_LINKS:
            link = FRAME_LINKS[encap]

            def finish(inner: InnerPacket | None) -> Decoded | Reject:
                if inner is None:
                    return Reject("carried-frame")
                carried = Carried(link, rest, orig_len=tags.orig_len, parsed=inner)
                return self._decoded(header, session, facts, 1.0, tags.end, [carried])

            return FrameToCheck(link, rest, finish)
        found = _carried(encap, rest) if encap != ENCAP_NONE else None
        if found is None:
            return Reject("carried-frame")
        carried, strength = found
        carried.orig_len = tags.orig_len
        return self._decoded(header, session, facts, strength, tags.end, [carried])

    def _decoded(
        self,
        header: str,
        session: dict[str, int | str],
        facts: dict[str, object],
        strength: float,
        header_len: int,
        carried: list[Carried] | None = None,
    ) -> Decoded:
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=header,
            session=session,
            carried=carried or [],
            facts=facts,
            strength=strength,
            header_len=header_len,
        )


DECODERS: list[Decoder] = [Tzsp()]
