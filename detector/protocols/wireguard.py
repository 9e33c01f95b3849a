"""WireGuard: UDP, default port 51820.

Every message starts with a type byte (1 handshake initiation, 2 handshake response, 3 cookie
reply, 4 transport data) and three zero bytes.  The first three have fixed sizes; transport
data is a 16-byte header plus ciphertext padded to 16 bytes with a 16-byte tag, so at least 32
bytes (a keep-alive) and a multiple of 16 -- except that padding stops at the interface MTU, so
a full-size packet (interface MTU + 32, e.g. 1452 for the usual 1420) may end anywhere.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from detector.protocols.base import Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head

if TYPE_CHECKING:
    import numpy.typing as npt

INITIATION, RESPONSE, COOKIE, DATA = 1, 2, 3, 4
FIXED_LEN = {INITIATION: 148, RESPONSE: 92, COOKIE: 64}
NAMES = {INITIATION: "handshake initiation", RESPONSE: "handshake response",
         COOKIE: "cookie reply", DATA: "transport data"}  # fmt: skip
MIN_DATA_LEN = 32
# Smallest full-size data packet: IPv4's minimum MTU (576) + 32 bytes of header and tag.
MIN_MTU_SIZED = 576 + 32
INDEXES = struct.Struct("!II")


def _length_ok(mtype: int, n: int) -> bool:
    if mtype == DATA:
        return n >= MIN_DATA_LEN and (n % 16 == 0 or n >= MIN_MTU_SIZED)
    return FIXED_LEN.get(mtype) == n


WIREGUARD = ProtocolSpec(
    "wireguard", "tunnel", sid=75, doc="tunnels.md", samples=("wireguard.pcap",)
)


class WireGuardDecoder(Decoder):
    name = "wireguard"
    emits = (WIREGUARD,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({51820})

    first_bytes = frozenset({INITIATION, RESPONSE, COOKIE, DATA})
    second_bytes = frozenset({0})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        t = head[:, 0]
        sized = (
            ((t == INITIATION) & (length == FIXED_LEN[INITIATION]))
            | ((t == RESPONSE) & (length == FIXED_LEN[RESPONSE]))
            | ((t == COOKIE) & (length == FIXED_LEN[COOKIE]))
            | (
                (t == DATA)
                & (length >= MIN_DATA_LEN)
                & ((length % 16 == 0) | (length >= MIN_MTU_SIZED))
            )
        )
        return sized & (head[:, 1] == 0) & (head[:, 2] == 0) & (head[:, 3] == 0)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < MIN_DATA_LEN or payload[1:4] != b"\x00\x00\x00":
            return None
        mtype = payload[0]
        if not _length_ok(mtype, len(payload)):
            return None
        first, second = INDEXES.unpack_from(payload, 4)
        facts: dict[str, object] = {"msg_type": mtype}
        if mtype == INITIATION:
            session: dict[str, int | str] = {"sender_index": first}
        elif mtype == RESPONSE:
            session = {"sender_index": first, "receiver_index": second}
        else:
            session = {"receiver_index": first}
        if mtype == DATA:
            facts["counter"] = int.from_bytes(payload[8:16], "little")
        return Decoded(
            protocol="wireguard",
            kind="tunnel",
            header=f"{hex_head(payload, 8)}: WireGuard {NAMES[mtype]}, {len(payload)} bytes",
            session=session,
            facts=facts,
            # Exact sizes and zero bytes, but nothing in clear to cross-check.
            strength=0.9 if mtype != DATA else 0.7,
            header_len=16 if mtype == DATA else len(payload),
        )


DECODERS: list[Decoder] = [WireGuardDecoder()]
