"""ETSI TS 103 221-2 X2/X3 PDUs: the internal LI interface from a point of interception (router,
UPF, SBC) to the mediation function, here when sent in clear over TCP.

    0 version(2)  2 PDU type(2): 1 X2 xIRI, 2 X3 xCC, 3 keepalive, 4 keepalive ack
    4 header length(4) ≥ 40   8 payload length(4)   12 payload format(2)   14 direction(2)
    16 XID (UUID, 16)         32 correlation id(8)  40 conditional attributes: type(2) len(2) value
The attributes must end exactly at the header length.  Payload formats 5/6/7 are IPv4, IPv6 and
Ethernet copies of the target's traffic.  A stream of keepalives only is an intercept channel that
is armed but idle, which ``facts["pdu_type"]`` lets the engine tell.
"""

from __future__ import annotations

import struct
import uuid
from typing import TYPE_CHECKING, ClassVar

from detector.protocols.base import Carried, Decoded, InnerLink, Kind, ProtocolSpec, wireshark
from detector.protocols.li_common import (
    FramedStreamDecoder,
    StreamState,
    be16,
    be32,
    hexbytes,
    ip_fills,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HEADER = struct.Struct("!HHIIHH16sQ")
MIN_HEADER = HEADER.size  # 40
# Versions seen: 1 (V1.1.1, Wireshark's TLS heuristic), 5 (OpenLI); the ones between are accepted
# since the attribute check that follows is strict.
VERSIONS = range(1, 6)
PDU_TYPES = {1: "x2-iri", 2: "x3-cc", 3: "keepalive", 4: "keepalive-ack"}
KEEPALIVES = (3, 4)
MAX_FORMAT = 255
MAX_DIRECTION = 5
MAX_HEADER = 0xFFFF
FORMAT_NAMES = {
    1: "etsi-102232-1",
    2: "3gpp-33128",
    3: "3gpp-33108",
    4: "proprietary",
    5: "ipv4",
    6: "ipv6",
    7: "ethernet",
    8: "rtp",
    9: "sip",
    10: "dhcp",
    11: "radius",
    12: "gtp-u",
    13: "msrp",
    14: "eps-iri",
    15: "mime",
    16: "unstructured",
}
CARRIED_FORMATS: dict[int, InnerLink] = {5: "ip", 6: "ip", 7: "ethernet"}
DIRECTIONS = {1: "unknown", 2: "to-target", 3: "from-target", 4: "multiple", 5: "n/a"}
TARGET_DIRECTIONS = {2: "to-target", 3: "from-target"}
ATTR_SEQUENCE, ATTR_TARGET = 8, 17


def attributes(pdu: bytes, hlen: int) -> dict[int, bytes] | None:
    """Conditional attributes, which must exactly fill the header; None if they do not."""
    found: dict[int, bytes] = {}
    off = MIN_HEADER
    while off < hlen:
        if hlen - off < 4:
            return None
        atype, alen = struct.unpack_from("!HH", pdu, off)
        if atype == 0 or off + 4 + alen > hlen:
            return None
        found.setdefault(atype, pdu[off + 4 : off + 4 + alen])
        off += 4 + alen
    return found


def header_ok(version: int, ptype: int, hlen: int, fmt: int, direction: int) -> bool:
    return (
        version in VERSIONS
        and ptype in PDU_TYPES
        and MIN_HEADER <= hlen <= MAX_HEADER
        and fmt <= MAX_FORMAT
        and direction <= MAX_DIRECTION
    )


def _facts(
    version: int,
    ptype: int,
    plen: int,
    fmt: int,
    direction: int,
    corr: int,
    attrs: dict[int, bytes],
) -> dict[str, object]:
    facts: dict[str, object] = {
        "version": version,
        "pdu_type": PDU_TYPES[ptype],
        "payload_format": FORMAT_NAMES.get(fmt, str(fmt)) if fmt else "none",
        "payload_length": plen,
    }
    if direction:
        facts["direction"] = DIRECTIONS[direction]
    if corr:
        facts["correlation_id"] = corr
    if (seq := attrs.get(ATTR_SEQUENCE)) is not None and 1 <= len(seq) <= 8:
        facts["sequence"] = int.from_bytes(seq, "big")
    if (target := attrs.get(ATTR_TARGET)) is not None:
        facts["target"] = target[:128].decode("utf-8", "replace")
    return facts


def _carried(data: bytes, fmt: int, direction: int) -> list[Carried]:
    """The packet a PDU's payload holds, when its format is one that carries packets."""
    link = CARRIED_FORMATS.get(fmt)
    if link is None or (link != "ethernet" and not ip_fills(data, 0)):
        return []
    return [Carried(link, data, direction=TARGET_DIRECTIONS.get(direction))]


# Wireshark's 5G LI (X2/X3) dissector; a tshark without it rejects the rule.
ETSI_X2X3 = ProtocolSpec(
    "etsi-x2x3",
    "shim",
    sid=28,
    doc="etsi-x2x3.md",
    samples=("x2x3-xcc.pcap", "x2x3-keepalive.pcap"),
    wireshark=wireshark("5gli", "5gli"),
    no_dissector="This tshark has no 5G LI (ETSI TS 103 221-2) dissector.",
)


class EtsiX2X3Decoder(FramedStreamDecoder):
    name: ClassVar[str] = "etsi-x2x3"
    emits = (ETSI_X2X3,)
    kind: ClassVar[Kind] = "intercept"
    priority: ClassVar[int] = 30

    first_bytes = frozenset(v >> 8 for v in VERSIONS)
    second_bytes = frozenset(v & 0xFF for v in VERSIONS)

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        version, ptype, hlen = be16(head, 0), be16(head, 2), be32(head, 4)
        return (
            (version >= VERSIONS.start)
            & (version < VERSIONS.stop)
            & (ptype >= 1)
            & (ptype <= 4)
            & (hlen >= MIN_HEADER)
            & (hlen <= MAX_HEADER)
            & (head[:, 12] == 0)
            & (head[:, 14] == 0)
            & (head[:, 15] <= MAX_DIRECTION)
        )

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        if len(buf) < MIN_HEADER:
            return None
        version, ptype, hlen, plen, fmt, direction, _, _ = HEADER.unpack_from(buf)
        if not header_ok(version, ptype, hlen, fmt, direction):
            return -1
        return hlen + plen

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        return self._decoded(pdu, complete=True)

    def peek(self, head: bytes, state: StreamState) -> Decoded | None:
        return self._decoded(head, complete=False)

    def _decoded(self, pdu: bytes, *, complete: bool) -> Decoded | None:
        if len(pdu) < MIN_HEADER:
            return None
        version, ptype, hlen, plen, fmt, direction, xid, corr = HEADER.unpack_from(pdu)
        if not header_ok(version, ptype, hlen, fmt, direction) or len(pdu) < hlen:
            return None
        attrs = attributes(pdu, hlen)
        if attrs is None:
            return None
        keepalive = ptype in KEEPALIVES
        if keepalive and (plen or fmt):
            return None  # keepalives carry nothing
        facts = _facts(version, ptype, plen, fmt, direction, corr, attrs)
        session: dict[str, int | str] = {}
        if xid != bytes(16):
            session["xid"] = str(uuid.UUID(bytes=xid))
        carried = _carried(pdu[hlen : hlen + plen], fmt, direction) if complete and plen else []
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(pdu, 16)}: ETSI TS 103 221-2 PDU version {version}, "
                f"type {ptype} ({PDU_TYPES[ptype]}), header length {hlen} with "
                f"{len(attrs)} attribute(s), payload length {plen}, format {fmt}"
            ),
            session=session,
            carried=carried,
            facts=facts,
            strength=1.0 if complete else 0.9,
            header_len=hlen,
        )


DECODERS = [EtsiX2X3Decoder()]
