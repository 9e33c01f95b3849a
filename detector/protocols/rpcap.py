"""rpcap, remote pcap (libpcap/WinPcap/Npcap rpcapd; some access points): a remote interface's
frames streamed to a capture client.

Every message starts with an 8-byte header: version(1) = 0, type(1), value(2), payload length(4).
Control connection (TCP 2002): requests 0x01-0x0B, replies with 0x80 set; each type has a known
body size.  Data (its own TCP connection, or UDP): type 7 PACKET, then a 20-byte packet header
(seconds, microseconds, caplen, len, packet number) and the captured frame, so payload length is
exactly 20 + caplen.  The frames' link type comes from the OPEN reply on the control connection,
remembered per server address; without one, Ethernet is assumed when the frame validates.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import TYPE_CHECKING, ClassVar

from detector.decode.frames import ethernet_valid, ip_version_at
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    InnerLink,
    Kind,
    PacketContext,
    ProtocolSpec,
    Transport,
    wireshark,
)
from detector.protocols.li_common import (
    FramedStreamDecoder,
    StreamState,
    be16,
    be32,
    hexbytes,
    link_for_linktype,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HEADER = struct.Struct("!BBHI")
HEADER_LEN = HEADER.size
PKTHDR = struct.Struct("!IIIII")
PKTHDR_LEN = PKTHDR.size
OPEN_REPLY = struct.Struct("!ii")
AUTH = struct.Struct("!HHHH")
REPLY = 0x80
ERROR, FINDALLIF, OPEN, STARTCAP, UPDATEFILTER, CLOSE, PACKET = 1, 2, 3, 4, 5, 6, 7
AUTH_REQ, STATS, ENDCAP, SETSAMPLING = 8, 9, 10, 11
NAMES = {
    ERROR: "error",
    FINDALLIF: "findalldevs",
    OPEN: "open",
    STARTCAP: "startcap",
    UPDATEFILTER: "updatefilter",
    CLOSE: "close",
    PACKET: "packet",
    AUTH_REQ: "auth",
    STATS: "stats",
    ENDCAP: "endcap",
    SETSAMPLING: "setsampling",
}
MAX_CAPLEN = 1 << 18
MAX_BODY = 1 << 16
BPF_INSN = 8
# Server address → link type from its OPEN reply, bounded (oldest forgotten first).
_LINKTYPES: OrderedDict[str, int] = OrderedDict()
_LINKTYPES_MAX = 1024


def remember_linktype(server: str, linktype: int) -> None:
    _LINKTYPES[server] = linktype
    _LINKTYPES.move_to_end(server)
    while len(_LINKTYPES) > _LINKTYPES_MAX:
        _LINKTYPES.popitem(last=False)


def guess_link(frame: bytes) -> InnerLink:
    if ethernet_valid(frame, strict=True):
        return "ethernet"
    if ip_version_at(frame, strict=True):
        return "ip"
    return "raw"


def control_ok(mtype: int, value: int, plen: int, body: bytes) -> bool:
    """Whether a control message's body size agrees with its type (``body`` may be cut short)."""
    request, is_reply = mtype & ~REPLY, bool(mtype & REPLY)
    if request not in NAMES or request == PACKET or (is_reply and request in (ERROR, CLOSE)):
        return False
    if plen > MAX_BODY:
        return False
    if is_reply:
        fixed = {OPEN: (8,), STARTCAP: (8,), UPDATEFILTER: (0,), AUTH_REQ: (0, 8), STATS: (16,)}
        fixed |= {ENDCAP: (0,), SETSAMPLING: (0,)}
        return request == FINDALLIF or plen in fixed.get(request, (plen,))
    if request in (FINDALLIF, CLOSE, STATS, ENDCAP):
        return plen == 0 and value == 0
    if request == OPEN:
        return 0 < plen <= 1024
    if request == STARTCAP:  # 12-byte request, 8-byte filter header, BPF instructions
        return plen >= 20 and (plen - 20) % BPF_INSN == 0
    if request == UPDATEFILTER:
        return plen >= 8 and (plen - 8) % BPF_INSN == 0
    if request == SETSAMPLING:
        return plen == 8
    if request == AUTH_REQ:
        if plen < AUTH.size:
            return False
        if len(body) < AUTH.size:
            return True  # cut short: nothing more to check
        _atype, _, slen1, slen2 = AUTH.unpack_from(body)
        return plen == AUTH.size + slen1 + slen2
    return 0 < plen <= 1024  # ERROR: an error code and its message


def packet_ok(value: int, plen: int, msg: bytes) -> bool:
    if plen < PKTHDR_LEN or len(msg) < HEADER_LEN + PKTHDR_LEN:
        return False
    _secs, _usecs, caplen, length, _npkt = PKTHDR.unpack_from(msg, HEADER_LEN)
    return plen == PKTHDR_LEN + caplen and caplen <= length and caplen <= MAX_CAPLEN


