"""IPFIX (RFC 7011) over UDP and TCP, including PSAMP packet reports (RFC 5476/5477).

Content checks: version 10, message length equal to the datagram, an export time after
2000-01-01, and sets (2 templates, 3 options templates, ≥ 256 data) whose lengths chain exactly to
the end.  Templates are kept per stream and observation domain; data sets whose template has not
been seen yet still make the message a valid export and are counted.  A message whose records
carry packet sections (IE 313-316) is reported as "psamp", with the sampled bytes as carried.

Over TCP (RFC 7011 section 10.4) the messages follow each other in the byte stream, each framed
by its own length; the stream's templates live as long as the connection.  A file of IPFIX
messages (RFC 5655) is what a collector stored, not traffic: given as a capture, it is named
(``file_note``) rather than read.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar, cast

import numpy as np

from detector.protocols.base import Decoded, Decoder, Kind, PacketContext, ProtocolSpec
from detector.protocols.li_common import FramedStreamDecoder, StreamState, be16, be32
from detector.protocols.templates import (
    CFLOW,
    SetWalk,
    TemplateCache,
    TemplateExportDecoder,
    content_end,
    is_padding,
    make_template,
    parse_fields,
    plausible_secs,
    plausible_secs_col,
    walk_message,
)

if TYPE_CHECKING:
    import numpy.typing as npt

# version, length, export time, sequence number, observation domain id
HEADER = struct.Struct("!HHIII")
VERSION = 10
TEMPLATE_SET, OPTIONS_TEMPLATE_SET = 2, 3
_OPT_HDR = struct.Struct("!HHH")


def _options_template_set(
    walk: SetWalk, cache: TemplateCache, domain: int, data: bytes, s: int, e: int
) -> None:
    """Set 3: (template id, field count, scope field count, fields) records."""
    pos = s
    content = content_end(data, s, e)
    while not is_padding(pos, e, 4, content):
        tid, count = struct.unpack_from("!HH", data, pos)
        if count == 0:
            walk.withdraw(cache, domain, tid)
            pos += 4
            continue
        if walk.too_many_fields(cache, count):
            return
        if e - pos < 6:
            walk.malformed_templates += 1
            return
        _, _, scope = _OPT_HDR.unpack_from(data, pos)
        parsed = parse_fields(data, pos + 6, e, count, True)
        if parsed is None or tid < 256 or not 1 <= scope <= count:
            walk.malformed_templates += 1
            return
        fields, pos = parsed
        walk.add_template(cache, domain, make_template(tid, fields, scope))


# Exporters also send IPFIX to the NetFlow ports, but 4739/4740 are its own.
IPFIX = ProtocolSpec(
    "ipfix",
    "records",
    sid=44,
    doc="ipfix.md",
    samples=("ipfix.pcap", "ipfix-tcp.pcap"),
    ports=(4739, 4740),
    wireshark=CFLOW,
)
PSAMP = ProtocolSpec(
    "psamp",
    "records",
    sid=45,
    doc="ipfix.md",
    samples=("psamp.pcap",),
    ports=(4739, 4740),
    wireshark=CFLOW,
)


def message_starts(head: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Rows whose bytes start like an IPFIX message: version, export time, first set header."""
    sid = be16(head, 16)
    return (
        (be16(head, 0) == VERSION)
        & plausible_secs_col(be32(head, 4))
        & ((sid == TEMPLATE_SET) | (sid == OPTIONS_TEMPLATE_SET) | (sid >= 256))
        & (be16(head, 18) >= 4)
    )


class IpfixDecoder(TemplateExportDecoder):
    name: ClassVar[str] = "ipfix"
    emits = (IPFIX, PSAMP)
    ports: ClassVar[frozenset[int]] = frozenset({4739, 4740, 2055, 9995, 9996, 9991})

    first_bytes = frozenset({VERSION >> 8})
    second_bytes = frozenset({VERSION & 0xFF})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return message_starts(head) & (be16(head, 2) == length) & (length >= HEADER.size + 4)

    def stream_protocol(self, current: str, found: Decoded) -> str:
        # Messages with packet sections make the whole stream a PSAMP export.
        return PSAMP.name if found.protocol == PSAMP.name else current

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        return message(payload, state)


