"""IPsec: ESP (IP 50, RFC 4303), AH (IP 51, RFC 4302), and ESP in UDP 4500 (NAT-T, RFC 3948).

ESP is encrypted after its SPI and sequence number, so nothing inside can be checked: an SPI
outside the reserved 0-255 range and a non-zero sequence number are all there is.  Over IP the
protocol number names it; over UDP only the port does.  On UDP 4500 a zero "non-ESP marker"
means IKE follows (not a tunnel packet) and a single 0xff byte is a NAT keep-alive.
AH is in clear: next header, length (in 4-byte units minus 2), zero reserved field, SPI, seq.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.protocols.base import Carried, Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.tunnel_common import hex_head, ip_version_at

if TYPE_CHECKING:
    import numpy.typing as npt

ESP_HEADER = struct.Struct("!II")
NAT_T_PORT = 4500
# SPI, sequence, and at least an 8-byte IV or ICV plus pad length and next header.
MIN_ESP_LEN = 8 + 8 + 2
AH_HEADER = struct.Struct("!BBHII")
AH_TUNNEL = {4: 4, 41: 6}  # next header of tunnel-mode AH -> carried IP version


def _esp(payload: bytes, protocol: str, strength: float, where: str) -> Decoded | None:
    if len(payload) < MIN_ESP_LEN:
        return None
    spi, seq = ESP_HEADER.unpack_from(payload)
    if spi < 256 or seq == 0:
        return None
    return Decoded(
        protocol=protocol,
        kind="tunnel",
        header=f"{hex_head(payload, 8)}: ESP{where}, SPI 0x{spi:08x}, sequence {seq}",
        session={"spi": spi},
        facts={"seq": seq},
        strength=strength,
        header_len=8,
    )


ESP = ProtocolSpec("esp", "tunnel", sid=72, doc="tunnels.md", samples=("esp.pcap",))
AH = ProtocolSpec("ah", "tunnel", sid=73, doc="tunnels.md", samples=("ah.pcap",))
NAT_T = ProtocolSpec("nat-t", "tunnel", sid=74, doc="tunnels.md", samples=("nat-t.pcap",))


class EspDecoder(Decoder):
    name = "esp"
    emits = (ESP,)
    kind = "tunnel"
    transport = "ip"
    ip_protos = frozenset({50})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        return _esp(payload, "esp", 0.8, "")


class NatTDecoder(Decoder):
    """ESP in UDP.  No content signature; port required: ``decode`` accepts only packets to or
    from UDP 4500, and ``ports_required`` tells the engine it may skip other ports before the
    (necessarily loose) prefilter."""

    name = "nat-t"
    emits = (NAT_T,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({NAT_T_PORT})
    ports_required: ClassVar[bool] = True
    priority = 90  # after everything with a real signature

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        # SPI >= 256 (so not the zero non-ESP marker), sequence != 0.
        spi_ok = (head[:, 0] | head[:, 1] | head[:, 2]) != 0
        seq_ok = (head[:, 4] | head[:, 5] | head[:, 6] | head[:, 7]) != 0
        esp = spi_ok & seq_ok & (length >= MIN_ESP_LEN)
        # IKE behind the non-ESP marker, and the one-byte NAT keep-alive, share the flow.
        marker = (head[:, 0] | head[:, 1] | head[:, 2] | head[:, 3]) == 0
        ike = marker & (length >= 4 + IKE_HEADER_LEN)
        keepalive = (length == 1) & (head[:, 0] == 0xFF)
        return esp | ike | keepalive

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if NAT_T_PORT not in (ctx.sport, ctx.dport):
            return None
        if payload == b"\xff":
            return Decoded(
                protocol="nat-t", kind="tunnel", header="ff: NAT-T keep-alive (RFC 3948)",
                facts={"message": "keepalive"}, strength=0.5,
            )  # fmt: skip
        if payload[:4] == b"\x00\x00\x00\x00":
            return _ike(payload)
        return _esp(payload, "nat-t", 0.5, " in UDP")


IKE_HEADER_LEN = 28


def _ike(payload: bytes) -> Decoded | None:
    """IKE (v1 or v2) behind the four-byte non-ESP marker: the key exchange of the same tunnel."""
    ike = payload[4:]
    if len(ike) < IKE_HEADER_LEN:
        return None
    version = ike[17]
    length = int.from_bytes(ike[24:28], "big")
    if version not in (0x10, 0x20) or length != len(ike):
        return None
    return Decoded(
        protocol="nat-t",
        kind="tunnel",
        header=f"{hex_head(payload, 8)}: non-ESP marker then IKE version {version >> 4}, "
        f"exchange {ike[18]}, length {length}",
        session={"ike_initiator_spi": ike[:8].hex()},
        facts={"message": "ike", "ike_version": version >> 4, "exchange": ike[18]},
        strength=0.9,
    )


class AhDecoder(Decoder):
    name = "ah"
    emits = (AH,)
    kind = "tunnel"
    transport = "ip"
    ip_protos = frozenset({51})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < AH_HEADER.size:
            return None
        next_header, plen, reserved, spi, seq = AH_HEADER.unpack_from(payload)
        ah_len = (plen + 2) * 4
        # The ICV is at least 96 bits: the header is never shorter than 24 bytes.
        if reserved or spi < 256 or seq == 0 or ah_len < 24 or ah_len > len(payload):
            return None
        carried: list[Carried] = []
        if next_header in AH_TUNNEL:
            if ip_version_at(payload, ah_len) != AH_TUNNEL[next_header]:
                return None
            carried.append(Carried(link="ip", data=bytes(payload[ah_len:])))
        return Decoded(
            protocol="ah",
            kind="tunnel",
            header=f"{hex_head(payload, 12)}: AH, next header {next_header}, length {ah_len}, "
            f"SPI 0x{spi:08x}, sequence {seq}",
            session={"spi": spi},
            carried=carried,
            facts={"seq": seq, "next_header": next_header},
            header_len=ah_len,
        )


DECODERS: list[Decoder] = [EspDecoder(), NatTDecoder(), AhDecoder()]
