"""MPLS carried in a tunnel: MPLS-in-UDP (RFC 7510, UDP 6635) and MPLS over GRE (0x8847/0x8848).

MPLS has no magic: a label stack entry is label (20 bits), traffic class (3), bottom-of-stack
(1), TTL (8).  What makes it MPLS is a short stack that ends with the bottom bit and is followed
by a real IP packet that exactly fills the rest (so a capture cut short hides it), or by a
pseudowire control word (first nibble 0) and an Ethernet frame.  Even so, other UDP headers
read as label stacks (a GTP-U header without options is two "labels" followed by IP), so over
UDP: no content signature; port required (6635), announced by ``ports_required``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.decode.frames import ethernet_valid, ip_fills
from detector.protocols.base import (
    PREFILTER_BYTES,
    Carried,
    Decoded,
    Decoder,
    PacketContext,
    ProtocolSpec,
)
from detector.protocols.li_common import ip_fills_mask
from detector.protocols.tunnel_common import hex_head

if TYPE_CHECKING:
    import numpy.typing as npt

MPLS_UDP_PORT = 6635
MAX_LABELS = 6
MIN_INNER = 18  # control word + Ethernet header; IP needs more


def label_stack(data: bytes, off: int = 0) -> tuple[list[int], int] | None:
    """Labels of the stack at ``off`` and the offset after it, or None when no bottom-of-stack
    entry comes within ``MAX_LABELS`` or a TTL is zero (such a packet would have been dropped)."""
    labels: list[int] = []
    for _ in range(MAX_LABELS):
        if len(data) < off + 4:
            return None
        entry = int.from_bytes(data[off : off + 4], "big")
        if entry & 0xFF == 0:
            return None
        labels.append(entry >> 12)
        off += 4
        if entry & 0x100:
            return labels, off
    return None


def carried_after_stack(data: bytes, off: int) -> Carried | None:
    """The IP packet, or the Ethernet frame after a control word, that follows a label stack."""
    if ip_fills(data, off):
        return Carried(link="ip", data=bytes(data[off:]))
    if len(data) - off >= MIN_INNER and data[off] == 0:
        cw_len = data[off + 1] & 0x3F
        body = off + 4
        # RFC 4448: the length field is 0, or the length of a frame shorter than 64 bytes.
        if (cw_len in (0, len(data) - off)) and ethernet_valid(data, body):
            return Carried(link="ethernet", data=bytes(data[body:]))
    return None


def mpls_prefilter(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Rows whose first bottom-of-stack label (within MAX_LABELS) has a non-zero TTL and is
    followed by an IPv4/IPv6 header whose length field fills the payload, or by a control word
    with a consistent length field."""
    found = np.zeros(len(head), dtype=bool)
    above = np.ones(len(head), dtype=bool)  # no bottom-of-stack seen yet
    for k in range(MAX_LABELS):
        o = 4 * k + 4
        if o + 2 > PREFILTER_BYTES:
            break
        bos = (head[:, o - 2] & 1) == 1
        b = head[:, o]
        rest = length - o
        cw_len = head[:, o + 1] & 0x3F
        inner = ip_fills_mask(head, length, o) | ((b == 0) & ((cw_len == 0) | (cw_len == rest)))
        found |= above & bos & (head[:, o - 1] != 0) & inner & (length >= o + MIN_INNER)
        above &= ~bos
    return found


def _decoded(protocol: str, data: bytes, where: str) -> Decoded | None:
    parsed = label_stack(data)
    if parsed is None:
        return None
    labels, off = parsed
    carried = carried_after_stack(data, off)
    if carried is None:
        return None
    return Decoded(
        protocol=protocol,
        kind="tunnel",
        header=f"{hex_head(data, off)}: MPLS{where}, labels {labels}, then {carried.link}",
        session={"label": labels[0]},
        carried=[carried],
        facts={"labels": labels},
        strength=1.0 if data[off] >> 4 == 4 else 0.7,
        header_len=off,
    )


MPLS_UDP = ProtocolSpec("mpls-udp", "tunnel", sid=80, doc="tunnels.md", samples=("mpls-udp.pcap",))
GRE_MPLS = ProtocolSpec("gre-mpls", "tunnel", sid=81, doc="tunnels.md", samples=("gre-mpls.pcap",))


class MplsUdpDecoder(Decoder):
    name = "mpls-udp"
    emits = (MPLS_UDP,)
    kind = "tunnel"
    transport = "udp"
    ports = frozenset({MPLS_UDP_PORT})
    ports_required: ClassVar[bool] = True

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return mpls_prefilter(head, length)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if MPLS_UDP_PORT not in (ctx.sport, ctx.dport):
            return None
        return _decoded("mpls-udp", payload, " in UDP")


class MplsGreDecoder(Decoder):
    name = "gre-mpls"
    emits = (GRE_MPLS,)
    kind = "tunnel"
    transport = "gre"
    gre_types = frozenset({0x8847, 0x8848})

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        return _decoded("gre-mpls", payload, " over GRE")


DECODERS: list[Decoder] = [MplsUdpDecoder(), MplsGreDecoder()]
