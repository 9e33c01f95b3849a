"""dnstap over TCP: a resolver (unbound, BIND, Knot, PowerDNS, CoreDNS) exporting every DNS query
and answer it handles, with the client's address, to a collector.

Frame Streams framing (fstrm): a *control frame* is ``00 00 00 00``, its length (4, big endian)
and a control type (ACCEPT 1, START 2, STOP 3, READY 4, FINISH 5) followed by fields (type 4,
length 4, value); field 1 is the content type, here ``protobuf:dnstap.Dnstap``.  The sender
opens with READY, the receiver answers ACCEPT, the sender sends START, then *data frames*: a
non-zero length (4, big endian) and one protobuf ``Dnstap`` message.

The protobuf is walked by hand (wire types 0, 1, 2, 5): ``Dnstap`` holds identity (1), version
(2), message (14) and type (15, MESSAGE = 1); ``Message`` holds its type (1: CLIENT_QUERY,
RESOLVER_RESPONSE...), the socket family and protocol (2, 3), the query and response addresses
and ports (4-7) and the DNS messages (10, 14), from which the question name is read.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.decode.frames import ip_str
from detector.protocols.base import Decoded, Kind, ProtocolSpec, RecordedFlow
from detector.protocols.li_common import FramedStreamDecoder, StreamState, be32, hexbytes

if TYPE_CHECKING:
    import numpy.typing as npt

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"
CONTROL_TYPES = {1: "accept", 2: "start", 3: "stop", 4: "ready", 5: "finish"}
FIELD_CONTENT_TYPE = 1
MAX_CONTROL = 512
MAX_FRAME = 1 << 20
MESSAGE_TYPES = {
    1: "AUTH_QUERY", 2: "AUTH_RESPONSE", 3: "RESOLVER_QUERY", 4: "RESOLVER_RESPONSE",
    5: "CLIENT_QUERY", 6: "CLIENT_RESPONSE", 7: "FORWARDER_QUERY", 8: "FORWARDER_RESPONSE",
    9: "STUB_QUERY", 10: "STUB_RESPONSE", 11: "TOOL_QUERY", 12: "TOOL_RESPONSE",
    13: "UPDATE_QUERY", 14: "UPDATE_RESPONSE",
}  # fmt: skip
SOCKET_PROTOCOLS = {1: 17, 2: 6, 3: 6, 4: 17, 5: 6, 6: 6}  # UDP, TCP, DOT, DOH, DNSCryptUDP/TCP
DNSTAP_MESSAGE = 1
# Dnstap fields.
F_IDENTITY, F_VERSION, F_MESSAGE, F_TYPE = 1, 2, 14, 15
# Message fields.
M_TYPE, M_PROTOCOL, M_QADDR, M_RADDR, M_QPORT, M_RPORT = 1, 3, 4, 5, 6, 7
M_QUERY, M_RESPONSE = 10, 14
_CTRL = struct.Struct("!III")  # escape, length, control type


def varint(buf: bytes, off: int) -> tuple[int, int]:
    """(value, next offset) of the varint at ``off``; ValueError past the end or over 10 bytes."""
    value = shift = 0
    for i in range(10):
        b = buf[off + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, off + i + 1
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def protobuf_fields(buf: bytes) -> dict[int, list[int | bytes]] | None:
    """Every field of one protobuf message by number, or None unless the walk ends exactly at the
    end of ``buf`` (the check that makes random bytes fail)."""
    out: dict[int, list[int | bytes]] = {}
    off = 0
    try:
        while off < len(buf):
            key, off = varint(buf, off)
            number, wire = key >> 3, key & 7
            if number == 0:
                return None
            value: int | bytes
            if wire == 0:
                value, off = varint(buf, off)
            elif wire == 1:
                value, off = int.from_bytes(buf[off : off + 8], "little"), off + 8
            elif wire == 2:
                n, off = varint(buf, off)
                value, off = buf[off : off + n], off + n
            elif wire == 5:
                value, off = int.from_bytes(buf[off : off + 4], "little"), off + 4
            else:
                return None
            if off > len(buf):
                return None
            out.setdefault(number, []).append(value)
    except (IndexError, ValueError):
        return None
    return out


def question_name(dns: bytes) -> str | None:
    """The first question's name of a DNS message (labels only: a question is not compressed)."""
    if len(dns) < 17 or int.from_bytes(dns[4:6], "big") == 0:
        return None
    labels, off = [], 12
    while off < len(dns):
        n = dns[off]
        if n == 0:
            return ".".join(labels) + "." if labels else "."
        if n > 63 or off + 1 + n > len(dns):
            return None
        labels.append(dns[off + 1 : off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return None


def _one(fields: dict[int, list[int | bytes]], number: int, kind: type) -> object | None:
    values = fields.get(number)
    return values[0] if values and isinstance(values[0], kind) else None


def _address(raw: object) -> str | None:
    return ip_str(raw) if isinstance(raw, bytes) and len(raw) in (4, 16) else None


def _text(fields: dict[int, list[int | bytes]], number: int) -> str | None:
    """A string field, its first 64 bytes, or None when absent or empty."""
    raw = _one(fields, number, bytes)
    return raw[:64].decode("utf-8", "replace") if isinstance(raw, bytes) and raw else None


def _query_name(msg: dict[int, list[int | bytes]]) -> str | None:
    """The question of the query, else of the response, that the message carries."""
    for number in (M_QUERY, M_RESPONSE):
        dns = _one(msg, number, bytes)
        name = question_name(dns) if isinstance(dns, bytes) else None
        if name:
            return name[:255]
    return None


def _port(msg: dict[int, list[int | bytes]], number: int) -> int:
    port = _one(msg, number, int)
    return int(port) & 0xFFFF if isinstance(port, int) else 0


def _connection(msg: dict[int, list[int | bytes]], qaddr: str, raddr: str) -> RecordedFlow:
    """The DNS exchange a message logs, as the flow record it amounts to."""
    proto = SOCKET_PROTOCOLS.get(int(_one(msg, M_PROTOCOL, int) or 0), 0)
    return RecordedFlow(qaddr, raddr, proto, _port(msg, M_QPORT), _port(msg, M_RPORT), packets=1)


DNSTAP = ProtocolSpec(
    "dnstap", "records", sid=48, doc="dnstap.md", samples=("dnstap.pcap",), log="events"
)


class DnstapDecoder(FramedStreamDecoder):
    name: ClassVar[str] = "dnstap"
    emits = (DNSTAP,)
    kind: ClassVar[Kind] = "flow-export"
    ports: ClassVar[frozenset[int]] = frozenset({6000, 53535})
    priority: ClassVar[int] = 30

    first_bytes = frozenset(range((MAX_FRAME >> 24) + 1))
    second_bytes = frozenset(range((MAX_FRAME >> 16 & 0xFF) + 1))

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        frame, size = be32(head, 0), be32(head, 4)
        control = (frame == 0) & (size >= 4) & (size <= MAX_CONTROL)
        rows = np.flatnonzero(control)
        if len(rows):
            kind = be32(head[rows], 8)
            control[rows] = (kind >= 1) & (kind <= 5)
        # A data frame (a connection joined after its start): length, then the Dnstap message,
        # whose encoders write identity (field 1), version (2) or message (14) first.
        first = head[:, 4]
        data = (
            (frame >= 16)
            & (frame < MAX_FRAME)
            & ((first == 0x0A) | (first == 0x12) | (first == 0x72))
        )
        return control | data

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        if len(buf) < 8:
            return None
        n = int.from_bytes(buf[:4], "big")
        if n == 0:
            size = int.from_bytes(buf[4:8], "big")
            return 8 + size if 4 <= size <= MAX_CONTROL else -1
        return 4 + n if n < MAX_FRAME else -1

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        if pdu[:4] == bytes(4):
            return self._control(pdu, state)
        return self._data(pdu, state)

    def _control(self, pdu: bytes, state: StreamState) -> Decoded | None:
        _, size, ctype = _CTRL.unpack_from(pdu)
        if ctype not in CONTROL_TYPES:
            return None
        content: list[bytes] = []
        off = 12
        while off < len(pdu):
            if len(pdu) - off < 8:
                return None  # a field header cut short
            ftype, flen = struct.unpack_from("!II", pdu, off)
            if ftype != FIELD_CONTENT_TYPE or off + 8 + flen > len(pdu):
                return None
            content.append(pdu[off + 8 : off + 8 + flen])
            off += 8 + flen
        # READY and ACCEPT list what the peer can take; START names the one content type.
        if content and CONTENT_TYPE not in content:
            return None
        if not content and ctype in (2, 4):
            return None
        state.info["control"] = state.info.get("control", 0) + 1
        what = CONTROL_TYPES[ctype].upper()
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(pdu, 12)}: Frame Streams control frame {what}, length {size}"
                + (f", content type {CONTENT_TYPE.decode()}" if content else "")
            ),
            facts={"frame": f"control-{CONTROL_TYPES[ctype]}"},
            header_len=12,
        )

    def _data(self, pdu: bytes, state: StreamState) -> Decoded | None:
        outer = protobuf_fields(pdu[4:])
        if outer is None or _one(outer, F_TYPE, int) != DNSTAP_MESSAGE:
            return None
        raw = _one(outer, F_MESSAGE, bytes)
        msg = protobuf_fields(raw) if isinstance(raw, bytes) else None
        mtype = _one(msg, M_TYPE, int) if msg is not None else None
        if msg is None or mtype not in MESSAGE_TYPES:
            return None
        facts: dict[str, object] = {"frame": "data", "message_type": MESSAGE_TYPES[mtype]}
        session: dict[str, int | str] = {}
        if ident := _text(outer, F_IDENTITY):
            session["identity"] = ident
        if version := _text(outer, F_VERSION):
            facts["version"] = version
        if name := _query_name(msg):
            facts["query_name"] = name
        qaddr, raddr = _address(_one(msg, M_QADDR, bytes)), _address(_one(msg, M_RADDR, bytes))
        if qaddr:
            facts["client"] = qaddr
        records = [_connection(msg, qaddr, raddr)] if qaddr and raddr else []
        # A data frame after a control frame of this stream is proven framing; alone, it
        # rests on the protobuf walk.
        strength = 1.0 if state.info.get("control") else 0.8
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(pdu, 8)}: Frame Streams data frame of {len(pdu) - 4} bytes, dnstap "
                f"{MESSAGE_TYPES[mtype]}"
                + (f" for {facts['query_name']}" if "query_name" in facts else "")
                + (f" from {qaddr}" if qaddr else "")
            ),
            session=session,
            records=records,
            facts=facts,
            strength=strength,
            header_len=4,
        )


DECODERS = [DnstapDecoder()]
