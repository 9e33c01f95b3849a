"""sFlow versions 2 and 4 (sflow.org sflow_version_4.txt, RFC 3176): the older switches' export.

The datagram is version 5's without the sub-agent id, and its samples carry no length: each is
read field by field (flow samples: a sampled header or the sampled packet's IPv4/IPv6 summary,
then extended data: switch, router, gateway, user, URL; counter samples: the generic interface
counters and the block of the interface type).  Content checks: version 2 or 4, agent address
type 1 (IPv4) or 2 (IPv6), 1 to 1024 samples of a known type, every structure complete, and the
last sample ending exactly where the datagram ends.  Sampled headers become ``carried`` and the
conversations they show ``records``, as for version 5.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from detector.decode.frames import ip_str
from detector.protocols.base import Decoded, Decoder, PacketContext
from detector.protocols.li_common import be32
from detector.protocols.sflow import (
    ADDR_LEN,
    MAX_SAMPLES,
    SFLOW,
    Datagram,
    SampleWalk,
    sampled_header,
    sampled_ip,
    walked,
)

if TYPE_CHECKING:
    import numpy.typing as npt

VERSIONS = (2, 4)
FLOW_SAMPLE, COUNTER_SAMPLE = 1, 2
# What a flow sample holds of the sampled packet.
SAMPLED_HEADER, SAMPLED_IPV4, SAMPLED_IPV6 = 1, 2, 3
SAMPLED_SIZE = {SAMPLED_IPV4: 32, SAMPLED_IPV6: 56}
# The sampled packet's IPv4/IPv6 summary: the numbering version 5 gives those records.
V5_RECORD = {SAMPLED_IPV4: 3, SAMPLED_IPV6: 4}
EXT_SWITCH, EXT_ROUTER, EXT_GATEWAY, EXT_USER, EXT_URL = 1, 2, 3, 4, 5
# Counter blocks: generic interface counters (88 bytes), then what the interface type adds
# (Ethernet, Token Ring, FDDI, 100BaseVG, WAN); VLAN counters stand alone.
GENERIC = 88
COUNTER_BLOCK = {1: GENERIC, 2: GENERIC + 52, 3: GENERIC + 72, 4: GENERIC, 5: GENERIC + 80}
COUNTER_BLOCK |= {6: GENERIC, 7: 28}
# A header or string longer than a datagram is not one.
MAX_OPAQUE = 65535


class _Malformed(Exception):
    """A structure runs past the datagram or holds a value no exporter sends."""


class _Cursor:
    """Reads XDR (4-byte aligned, big-endian) fields; running past the end is malformed."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise _Malformed
        (value,) = struct.unpack_from("!I", self.data, self.pos)
        self.pos += 4
        return value

    def take(self, n: int) -> bytes:
        padded = n + (-n % 4)
        if n > MAX_OPAQUE or self.pos + padded > len(self.data):
            raise _Malformed
        out = self.data[self.pos : self.pos + n]
        self.pos += padded
        return out

    def opaque(self) -> bytes:
        return self.take(self.u32())

    def count(self, item_bytes: int) -> int:
        """A count of items of at least ``item_bytes`` each that the datagram can still hold."""
        n = self.u32()
        if n * item_bytes > len(self.data) - self.pos:
            raise _Malformed
        return n

    def address(self) -> None:
        size = ADDR_LEN.get(self.u32())
        if size is None:
            raise _Malformed
        self.take(size)


def _extended(c: _Cursor, version: int) -> None:
    """One extended-data structure of a flow sample (its content is not needed)."""
    tag = c.u32()
    if tag == EXT_SWITCH:
        c.take(16)  # source and destination VLAN and priority
    elif tag == EXT_ROUTER:
        c.address()
        c.take(8)  # source and destination mask
    elif tag == EXT_GATEWAY:
        c.take(12)  # own, source and source peer AS
        if version == 2:
            c.take(4 * c.count(4))  # destination AS path
        else:
            for _ in range(c.count(8)):  # AS path segments: type, then their ASes
                c.u32()
                c.take(4 * c.count(4))
            c.take(4 * c.count(4))  # communities
            c.u32()  # local preference
    elif tag == EXT_USER:
        c.opaque()
        c.opaque()
    elif tag == EXT_URL:
        c.u32()  # direction
        c.opaque()
    else:
        raise _Malformed


def _flow_sample(c: _Cursor, version: int, out: SampleWalk) -> None:
    c.take(8)  # sequence number, source id
    out.rates.append(c.u32())
    c.take(16)  # sample pool, drops, input and output interface
    out.flow_samples += 1
    kind = c.u32()
    if kind == SAMPLED_HEADER:
        proto, frame_len = c.u32(), c.u32()
        sampled_header(proto, frame_len, c.opaque(), out)
    elif kind in SAMPLED_SIZE:
        sampled_ip(V5_RECORD[kind], c.take(SAMPLED_SIZE[kind]), out)
    else:
        raise _Malformed
    for _ in range(c.count(4)):
        _extended(c, version)


def _counter_sample(c: _Cursor, out: SampleWalk) -> None:
    c.take(12)  # sequence number, source id, sampling interval
    block = COUNTER_BLOCK.get(c.u32())
    if block is None:
        raise _Malformed
    c.take(block)
    out.counter_samples += 1


class SflowV2V4Decoder(Decoder):
    name = "sflow-v2v4"
    emits = (SFLOW,)
    kind = "flow-export"
    transport = "udp"
    ports = frozenset({6343})
    first_bytes = frozenset({0})  # versions 2 and 4
    second_bytes = frozenset({0})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        version, addr_type = be32(head, 0), be32(head, 4)
        v6 = addr_type == 2
        samples = np.where(v6, be32(head, 32), be32(head, 20))
        first = np.where(v6, be32(head, 36), be32(head, 24))
        return (
            ((version == 2) | (version == 4))
            & ((addr_type == 1) | v6)
            & (samples >= 1)
            & (samples <= MAX_SAMPLES)
            & ((first == FLOW_SAMPLE) | (first == COUNTER_SAMPLE))
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        c = _Cursor(payload, 0)
        out = SampleWalk()
        try:
            version, addr_type = c.u32(), c.u32()
            if version not in VERSIONS or addr_type not in ADDR_LEN:
                return None
            agent = ip_str(c.take(ADDR_LEN[addr_type]))
            seq, uptime, n_samples = c.u32(), c.u32(), c.u32()
            if not 1 <= n_samples <= MAX_SAMPLES:
                return None
            header_len = c.pos
            for _ in range(n_samples):
                tag = c.u32()
                if tag == FLOW_SAMPLE:
                    _flow_sample(c, version, out)
                elif tag == COUNTER_SAMPLE:
                    _counter_sample(c, out)
                else:
                    return None
        except _Malformed:
            return None
        if c.pos != len(payload):
            return None
        head = Datagram(version, agent, None, seq, uptime, n_samples)
        return walked(payload, head, header_len, out)


DECODERS: list[Decoder] = [SflowV2V4Decoder()]
