"""LISP, the Locator/ID Separation Protocol (RFC 9300, RFC 9301): IP-in-UDP tunnels between
routers (xTRs), and their mapping control messages.

Data plane, UDP 4341 (and 4343, where EIGRP OTP sends LISP-encapsulated packets):
    flags N L E V I + 3 reserved (1), nonce or map-version (3), instance id / locator status
    bits (4), then the tunnelled IPv4/IPv6 packet.  N (nonce present) and V (map-version
    present) exclude each other.
Control plane, UDP 4342: the message type in the first four bits (1 Map-Request, 2 Map-Reply,
3 Map-Register, 4 Map-Notify, 5 Map-Notify-Ack, 6 Map-Referral, 7 Info, 8 Encapsulated Control
Message).  An ECM is a 4-byte header before an IP/UDP packet holding another control message.

The header has no magic number: an 8-byte LISP header is byte for byte a jmirror header and the
4-byte ECM header a PCLI CCCID, so LISP is recognised on its registered ports, where it wins over
those guesses.  A LISP tunnel carries traffic to be delivered: a tunnel finding at info.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head, ip_version_at

if TYPE_CHECKING:
    import numpy.typing as npt

LISP_DATA, LISP_CONTROL, LISP_EIGRP_OTP = 4341, 4342, 4343
DATA_HEADER_LEN = 8
ECM_HEADER_LEN = 4
FLAG_N, FLAG_V, FLAG_I = 0x80, 0x10, 0x08
MAP_REQUEST, ECM = 1, 8
CONTROL_TYPES = {
    1: "map-request",
    2: "map-reply",
    3: "map-register",
    4: "map-notify",
    5: "map-notify-ack",
    6: "map-referral",
    7: "info",
    8: "encapsulated-control",
}
# The shortest control message: a Map-Reply or Register header with its nonce.
MIN_CONTROL = 12


class LispDecoder(Decoder):
    """Both planes: tunnels over UDP, recognised on their ports only, ahead of the guesses."""

    kind = "tunnel"
    transport = "udp"
    ports_required = True
    priority = 20


LISP_DATA_SPEC = ProtocolSpec(
    "lisp", "tunnel", sid=84, doc="tunnels.md", samples=("lisp-data.pcap",)
)
LISP_CONTROL_SPEC = ProtocolSpec(
    "lisp-control", "tunnel", sid=85, doc="tunnels.md", samples=("lisp-control.pcap",)
)


class LispDataDecoder(LispDecoder):
    name = "lisp"
    emits = (LISP_DATA_SPEC,)
    ports = frozenset({LISP_DATA, LISP_EIGRP_OTP})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        b0, ipv = head[:, 0], head[:, DATA_HEADER_LEN] >> 4
        nonce_and_version = (b0 & (FLAG_N | FLAG_V)) == (FLAG_N | FLAG_V)
        return ~nonce_and_version & ((ipv == 4) | (ipv == 6)) & (length >= DATA_HEADER_LEN + 20)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < DATA_HEADER_LEN + 20:
            return None
        flags = payload[0]
        if flags & FLAG_N and flags & FLAG_V:
            return None
        version = ip_version_at(payload, DATA_HEADER_LEN)
        if not version:
            return None
        word = int.from_bytes(payload[4:8], "big")
        session: dict[str, int | str] = {}
        if flags & FLAG_I:
            session["instance_id"] = word >> 8
        what = "EIGRP OTP over LISP" if LISP_EIGRP_OTP in (ctx.sport, ctx.dport) else "LISP data"
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=f"{hex_head(payload, DATA_HEADER_LEN)}: {what} header, flags 0x{flags:02x} "
            f"(N {flags >> 7}, L {(flags >> 6) & 1}, E {(flags >> 5) & 1}, V {(flags >> 4) & 1}, "
            f"I {(flags >> 3) & 1}); an IPv{version} packet follows",
            session=session,
            carried=[Carried("ip", bytes(payload[DATA_HEADER_LEN:]))],
            facts={"plane": "data", "flags": flags},
            header_len=DATA_HEADER_LEN,
        )


class LispControlDecoder(LispDecoder):
    name = "lisp-control"
    emits = (LISP_CONTROL_SPEC,)
    ports = frozenset({LISP_CONTROL})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        mtype = head[:, 0] >> 4
        return (mtype >= MAP_REQUEST) & (mtype <= ECM) & (length >= MIN_CONTROL)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < MIN_CONTROL:
            return None
        mtype = payload[0] >> 4
        name = CONTROL_TYPES.get(mtype)
        if name is None:
            return None
        carried: list[Carried] = []
        header_len = len(payload)
        if mtype == ECM:
            version = ip_version_at(payload, ECM_HEADER_LEN)
            if not version:
                return None
            carried.append(Carried("ip", bytes(payload[ECM_HEADER_LEN:])))
            header_len = ECM_HEADER_LEN
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=f"{hex_head(payload, 4)}: LISP control message type {mtype} ({name})"
            + ("; an IP packet with the inner control message follows" if carried else ""),
            carried=carried,
            facts={"plane": "control", "message": name},
            header_len=header_len,
        )


DECODERS: list[Decoder] = [LispDataDecoder(), LispControlDecoder()]
