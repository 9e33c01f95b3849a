"""AYIYA, "Anything In Anything" (SixXS tunnel broker protocol), UDP 5072.

Header: id-len (4 bits, identity is 2**id-len bytes) | id-type (0 none, 1 integer, 2 string),
signature length (4 bits, 4-byte units) | hash method (0 none, 1 MD5, 2 SHA-1),
auth method (0 none, 1 shared secret, 2 public key) | opcode (0 noop .. 7 query response),
next header (an IP protocol number), 4-byte epoch (clocks must agree within minutes), then
identity, signature, and the payload.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from detector.decode.lut import lut
from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head, ip_version_at

if TYPE_CHECKING:
    import numpy.typing as npt

HEADER = struct.Struct("!BBBBI")
OPCODES = ("noop", "forward", "echo request", "echo request and forward", "echo response",
           "motd", "query request", "query response")  # fmt: skip
FORWARDING = (1, 3)
NEXT_HEADERS = {4: 4, 41: 6, 59: 0}  # IPv4, IPv6, no next header -> carried IP version
# 2000-01-01: AYIYA rejects packets whose epoch is not close to the receiver's clock.
MIN_EPOCH = 946_684_800
MAX_ID_LEN = 8


_NEXT_LUT = lut(NEXT_HEADERS)


AYIYA = ProtocolSpec("ayiya", "tunnel", sid=71, doc="tunnels.md", samples=("ayiya.pcap",))


class AyiyaDecoder(Decoder):
    name = "ayiya"
    emits = (AYIYA,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({5072})

    first_bytes = frozenset(b for b in range(256) if b >> 4 <= MAX_ID_LEN and b & 0x0F <= 2)
    second_bytes = frozenset(b for b in range(256) if b & 0x0F <= 2)

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        b0, b1, b2 = head[:, 0], head[:, 1], head[:, 2]
        return (
            ((b0 >> 4) <= MAX_ID_LEN)
            & ((b0 & 0x0F) <= 2)
            & ((b1 & 0x0F) <= 2)
            & ((b2 >> 4) <= 2)
            & ((b2 & 0x0F) <= 7)
            & _NEXT_LUT[head[:, 3]]
            & (head[:, 4] >= MIN_EPOCH >> 24)
            & (length >= 8)
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < 8:
            return None
        b0, b1, b2, next_header, epoch = HEADER.unpack_from(payload)
        id_len, id_type = b0 >> 4, b0 & 0x0F
        sig_len, hash_method = (b1 >> 4) * 4, b1 & 0x0F
        auth_method, opcode = b2 >> 4, b2 & 0x0F
        if (
            id_len > MAX_ID_LEN
            or id_type > 2
            or hash_method > 2
            or auth_method > 2
            or opcode >= len(OPCODES)
            or next_header not in NEXT_HEADERS
            or epoch < MIN_EPOCH
        ):
            return None
        ident_end = 8 + (1 << id_len)
        off = ident_end + sig_len
        if off > len(payload):
            return None
        identity = bytes(payload[8:ident_end])
        carried: list[Carried] = []
        if opcode in FORWARDING and NEXT_HEADERS[next_header]:
            if ip_version_at(payload, off) != NEXT_HEADERS[next_header]:
                return None
            carried.append(Carried(link="ip", data=bytes(payload[off:])))
        return Decoded(
            protocol="ayiya",
            kind="tunnel",
            header=f"{hex_head(payload, 4)}: AYIYA {OPCODES[opcode]}, identity {1 << id_len} "
            f"bytes, signature {sig_len} bytes, next header {next_header}",
            session={"identity": identity.hex()},
            carried=carried,
            facts={"opcode": opcode, "epoch": epoch},
            strength=1.0 if carried else 0.6,
            header_len=off,
        )


DECODERS: list[Decoder] = [AyiyaDecoder()]
