"""CAPWAP (RFC 5415/5416): wireless access point to controller tunnel, UDP 5246 control and
5247 data.

Preamble byte: version 0, type 0 (CAPWAP header follows) or 1 (DTLS record follows after 3
reserved bytes).  Header word: HLEN (5 bits, 4-byte units, >= 2), RID, WBID (1 = IEEE 802.11),
T (native wireless frame), F (fragment), L, W, M, K (keep-alive), 3 flag bits that must be 0;
then fragment id/offset and optional radio MAC / wireless info up to HLEN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from detector.decode.frames import ethernet_valid
from detector.decode.lut import lut
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    InnerLink,
    PacketContext,
    ProtocolSpec,
)
from detector.protocols.tunnel_common import hex_head

if TYPE_CHECKING:
    import numpy.typing as npt

WBID_IEEE80211 = 1
# DTLS record content types (change cipher spec, alert, handshake, application data) and the
# DTLS 1.0 / 1.2 version bytes that follow them.
DTLS_CONTENT = (20, 21, 22, 23)
DTLS_VERSIONS = (0xFF, 0xFD)


def _ieee80211(frame: bytes) -> tuple[bytes, bool] | None:
    """The 802.11 frame with a plausible frame control, un-swapping it when the AP sent the two
    frame-control bytes in reverse order (Cisco controllers do), or None."""
    if len(frame) < 10:
        return None
    fc0, fc1 = frame[0], frame[1]
    # Swapped: the second byte is a data frame control (version 0, type 2), the first is not.
    if fc1 & 0x0F == 0x08 and fc0 & 0x0F != 0x08:
        return bytes((fc1, fc0)) + frame[2:], True
    if fc0 & 0x03 == 0 and fc0 & 0x0C != 0x0C:
        return frame, False
    return None


_DTLS_LUT = lut(DTLS_CONTENT)


CAPWAP = ProtocolSpec("capwap", "tunnel", sid=66, doc="tunnels.md", samples=("capwap.pcap",))


class CapwapDecoder(Decoder):
    name = "capwap"
    emits = (CAPWAP,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({5246, 5247})

    first_bytes = frozenset({0, 1})  # plain, DTLS
    second_bytes = frozenset({0, *range(16, 256)})  # DTLS, or a header of 2 words or more

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        b0, b1, b3 = head[:, 0], head[:, 1], head[:, 3]
        plain = (b0 == 0) & ((b1 >> 3) >= 2) & ((b3 & 0x07) == 0) & ((b1 >> 3) * 4 <= length)
        dtls = (
            (b0 == 1)
            & (b1 == 0)
            & (head[:, 2] == 0)
            & (b3 == 0)
            & _DTLS_LUT[head[:, 4]]
            & (head[:, 5] == 0xFE)
        )
        return plain | dtls

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < 8:
            return None
        if payload[0] == 1:
            return self._dtls(payload)
        if payload[0] != 0:
            return None
        word = int.from_bytes(payload[:4], "big")
        hlen = ((word >> 19) & 0x1F) * 4
        rid, wbid = (word >> 14) & 0x1F, (word >> 9) & 0x1F
        native, frag, keepalive = bool(word & 0x100), bool(word & 0x80), bool(word & 0x08)
        if hlen < 8 or hlen > len(payload) or word & 0x07:
            return None
        frag_offset = ((payload[6] << 8) | payload[7]) >> 3
        body = payload[hlen:]
        link: InnerLink | None = None
        facts: dict[str, object] = {"wbid": wbid, "native": native, "keepalive": keepalive}
        if keepalive:
            # Message elements: total length, then a Session ID element (type 35).
            if len(body) < 6 or (body[0] << 8) | body[1] != len(body) - 2:
                return None
        elif frag and frag_offset:
            link = "raw"  # a later fragment: no frame header to check
        elif native and wbid == WBID_IEEE80211:
            fixed = _ieee80211(body)
            if fixed is None:
                return None
            body, facts["fc_swapped"] = fixed
            link = "ieee80211"
        elif not native and ethernet_valid(body, strict=True):
            link = "ethernet"
        else:
            return None
        what = "keep-alive" if keepalive else ("802.11 frame" if native else "802.3 frame")
        return Decoded(
            protocol="capwap",
            kind="tunnel",
            header=f"{hex_head(payload, 4)}: CAPWAP header, HLEN {hlen} bytes, RID {rid}, "
            f"WBID {wbid}, {what}",
            session={"rid": rid, "wbid": wbid},
            carried=[Carried(link=link, data=bytes(body))] if link else [],
            facts=facts,
            header_len=hlen,
        )

    def _dtls(self, payload: bytes) -> Decoded | None:
        if (
            payload[1:4] != b"\x00\x00\x00"
            or payload[4] not in DTLS_CONTENT
            or payload[5] != 0xFE
            or payload[6] not in DTLS_VERSIONS
        ):
            return None
        return Decoded(
            protocol="capwap",
            kind="tunnel",
            header=f"{hex_head(payload, 7)}: CAPWAP DTLS preamble, DTLS record type {payload[4]}",
            facts={"dtls": True},
            strength=0.6,
            header_len=4,
        )


DECODERS: list[Decoder] = [CapwapDecoder()]
