"""Teredo (RFC 4380): IPv6 over UDP through NATs, server port 3544.

The UDP payload is an IPv6 packet, optionally preceded by an authentication indicator
(00 01, id-len, auth-len, client id, auth value, 8-byte nonce, confirmation byte) and/or an
origin indication (00 00, obfuscated port and IPv4 address: 8 bytes).  One of the IPv6
addresses is a Teredo address in 2001:0::/32, except in the qualification exchange (router
solicitation/advertisement between link-local and multicast addresses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from detector.decode.frames import ip_str
from detector.prefilter_route import byte_values
from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head, ip_version_at

if TYPE_CHECKING:
    import numpy.typing as npt

TEREDO_PREFIX = b"\x20\x01\x00\x00"
ICMPV6 = 58
ROUTER_SOLICIT_ADVERT = (133, 134)


def _teredo_ok(pkt: bytes) -> bool:
    src, dst = pkt[8:24], pkt[24:40]
    if src[:4] == TEREDO_PREFIX or dst[:4] == TEREDO_PREFIX:
        return True
    # Qualification: link-local source, ICMPv6 router solicitation or advertisement.
    return (
        src[0] == 0xFE
        and src[1] & 0xC0 == 0x80
        and pkt[6] == ICMPV6
        and len(pkt) > 40
        and pkt[40] in ROUTER_SOLICIT_ADVERT
    )


TEREDO = ProtocolSpec("teredo", "tunnel", sid=70, doc="tunnels.md", samples=("teredo.pcap",))


class TeredoDecoder(Decoder):
    name = "teredo"
    emits = (TEREDO,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({3544})

    first_bytes = byte_values(0xF0, 0x60) | {0}  # IPv6, or an indicator

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        b0, b1 = head[:, 0], head[:, 1]

        def teredo_addr(col: int) -> npt.NDArray[np.bool_]:
            return (
                (head[:, col] == 0x20)
                & (head[:, col + 1] == 0x01)
                & (head[:, col + 2] == 0)
                & (head[:, col + 3] == 0)
            )

        link_local_rs = (head[:, 8] == 0xFE) & ((head[:, 9] & 0xC0) == 0x80) & (head[:, 6] == 58)
        bare = ((b0 >> 4) == 6) & (teredo_addr(8) | teredo_addr(24) | link_local_rs)
        # Indicators before the IPv6 header: checked in full by decode.
        auth = (b0 == 0) & (b1 == 1)
        origin = (b0 == 0) & (b1 == 0) & ((head[:, 8] >> 4) == 6)
        return (bare & (length >= 40)) | ((auth | origin) & (length >= 48))

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        off = 0
        facts: dict[str, object] = {"auth": False, "origin": False}
        if payload[:2] == b"\x00\x01" and len(payload) >= 4:
            off = 4 + payload[2] + payload[3] + 9
            facts["auth"] = True
        if payload[off : off + 2] == b"\x00\x00":
            off += 8
            facts["origin"] = True
        if ip_version_at(payload, off) != 6:
            return None
        pkt = payload[off:]
        if not _teredo_ok(pkt):
            return None
        teredo = pkt[8:24] if pkt[8:12] == TEREDO_PREFIX else pkt[24:40]
        session: dict[str, int | str] = {}
        if teredo[:4] == TEREDO_PREFIX:
            # Bits 32-63 of a Teredo address are the server's IPv4 address.
            session["server"] = ip_str(bytes(teredo[4:8]))
        return Decoded(
            protocol="teredo",
            kind="tunnel",
            header=f"{hex_head(payload, 4)}: Teredo, IPv6 at offset {off} "
            f"from {ip_str(bytes(pkt[8:24]))} to {ip_str(bytes(pkt[24:40]))}",
            session=session,
            carried=[Carried(link="ip", data=bytes(pkt))],
            facts=facts,
            strength=1.0 if off else 0.8,
            header_len=off,
        )


DECODERS: list[Decoder] = [TeredoDecoder()]
