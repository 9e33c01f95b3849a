"""OpenVPN over UDP, port 1194.

The first byte is opcode (5 bits) | key id (3 bits).  Control packets follow with an 8-byte
session id, then (without tls-auth/tls-crypt) an ACK count, ACK ids, the peer's session id when
ACKs are present, and a 4-byte packet id.  Data packets (P_DATA_V1, and P_DATA_V2 with a 3-byte
peer id) are encrypted throughout.  No content signature; port required: ``decode`` accepts only
packets to or from UDP 1194, and ``ports_required`` tells the engine it may skip other ports
before the (necessarily loose) prefilter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.protocols.base import Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head

if TYPE_CHECKING:
    import numpy.typing as npt

OPENVPN_PORT = 1194
OPCODES = {
    1: "P_CONTROL_HARD_RESET_CLIENT_V1",
    2: "P_CONTROL_HARD_RESET_SERVER_V1",
    3: "P_CONTROL_SOFT_RESET_V1",
    4: "P_CONTROL_V1",
    5: "P_ACK_V1",
    6: "P_DATA_V1",
    7: "P_CONTROL_HARD_RESET_CLIENT_V2",
    8: "P_CONTROL_HARD_RESET_SERVER_V2",
    9: "P_DATA_V2",
    10: "P_CONTROL_HARD_RESET_CLIENT_V3",
    11: "P_CONTROL_WKC_V1",
}
DATA_V1, DATA_V2 = 6, 9
HARD_RESETS = (1, 2, 7, 8, 10)
# Opcode byte + session id + ACK count: the shortest control packet.
MIN_CONTROL = 10
# Opcode byte (+ peer id), then at least a packet id or an AEAD tag.
MIN_DATA = 16


def _plain_control(payload: bytes) -> bool:
    """True when the bytes after the session id read as a control header without tls-auth:
    at most 8 ACKs, and their length fits."""
    acks = payload[9]
    need = MIN_CONTROL + acks * 4 + (8 if acks else 0)
    return acks <= 8 and len(payload) >= need


OPENVPN = ProtocolSpec("openvpn", "tunnel", sid=76, doc="tunnels.md", samples=("openvpn.pcap",))


class OpenVpnDecoder(Decoder):
    name = "openvpn"
    emits = (OPENVPN,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({OPENVPN_PORT})
    ports_required: ClassVar[bool] = True
    priority = 90  # after everything with a real signature

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        opcode = head[:, 0] >> 3
        return (opcode >= 1) & (opcode <= 11) & (length >= MIN_CONTROL)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if OPENVPN_PORT not in (ctx.sport, ctx.dport) or len(payload) < MIN_CONTROL:
            return None
        opcode, key_id = payload[0] >> 3, payload[0] & 0x07
        if opcode not in OPCODES or (opcode in HARD_RESETS and key_id != 0):
            return None
        facts: dict[str, object] = {"opcode": opcode, "key_id": key_id}
        session: dict[str, int | str] = {}
        strength = 0.3
        if opcode in (DATA_V1, DATA_V2):
            if len(payload) < MIN_DATA:
                return None
            if opcode == DATA_V2:
                session["peer_id"] = int.from_bytes(payload[1:4], "big")
        else:
            session["session_id"] = payload[1:9].hex()
            facts["tls_auth"] = not _plain_control(payload)
            if not facts["tls_auth"]:
                strength = 0.5
        return Decoded(
            protocol="openvpn",
            kind="tunnel",
            header=f"{hex_head(payload, 1)}: OpenVPN {OPCODES[opcode]}, key id {key_id}",
            session=session,
            facts=facts,
            strength=strength,
            header_len=1,
        )


DECODERS: list[Decoder] = [OpenVpnDecoder()]