def packet_decoded(
    name: str, kind: Kind, msg: bytes, linktype: int | None, strength: float
) -> Decoded:
    _secs, _usecs, caplen, length, npkt = PKTHDR.unpack_from(msg, HEADER_LEN)
    start = HEADER_LEN + PKTHDR_LEN
    frame = msg[start : start + caplen]
    carried = []
    if len(frame) == caplen and caplen:
        link = link_for_linktype(linktype) if linktype is not None else guess_link(frame)
        carried.append(Carried(link, frame, orig_len=length))
    return Decoded(
        protocol=name,
        kind=kind,
        header=(
            f"{hexbytes(msg, HEADER_LEN)}: rpcap version 0 PACKET, payload length "
            f"{PKTHDR_LEN + caplen} = 20-byte packet header + caplen {caplen} (of {length}), "
            f"packet number {npkt}"
        ),
        carried=carried,
        facts={"message": "packet", "caplen": caplen, "npkt": npkt},
        strength=strength,
        header_len=start,
    )


# RPCAP is found by Wireshark's heuristic; it offers no Decode As on TCP ports.
RPCAP = ProtocolSpec(
    "rpcap",
    "copy",
    sid=8,
    doc="rpcap.md",
    samples=("rpcap.pcap",),
    wireshark=wireshark(None, "rpcap"),
)


class RpcapStreamDecoder(FramedStreamDecoder):
    name: ClassVar[str] = "rpcap"
    emits = (RPCAP,)
    kind: ClassVar[Kind] = "mirror"
    ports: ClassVar[frozenset[int]] = frozenset({2002, 2003})
    priority: ClassVar[int] = 40
    heuristic: ClassVar[bool] = True

    first_bytes = frozenset({0})  # version 0
    second_bytes = frozenset(b for b in range(256) if ERROR <= b & 0x7F <= SETSAMPLING)

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        request = head[:, 1] & 0x7F
        return (
            (head[:, 0] == 0)
            & (request >= ERROR)
            & (request <= SETSAMPLING)
            & (be32(head, 4) <= max(MAX_BODY, PKTHDR_LEN + MAX_CAPLEN))
        )

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        if len(buf) < HEADER_LEN:
            return None
        ver, mtype, _value, plen = HEADER.unpack_from(buf)
        if ver != 0 or (mtype & 0x7F) not in NAMES:
            return -1
        return HEADER_LEN + plen

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        return self._message(pdu, state, complete=True)

    def peek(self, head: bytes, state: StreamState) -> Decoded | None:
        return self._message(head, state, complete=False)

    def _message(self, msg: bytes, state: StreamState, *, complete: bool) -> Decoded | None:
        if len(msg) < HEADER_LEN:
            return None
        ver, mtype, value, plen = HEADER.unpack_from(msg)
        if ver != 0:
            return None
        if mtype == PACKET:
            if not packet_ok(value, plen, msg):
                return None
            linktype = state.info.get("linktype", _LINKTYPES.get(state.src))
            return packet_decoded(self.name, self.kind, msg, linktype, 1.0 if complete else 0.9)
        body = msg[HEADER_LEN:]
        if not control_ok(mtype, value, plen, body):
            return None
        facts: dict[str, object] = {
            "message": NAMES[mtype & ~REPLY] + ("-reply" if mtype & REPLY else ""),
            "control": True,
        }
        if mtype == OPEN | REPLY and len(body) >= OPEN_REPLY.size:
            linktype, _tzoff = OPEN_REPLY.unpack_from(body)
            facts["linktype"] = linktype
            state.info["linktype"] = linktype
            if state.src:
                remember_linktype(state.src, linktype)
        if mtype == OPEN and complete:
            facts["device"] = body[:128].decode("utf-8", "replace")
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(msg, HEADER_LEN)}: rpcap version 0 control message type "
                f"{mtype:#04x} ({facts['message']}), value {value}, payload length {plen}"
            ),
            facts=facts,
            # Header-only messages (CLOSE, ENDCAP) are mostly zero bytes: weak alone.
            strength=0.7 if plen else 0.4,
            header_len=HEADER_LEN,
        )


class RpcapUdpDecoder(Decoder):
    """rpcap data sent over UDP (STARTCAP flag DGRAM): one PACKET message per datagram."""

    name: ClassVar[str] = "rpcap"
    emits = (RPCAP,)
    kind: ClassVar[Kind] = "mirror"
    transport: ClassVar[Transport] = "udp"
    priority: ClassVar[int] = 40
    heuristic: ClassVar[bool] = True

    first_bytes = frozenset({PACKET >> 8})
    second_bytes = frozenset({PACKET & 0xFF})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        plen = be32(head, 4)
        return (
            (be16(head, 0) == PACKET)
            & (plen == length - HEADER_LEN)
            & (be32(head, HEADER_LEN + 8) + PKTHDR_LEN == plen)
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < HEADER_LEN + PKTHDR_LEN:
            return None
        ver, mtype, value, plen = HEADER.unpack_from(payload)
        if ver != 0 or mtype != PACKET or plen != len(payload) - HEADER_LEN:
            return None
        if not packet_ok(value, plen, payload):
            return None
        return packet_decoded(self.name, self.kind, payload, _LINKTYPES.get(ctx.src), 1.0)


DECODERS = [RpcapStreamDecoder(), RpcapUdpDecoder()]