def message(payload: bytes, state: object | None) -> Decoded | None:
    """One whole IPFIX message (a datagram, or a message framed out of a TCP stream)."""
    if len(payload) < HEADER.size + 4:
        return None
    version, length, export_time, seq, domain = HEADER.unpack_from(payload)
    if version != VERSION or length != len(payload) or not plausible_secs(export_time):
        return None
    walked = walk_message(
        payload,
        HEADER.size,
        length,
        (TEMPLATE_SET, OPTIONS_TEMPLATE_SET),
        _options_template_set,
        state,
        domain,
    )
    if walked is None:
        return None
    n_sets, walk = walked
    sections = walk.psamp_sections
    header = (
        f"{payload[:4].hex(' ')}: IPFIX version 10, message length {length}, "
        f"observation domain {domain}, sequence {seq}, {n_sets} set(s)"
    )
    if sections:
        header += f", {sections} PSAMP packet section(s)"
    return walk.decoded(
        PSAMP.name if sections else IPFIX.name,
        header,
        {"observation_domain": domain},
        {"version": VERSION, "sequence": seq, "export_time": export_time, "sets": n_sets},
        HEADER.size,
    )


class TcpTemplates(TemplateCache):
    """An IPFIX connection's templates, and the bytes of the message still arriving."""

    __slots__ = ("buf", "dead", "pdus")

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray()
        self.dead = False
        self.pdus = 0


class IpfixTcpDecoder(FramedStreamDecoder):
    """IPFIX over TCP: messages framed by their length field, templates kept per connection."""

    name: ClassVar[str] = "ipfix-tcp"
    emits = (IPFIX, PSAMP)
    kind: ClassVar[Kind] = "flow-export"
    ports: ClassVar[frozenset[int]] = frozenset({4739, 4740})
    first_bytes = frozenset({VERSION >> 8})
    second_bytes = frozenset({VERSION & 0xFF})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        # A segment that starts a connection's stream starts a message, which may continue in
        # later segments (or be followed by others in this one).
        return (
            message_starts(head) & (be16(head, 2) >= HEADER.size + 4) & (length >= HEADER.size + 4)
        )

    def new_state(self) -> TcpTemplates:  # type: ignore[override]
        return TcpTemplates()

    def feed(self, data: bytes, ctx: PacketContext, state: object | None) -> list[Decoded]:
        if not isinstance(state, TcpTemplates) or state.dead:
            return []
        # The framing reads only buf, dead and pdus, which the template cache also holds.
        return self._feed(data, cast(StreamState, state))

    stream_protocol = IpfixDecoder.stream_protocol

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        if len(buf) < 4:
            return None
        version, length = struct.unpack_from("!HH", buf)
        return length if version == VERSION and length >= HEADER.size + 4 else 0

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        return message(pdu, state)

    def peek(self, head: bytes, state: StreamState) -> Decoded | None:
        """The start of a message still arriving: its header and first set header."""
        version, length, export_time, _seq, _domain = HEADER.unpack_from(head)
        sid, slen = struct.unpack_from("!HH", head, HEADER.size)
        if (
            version != VERSION
            or not plausible_secs(export_time)
            or not (sid in (TEMPLATE_SET, OPTIONS_TEMPLATE_SET) or sid >= 256)
            or not 4 <= slen <= length - HEADER.size
        ):
            return None
        return Decoded(IPFIX.name, "flow-export", f"{head[:4].hex(' ')}: IPFIX message start")

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        # A connection is taken for IPFIX only once a whole message has validated: the start of
        # one is too weak a sign in a byte stream, where any bytes frame themselves.
        found = self.feed(payload, ctx, self.new_state())
        return found[0] if found else None


def file_note(head: bytes) -> str | None:
    """What a file that starts with ``head`` (16 bytes or more) is, when it is an IPFIX file
    (RFC 5655: the messages a collector stored), for the message that it is not a capture."""
    if len(head) < HEADER.size:
        return None
    version, length, export_time, _seq, domain = HEADER.unpack_from(head)
    if version != VERSION or length < HEADER.size or not plausible_secs(export_time):
        return None
    when = datetime.fromtimestamp(export_time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"an IPFIX file (RFC 5655: flow records a collector stored; the first exported at "
        f"{when} by observation domain {domain}), not a packet capture. mirrorwatch finds "
        "exports on the wire: capture the traffic toward the collector instead"
    )


DECODERS: list[Decoder] = [IpfixDecoder(), IpfixTcpDecoder()]
